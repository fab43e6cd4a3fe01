"""``lsmcheck run``: audit logit files and flags, report, gate."""

from __future__ import annotations

import click

from lsmcheck.audit import Options, audit
from lsmcheck.cli.common import (
    ProgressBar,
    algorithm_names,
    algorithm_option,
    dtype_names,
    dtype_option,
    guard,
    jobs_option,
    precision_option,
    quiet_option,
    reference_option,
    scheduler_option,
    style_for,
    write_atomically,
)
from lsmcheck.formats import FORMATTERS, Style, render
from lsmcheck.gate import FAIL_ON_CHOICES, Thresholds, parse_fail_on
from lsmcheck.parallel import default_jobs
from lsmcheck.sources import count_elements, iter_sources


@click.command()
@click.argument("paths", nargs=-1, metavar="[PATHS]...")
@click.option(
    "-l", "--logits", multiple=True, metavar="TEXT", help='A vector typed inline: -l "2,1,0.1".'
)
@dtype_option
@algorithm_option
@precision_option
@reference_option
@jobs_option
@scheduler_option
@quiet_option
@click.option("--per-element", is_flag=True, help="Include every element in the JSON report.")
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    metavar="N",
    help="Aggregate as results stream: keep the N worst vectors (and the first N failing and "
    "skipped) per algorithm and dtype; totals cover all.  Default: every result up to "
    "100,000, then 10.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(sorted(FORMATTERS)),
    default="table",
    show_default=True,
    help="Report format.",
)
@click.option("-o", "--output", metavar="FILE", help="Write the report here (atomically).")
@click.option("--max-ulp", type=float, metavar="N", help="Fail a result whose max ULP error > N.")
@click.option(
    "--fail-on",
    multiple=True,
    metavar="EVENTS",
    help=f"Fail a result with any of these ({', '.join(FAIL_ON_CHOICES)}, or all).",
)
@guard
def run(
    paths: tuple[str, ...],
    logits: tuple[str, ...],
    dtypes: tuple[str, ...],
    algorithms: tuple[str, ...],
    precision: int,
    reference: str,
    jobs: int | None,
    scheduler: str | None,
    quiet: bool,
    per_element: bool,
    keep: int | None,
    fmt: str,
    output: str | None,
    max_ulp: float | None,
    fail_on: tuple[str, ...],
) -> int:
    """Audit the logit vectors in PATHS (CSV, TSV, JSON, .npy, .npz; - for stdin)."""
    options = Options(
        dtypes=dtype_names(dtypes),
        algorithms=algorithm_names(algorithms),
        precision_bits=precision,
        per_element=per_element,
        thresholds=Thresholds(max_ulp=max_ulp, fail_on=parse_fail_on(fail_on)),
        reference=reference,
        keep=keep,
    )
    options.validate()
    vectors = iter_sources(paths, logits, stdin=click.get_text_stream("stdin"))
    total = count_elements(paths, logits)
    bar = ProgressBar(quiet)
    try:
        report = audit(
            vectors,
            options,
            lambda done, _: bar(done, None if total is None else total * len(options.formats())),
            jobs=jobs or default_jobs(),
            scheduler=scheduler,
        )
    finally:
        bar.close()
    if output:
        write_atomically(output, render(fmt, report, Style(color=False)), paths)
        click.echo(f"lsmcheck: wrote {output}", err=True)
    else:
        stdout = click.get_text_stream("stdout")
        stdout.write(render(fmt, report, style_for(stdout)))
    return report.exit_code

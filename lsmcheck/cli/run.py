"""``lsmcheck run``: audit logit files and flags, report, gate."""

from __future__ import annotations

import click

from lsmcheck.audit import Options, audit
from lsmcheck.cli.common import (
    algorithm_names,
    algorithm_option,
    dtype_names,
    dtype_option,
    guard,
    precision_flags,
    precision_option,
    style_for,
    write_atomically,
)
from lsmcheck.formats import FORMATTERS, Style, render
from lsmcheck.gate import FAIL_ON_CHOICES, Thresholds, parse_fail_on
from lsmcheck.sources import read_sources


@click.command()
@click.argument("paths", nargs=-1, metavar="[PATHS]...")
@click.option(
    "-l", "--logits", multiple=True, metavar="TEXT", help='A vector typed inline: -l "2,1,0.1".'
)
@dtype_option
@algorithm_option
@precision_option
@precision_flags
@click.option("--per-element", is_flag=True, help="Include every element in the JSON report.")
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
    accumulate: str | None,
    block: int,
    target: str | None,
    grad: bool,
    per_element: bool,
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
        accumulate=accumulate,
        block=block,
        target=target,
        grad=grad,
    )
    options.validate()
    vectors = read_sources(paths, logits, stdin=click.get_text_stream("stdin"))
    report = audit(vectors, options)
    if output:
        write_atomically(output, render(fmt, report, Style(color=False)), paths)
        click.echo(f"lsmcheck: wrote {output}", err=True)
    else:
        stdout = click.get_text_stream("stdout")
        stdout.write(render(fmt, report, style_for(stdout)))
    return report.exit_code

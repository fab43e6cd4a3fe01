"""``lsmcheck limits``, ``sweep`` and ``hunt``: exploring where softmax numerics break."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click

from lsmcheck.algorithms import Algorithm, get_algorithm
from lsmcheck.cli.common import (
    ProgressBar,
    algorithm_names,
    algorithm_option,
    check_output,
    check_outputs,
    dtype_names,
    dtype_option,
    guard,
    impl_limit_options,
    note_black_boxes,
    precision_option,
    quiet_option,
    style_for,
    write_atomically,
)
from lsmcheck.dtypes import get_format
from lsmcheck.errors import UsageError
from lsmcheck.explore.generators import FAMILIES, get_family
from lsmcheck.explore.hunt import hunt as run_hunt
from lsmcheck.explore.limits import DEFAULT_MAX_LENGTH, DEFAULT_ULP_BOUND, LIMITS, measure_limits
from lsmcheck.explore.sweep import run_sweep, to_csv, to_json
from lsmcheck.formats import Style
from lsmcheck.formats import explore as fmt_explore
from lsmcheck.formats.plot import figure, render_sweep
from lsmcheck.impllimits import Limits
from lsmcheck.userimpl import load, spec_file

#: A progress bar appears once work has taken this long (and only on a terminal).
PROGRESS_AFTER = 0.5


@contextmanager
def progress_bar(label: str, quiet: bool = False) -> Iterator[Callable[[float, float], None]]:
    """A ``progress(done, total)`` callback drawing a rich bar on stderr.

    The bar shows only when stderr is a terminal, and only once the work has run for
    :data:`PROGRESS_AFTER` seconds, so quick commands and redirected runs print nothing;
    ``quiet`` (``--quiet``) never shows it.
    """
    bar = ProgressBar(quiet, delay=PROGRESS_AFTER, label=label, unit=None)
    try:
        yield bar
    finally:
        bar.close()


def _sources(impls: Iterable[str]) -> list[str]:
    """The source files of the user's implementations: no output may replace them."""
    return [f for f in map(spec_file, impls) if f is not None]


def _emit(text: str, output: str | None, protected: Iterable[str]) -> None:
    if output:
        write_atomically(output, text, protected)
        click.echo(f"lsmcheck: wrote {output}", err=True)
    else:
        sys.stdout.write(text)


def _out_style(output: str | None) -> Style:
    return Style(color=False) if output else style_for(sys.stdout)


impl_option = click.option(
    "--impl",
    "impls",
    multiple=True,
    metavar="KIND=MODULE:FUNCTION",
    help="Your own implementation (repeatable), as in `lsmcheck run --impl`.",
)


def _algorithms(
    algorithms: tuple[str, ...],
    impls: tuple[str, ...],
    timeout: float | None,
    memory: str | None,
    dtypes: Sequence[str],
) -> tuple[str | Algorithm, ...]:
    """``-a`` names and ``--impl`` implementations (in sandboxes with the ``--impl-timeout``
    and ``--impl-memory`` limits); with ``--impl`` alone, only those.  ``dtypes``: the
    precisions they run in, for the note that mixed precision does not reach an ``--impl``."""
    limits = Limits.make(timeout, memory)  # checked even when unused, as in run
    user = [load(spec, "--impl", limits=limits) for spec in impls]
    note_black_boxes([get_format(d) for d in dtypes], user)
    builtin = algorithm_names(algorithms) if algorithms or not user else ()
    chosen: tuple[str | Algorithm, ...] = (*builtin, *user)
    for item in chosen:
        _explorable(item)
    return chosen


def _explorable(item: str | Algorithm) -> None:
    """A UsageError for an implementation that needs a target class per vector (a
    cross-entropy, a gradient): limits, sweep and hunt draw logits, not targets."""
    alg = item if isinstance(item, Algorithm) else get_algorithm(item)
    if alg.kind.needs_target:
        raise UsageError(
            f"{alg.name} needs the target class of each vector, which limits, sweep and hunt "
            "do not draw; audit it with 'lsmcheck run --target' or 'lsmcheck explain --target'"
        )


output_option = click.option(
    "-o", "--output", metavar="FILE", help="Write to FILE (atomically) instead of stdout."
)


# ---------------------------------------------------------------------------------------------
# limits
# ---------------------------------------------------------------------------------------------


@click.command()
@dtype_option
@algorithm_option
@impl_option
@impl_limit_options
@click.option(
    "--limit",
    "limit_names",
    multiple=True,
    metavar="NAMES",
    help=f"Limits to measure, comma-separated ({', '.join(LIMITS)}; default all).",
)
@click.option(
    "--ulp-bound",
    type=float,
    default=DEFAULT_ULP_BOUND,
    show_default=True,
    metavar="N",
    help="The spread limit: where the max ULP error first exceeds N.",
)
@click.option(
    "--max-length",
    type=int,
    default=DEFAULT_MAX_LENGTH,
    show_default=True,
    metavar="N",
    help="The longest vector the length limit tries.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@output_option
@quiet_option
@guard
def limits(
    dtypes: tuple[str, ...],
    algorithms: tuple[str, ...],
    impls: tuple[str, ...],
    impl_timeout: float | None,
    impl_memory: str | None,
    limit_names: tuple[str, ...],
    ulp_bound: float,
    max_length: int,
    fmt: str,
    output: str | None,
    quiet: bool,
) -> int:
    """Measure where each algorithm breaks in each dtype, beside the analytical values."""
    sources = _sources(impls)
    output = None if output == "-" else output  # -o - is standard output, as in run
    if output:  # before the work: a file that cannot be written wastes none
        check_outputs([(output, "--output", sources)])
    names = [n.strip() for v in limit_names for n in v.split(",") if n.strip()] or list(LIMITS)
    with progress_bar("limits", quiet) as progress:
        report = measure_limits(
            _algorithms(algorithms, impls, impl_timeout, impl_memory, dtype_names(dtypes)),
            dtype_names(dtypes),
            names,
            ulp_bound=ulp_bound,
            max_length=max_length,
            progress=progress,
        )
    if fmt == "json":
        text = fmt_explore.limits_json(report)
    elif fmt == "csv":
        text = fmt_explore.limits_csv(report)
    else:
        text = fmt_explore.render_limits(report, _out_style(output))
    _emit(text, output, sources)
    return 0


# ---------------------------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------------------------


@click.command()
@click.argument("family", type=click.Choice(list(FAMILIES)), default="scale", metavar="[FAMILY]")
@click.option("--from", "start", type=float, metavar="A", help="First parameter value.")
@click.option("--to", "stop", type=float, metavar="B", help="Last parameter value.")
@click.option("--steps", type=int, metavar="N", help="Number of steps (default 41; length 8).")
@click.option("--log/--linear", "log", default=None, help="Step spacing (default per family).")
@click.option(
    "--length", type=int, default=16, show_default=True, metavar="N", help="Logits per vector."
)
@click.option("--samples", type=int, metavar="K", help="Vectors per step (default 4; length 1).")
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the draw."
)
@dtype_option
@algorithm_option
@impl_option
@impl_limit_options
@precision_option
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["plot", "csv", "json"]),
    default="plot",
    show_default=True,
    help="A terminal plot, or the numbers.",
)
@output_option
@click.option("--png", metavar="FILE", help="Also draw the plots to a PNG file (matplotlib).")
@click.option("--svg", metavar="FILE", help="Also draw the plots to an SVG file (matplotlib).")
@click.option(
    "--height", type=int, default=12, show_default=True, metavar="ROWS", help="Plot height."
)
@quiet_option
@guard
def sweep(
    family: str,
    start: float | None,
    stop: float | None,
    steps: int | None,
    log: bool | None,
    length: int,
    samples: int | None,
    seed: int,
    dtypes: tuple[str, ...],
    algorithms: tuple[str, ...],
    impls: tuple[str, ...],
    impl_timeout: float | None,
    impl_memory: str | None,
    precision: int,
    fmt: str,
    output: str | None,
    png: str | None,
    svg: str | None,
    height: int,
    quiet: bool,
) -> int:
    """Vary one parameter of a seeded family (scale, shift, spread, length) and audit each step.

    Families, on a standard normal draw z: scale x = s*z; shift x = z + c; spread: the top
    logit leads the rest by d; length: the first n logits of z.
    """
    fam = get_family(family)
    if height < 4:
        raise UsageError(f"--height: expected at least 4 rows, got {height}")
    sources = _sources(impls)
    output = None if output == "-" else output  # -o - is standard output, as in run
    files = ((output, "--output"), (png, "--png"), (svg, "--svg"))
    # before the work: a file that cannot be written (or is named twice) wastes none
    check_outputs([(path, flag, sources) for path, flag in files if path])
    with progress_bar(f"sweep {family}", quiet) as progress:
        result = run_sweep(
            family,
            start=start,
            stop=stop,
            count=steps,
            log=log,
            length=length,
            samples=samples,
            seed=seed,
            algorithms=_algorithms(
                algorithms, impls, impl_timeout, impl_memory, dtype_names(dtypes)
            ),
            dtypes=dtype_names(dtypes),
            precision_bits=precision,
            progress=progress,
        )
    v = result.values
    click.echo(
        f"lsmcheck: sweep {fam.name}: {fam.formula}, z = numpy.random.default_rng({seed})"
        f".standard_normal(({result.samples}, {result.length})); repeat with: lsmcheck sweep "
        f"{fam.name} --from {v[0]:g} --to {v[-1]:g} --steps {len(v)} "
        f"{'--log' if result.log else '--linear'} --length {length} "
        f"--samples {result.samples} --seed {seed}",
        err=True,
    )
    for path, kind in ((png, "png"), (svg, "svg")):
        if path:
            write_atomically(path, figure(result, kind), sources, f"--{kind}")
            click.echo(f"lsmcheck: wrote {path}", err=True)
    if fmt == "csv":
        text = to_csv(result)
    elif fmt == "json":
        text = to_json(result)
    else:
        text = render_sweep(result, _out_style(output), height)
    _emit(text, output, sources)
    return 0


# ---------------------------------------------------------------------------------------------
# hunt
# ---------------------------------------------------------------------------------------------


#: What ``--save`` writes to: text that ``lsmcheck run`` reads as comma-separated logits.
CASE_SUFFIXES = (".csv", ".txt")


def check_case_file(path: str) -> Path:
    """``path`` as a case file ``--save`` can append to, or a UsageError."""
    if path == "-":  # the cases are on standard output already
        check_output(path, "--save")
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--save: {path} is a directory")
    if target.suffix.lower() not in CASE_SUFFIXES:  # lines of a .tsv or .json would not parse
        raise UsageError(
            f"--save: {path}: case files are comma-separated text "
            f"({', '.join(CASE_SUFFIXES)}); got a {target.suffix or 'suffix-less'} file"
        )
    if target.exists() and not target.is_file():
        raise UsageError(f"--save: {path} is not a regular file")
    check_output(path, "--save")
    return target


def append_cases(path: str, text: str) -> tuple[int, int]:
    """Append the data lines of ``text`` (with their comments) to the case file ``path``.

    The file is read, the new lines added after it, and the whole written to a temporary file
    renamed over it: the old content is never lost, and a vector already in the file is not
    added again.  Returns ``(added, already there)``.
    """
    target = check_case_file(path)
    old = ""
    if target.exists():
        try:
            old = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--save: cannot read {path}: {e}") from None
    present = {line.strip() for line in old.splitlines() if not line.startswith("#")}
    new: list[str] = []
    comment: list[str] = []
    added = skipped = 0
    for line in text.splitlines():
        if line.startswith("#"):
            comment.append(line)
            continue
        if line.strip() in present:
            skipped += 1
        else:
            new += [*comment, line]
            present.add(line.strip())
            added += 1
        comment = []
    if added:
        body = old + ("" if not old or old.endswith("\n") else "\n") + "\n".join(new) + "\n"
        write_atomically(path, body, (), "--save")
    return added, skipped


@click.command()
@click.option("-a", "--algorithm", "algorithm", metavar="NAME", help="A built-in algorithm.")
@click.option(
    "--impl",
    "impl",
    metavar="KIND=MODULE:FUNCTION",
    help="Or your own implementation, as in `lsmcheck run --impl`.",
)
@impl_limit_options
@click.option("-d", "--dtype", "dtype", required=True, metavar="DTYPE", help="Precision.")
@click.option("--length", type=int, default=8, show_default=True, metavar="N", help="Logits.")
@click.option(
    "--budget", type=float, default=5.0, show_default=True, metavar="SECONDS", help="Time."
)
@click.option(
    "--evals",
    type=int,
    metavar="N",
    help="Audit exactly N candidates instead of a time budget (repeatable on any machine).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the search."
)
@click.option("--top", type=int, default=5, show_default=True, metavar="K", help="Vectors shown.")
@click.option("--save", metavar="FILE", help="Append the worst vectors to this case file.")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="Case lines with comments (a valid case file), or JSON.",
)
@precision_option
@quiet_option
@guard
def hunt(
    algorithm: str | None,
    impl: str | None,
    impl_timeout: float | None,
    impl_memory: str | None,
    dtype: str,
    length: int,
    budget: float,
    evals: int | None,
    seed: int,
    top: int,
    save: str | None,
    fmt: str,
    precision: int,
    quiet: bool,
) -> int:
    """Search for the inputs that break one implementation in one dtype worst.

    Prints the worst vectors as case lines: lsmcheck hunt -a softmax_naive -d float16 | lsmcheck
    run -.
    """
    if (algorithm is None) == (impl is None):
        raise UsageError("hunt: give one implementation: -a NAME or --impl KIND=MODULE:FUNCTION")
    for flag, value in (("--algorithm", algorithm), ("--dtype", dtype)):
        if value is not None and "," in value:  # as run and limits take them
            raise UsageError(f"{flag}: hunt takes one, got {value!r} (hunt each in turn)")
    if save:  # before the search: a file it cannot append to wastes no work
        check_case_file(save)
    if algorithm is not None:
        _explorable(algorithm)
    target = (
        algorithm
        if algorithm is not None
        else _algorithms((), (str(impl),), impl_timeout, impl_memory, (dtype,))[0]
    )
    with progress_bar("hunt", quiet) as progress:
        report = run_hunt(
            target,
            dtype,
            length=length,
            budget=budget,
            evals=evals,
            seed=seed,
            top=top,
            precision_bits=precision,
            progress=progress,
        )
    click.echo(
        f"lsmcheck: repeat exactly with: lsmcheck hunt {report.flag} -d {dtype} "
        f"--length {length} --seed {seed} --evals {report.evaluations}",
        err=True,
    )
    if save:
        added, skipped = append_cases(save, report.case_text())
        already = f" ({skipped} already there)" if skipped else ""
        vectors = "vector" if added == 1 else "vectors"
        click.echo(f"lsmcheck: appended {added} {vectors} to {save}{already}", err=True)
    width = style_for(sys.stdout).width
    text = fmt_explore.hunt_json(report) if fmt == "json" else fmt_explore.hunt_text(report, width)
    sys.stdout.write(text)
    return 1 if not report.worst else 0  # no candidate audited: the implementation failed


__all__ = ["append_cases", "hunt", "limits", "progress_bar", "sweep"]

"""The command line: parse, call the library, pick a format, write, exit.

Exit codes: 0 every result passes; 1 a result fails the gate; 2 a usage, configuration or
input error (one line on stderr); 3 a bug in lsmcheck (a traceback on stderr).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import click

from lsmcheck import __version__
from lsmcheck.algorithms import BUILTINS, DEFAULT_ALGORITHMS
from lsmcheck.audit import Options, audit
from lsmcheck.dtypes import DEFAULT_FORMATS, FORMATS
from lsmcheck.errors import LsmcheckError, UsageError
from lsmcheck.formats import FORMATTERS, Style, render
from lsmcheck.gate import FAIL_ON_CHOICES, Thresholds, parse_fail_on
from lsmcheck.sources import parse_logits_flag, read_sources

EXIT_BUG = 3


def _names(values: Iterable[str], default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated or repeated names; ``all`` (or nothing) selects ``default``."""
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if not names or "all" in names:
        return default
    return tuple(dict.fromkeys(names))


def _style(stream: TextIO) -> Style:
    color = stream.isatty() and not os.environ.get("NO_COLOR")
    width = shutil.get_terminal_size((120, 24)).columns if stream.isatty() else 120
    return Style(color=color, width=max(width, 80))


def write_atomically(path: str, text: str, inputs: Iterable[str]) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename; never over an input."""
    target = Path(path)
    for src in inputs:
        if src != "-" and Path(src).exists() and target.exists() and target.samefile(src):
            raise UsageError(f"--output: {path} is an input file; refusing to overwrite it")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"--output: directory {str(directory)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _guard(fn: Callable[..., int]) -> Callable[..., None]:
    """Turn user errors into one line + exit 2, bugs into a traceback + exit 3."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = fn(*args, **kwargs)
        except LsmcheckError as e:
            click.echo(f"lsmcheck: error: {e}", err=True)
            sys.exit(e.exit_code)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception:
            traceback.print_exc()
            click.echo("lsmcheck: internal error (a bug in lsmcheck; please report it)", err=True)
            sys.exit(EXIT_BUG)
        sys.exit(code)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


dtype_option = click.option(
    "-d",
    "--dtype",
    "dtypes",
    multiple=True,
    metavar="NAMES",
    help=f"Precisions, comma-separated or repeated ({', '.join(FORMATS)}; default all).",
)
algorithm_option = click.option(
    "-a",
    "--algorithm",
    "algorithms",
    multiple=True,
    metavar="NAMES",
    help="Algorithms, comma-separated or repeated (see `lsmcheck algorithms`; default all).",
)
precision_option = click.option(
    "--precision",
    type=int,
    default=113,
    show_default=True,
    metavar="BITS",
    help="Starting mpmath precision of the reference; raised until every value is certified.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lsmcheck")
def main() -> None:
    """Audit softmax, log-softmax and logsumexp for overflow, underflow, NaN and ULP error."""


@main.command()
@click.argument("paths", nargs=-1, metavar="[PATHS]...")
@click.option(
    "-l", "--logits", multiple=True, metavar="TEXT", help='A vector typed inline: -l "2,1,0.1".'
)
@dtype_option
@algorithm_option
@precision_option
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
@_guard
def run(
    paths: tuple[str, ...],
    logits: tuple[str, ...],
    dtypes: tuple[str, ...],
    algorithms: tuple[str, ...],
    precision: int,
    per_element: bool,
    fmt: str,
    output: str | None,
    max_ulp: float | None,
    fail_on: tuple[str, ...],
) -> int:
    """Audit the logit vectors in PATHS (CSV, TSV, JSON, .npy, .npz; - for stdin)."""
    options = Options(
        dtypes=_names(dtypes, DEFAULT_FORMATS),
        algorithms=_names(algorithms, DEFAULT_ALGORITHMS),
        precision_bits=precision,
        per_element=per_element,
        thresholds=Thresholds(max_ulp=max_ulp, fail_on=parse_fail_on(fail_on)),
    )
    options.formats(), options.implementations()  # fail on a bad name before reading
    vectors = read_sources(paths, logits, stdin=click.get_text_stream("stdin"))
    report = audit(vectors, options)
    stream = click.get_text_stream("stdout")
    if output:
        write_atomically(output, render(fmt, report, Style(color=False)), paths)
        click.echo(f"lsmcheck: wrote {output}", err=True)
    else:
        stream.write(render(fmt, report, _style(stream)))
    return report.exit_code


@main.command()
@click.argument("logits", metavar="LOGITS")
@dtype_option
@algorithm_option
@precision_option
@_guard
def explain(
    logits: str, dtypes: tuple[str, ...], algorithms: tuple[str, ...], precision: int
) -> int:
    """Explain one vector element by element, e.g. explain "1000,1001,1002" -d float32."""
    from lsmcheck.explain import explain as explain_vector
    from lsmcheck.formats.explain import render as render_explanation

    options = Options(
        dtypes=_names(dtypes, DEFAULT_FORMATS),
        algorithms=_names(algorithms, DEFAULT_ALGORITHMS),
        precision_bits=precision,
    )
    options.formats(), options.implementations()
    vector = parse_logits_flag(logits, 0)
    stream = click.get_text_stream("stdout")
    stream.write(render_explanation(explain_vector(vector, options), _style(stream)))
    return 0


@main.command(name="algorithms")
@_guard
def list_algorithms() -> int:
    """List the algorithms lsmcheck can audit."""
    width = max(len(n) for n in BUILTINS)
    for alg in BUILTINS.values():
        click.echo(f"{alg.name:<{width}}  {alg.kind.value:<11}  {alg.description}")
    return 0

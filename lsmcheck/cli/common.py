"""What every command shares: option definitions, the error guard, output writing, styles."""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import click

from lsmcheck.algorithms import ALL_BUILTINS, DEFAULT_ALGORITHMS, DEFAULT_BLOCK, Algorithm
from lsmcheck.dtypes import ALL_FORMATS, DEFAULT_FORMATS, FORMATS, Format, with_all
from lsmcheck.errors import LsmcheckError, UsageError
from lsmcheck.formats import Style
from lsmcheck.impllimits import DEFAULT_TIMEOUT

#: Exit code for a bug in lsmcheck (never 1, which means "the gate failed").
EXIT_BUG = 3
#: Exit code when standard output was closed early (128 + SIGPIPE, as the shell reports it).
EXIT_BROKEN_PIPE = 141


def names(
    values: Iterable[str], default: tuple[str, ...], flag: str, every: tuple[str, ...]
) -> tuple[str, ...]:
    """Comma-separated or repeated names; no option at all selects ``default``, and ``all``
    stands for ``every`` one (``-a all,torch.softmax``: every built-in and torch's).

    An option given with nothing in it (``-d ''``) is an error, not "all"."""
    values = list(values)
    parts = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if values and not parts:
        raise UsageError(f"{flag}: no name given; give names separated by commas, or all")
    return with_all(parts, every) if parts else default


def dtype_names(values: Iterable[str]) -> tuple[str, ...]:
    return names(values, DEFAULT_FORMATS, "--dtype", ALL_FORMATS)


def algorithm_names(values: Iterable[str]) -> tuple[str, ...]:
    return names(values, DEFAULT_ALGORITHMS, "--algorithm", ALL_BUILTINS)


def style_for(stream: TextIO) -> Style:
    """Colour only on a terminal and without NO_COLOR; the terminal's width (at least 80).

    Output that is not a terminal (a file, a pipe, a CI log) is laid out 140 columns wide.
    """
    tty = stream.isatty()
    color = tty and not os.environ.get("NO_COLOR")
    width = shutil.get_terminal_size((140, 24)).columns if tty else 140
    return Style(color=color, width=max(width, 80))


def check_output(path: str, flag: str = "--output") -> None:
    """Fail early (before any work) when ``path`` cannot be written as a report file."""
    if not path:
        raise UsageError(f"{flag}: empty path")
    if path == "-":  # where - means standard output, the command has taken it before this
        raise UsageError(f"{flag}: - is standard output, which this cannot go to; name a file")
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag}: {path} is a directory")
    if _special(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{flag}: cannot write {path} (permission denied)")
        return
    directory = target.parent
    if not directory.is_dir():
        raise UsageError(f"{flag}: directory {str(directory)!r} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{flag}: cannot write in {str(directory)!r} (permission denied)")


def check_outputs(outputs: Iterable[tuple[str, str, Sequence[str]]]) -> None:
    """Fail before any work when a report file cannot be written, would overwrite a file it
    must not, or is named twice (however spelt: ``r.json`` and ``./r.json`` are one file).

    ``outputs``: (path, flag, the files it must not overwrite) for each file to be written.
    """
    seen: dict[str, str] = {}
    for path, flag, protected in outputs:
        check_output(path, flag)
        if _is_input(Path(path), protected):
            raise UsageError(f"{flag}: {path} is an input file; refusing to overwrite it")
        key = os.path.realpath(path)
        if key in seen:
            raise UsageError(f"{flag}: {path} is written twice (also by {seen[key]})")
        seen[key] = flag


def _is_input(target: Path, inputs: Iterable[str]) -> bool:
    if not target.exists():
        return False
    for src in inputs:
        if src == "-":
            try:  # standard input redirected from the very file
                if os.path.samestat(os.fstat(sys.stdin.fileno()), target.stat()):
                    return True
            except (OSError, ValueError, io.UnsupportedOperation):
                continue
        elif Path(src).exists() and target.samefile(src):
            return True
    return False


def _special(path: str) -> bool:
    """Whether ``path`` is a device, a FIFO or a socket (``/dev/null``, ``/dev/stdout``, a
    named pipe), through any symbolic links: written into, never replaced by a file."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_atomically(
    path: str, data: str | bytes, inputs: Iterable[str], flag: str = "--output"
) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` via a temporary file and a rename; never
    over an input.

    The file gets the permissions a plain ``open`` would give it (0666 less the umask);
    ``flag`` names the option that asked for the file in error messages.  Interrupted at any
    point, it leaves either the old file or the new one, and no temporary file.  A symbolic
    link is written through (its target is replaced, the link stays).  A device or a pipe
    (``-o /dev/null``, ``-o /dev/stdout``) is written into as it is: renaming a file over it
    would replace it (as root, ``/dev/null`` itself).
    """
    check_output(path, flag)
    if _is_input(Path(path), inputs):
        raise UsageError(f"{flag}: {path} is an input file; refusing to overwrite it")
    body = data.encode("utf-8") if isinstance(data, str) else data
    if _special(path):
        with open(path, "wb") as f:
            f.write(body)
        return
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():  # a dangling link into a missing directory
        raise UsageError(f"{flag}: directory {str(target.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def guard(fn: Callable[..., int]) -> Callable[..., None]:
    """Run a command: user errors become one line + exit 2, bugs a traceback + exit 3."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = fn(*args, **kwargs)
        except LsmcheckError as e:
            click.echo(f"lsmcheck: error: {e}", err=True)
            sys.exit(e.exit_code)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # the reader went away (| head): stop quietly, as cat does
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_BROKEN_PIPE)
        except MemoryError:  # sizes asked for (--length, --samples, --steps, ...) too large
            click.echo(
                "lsmcheck: error: out of memory: the sizes asked for need more memory than this "
                "process may use; ask for fewer or shorter vectors",
                err=True,
            )
            sys.exit(2)
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
    help=f"Precisions, comma-separated or repeated ({', '.join(FORMATS)}, or all; default "
    "float16,float32,float64); DTYPE/acc=WIDER for mixed precision.",
)
algorithm_option = click.option(
    "-a",
    "--algorithm",
    "algorithms",
    multiple=True,
    metavar="NAMES",
    help="Algorithms, comma-separated or repeated (see `lsmcheck algorithms`; default: the "
    "seven marked *; all: every built-in).",
)
reference_option = click.option(
    "--reference",
    type=click.Choice(["auto", "mpmath"]),
    default="auto",
    show_default=True,
    help="auto: fast certified float64/double-double tier, mpmath for what it cannot settle; "
    "mpmath: mpmath for every element.",
)


jobs_option = click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Worker processes (default: every core).  The report is the same whatever N is.",
)
quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar (it only shows on a terminal anyway)."
)
scheduler_option = click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run the chunks on this Dask distributed scheduler (tcp://host:8786); needs the "
    "'dask' extra.",
)


class ProgressBar:
    """A rich progress bar on stderr that appears once work has taken ``delay`` seconds.

    Silent when stderr is not a terminal or with ``quiet``.  Call it as a
    ``progress(done, total)`` callback; :meth:`close` removes it.  With a ``unit`` (``run``'s
    elements) it shows the count done and the rate; without one (the exploring commands, whose
    progress is a fraction of their steps) the percentage.  Both show the time spent and left.
    """

    def __init__(
        self,
        quiet: bool,
        delay: float = 1.0,
        label: str = "auditing",
        unit: str | None = "elements",
    ) -> None:
        import time

        self._now = time.monotonic
        self._start = self._now()
        self._delay, self._label, self._unit = delay, label, unit
        self._enabled = not quiet and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: float, total: float | None) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            if self._now() - self._start < self._delay:
                return
            self._bar = self._draw()
            self._bar.start()
            self._task = self._bar.add_task(self._label, total=total, rate="")
        rate = ""
        if self._unit is not None:
            rate = f"{done / max(self._now() - self._start, 1e-9):,.0f}/s"
        self._bar.update(self._task, completed=done, total=total, rate=rate)

    def _draw(self) -> Any:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        counted: list[ProgressColumn] = []
        if self._unit is not None:
            rate = TextColumn("{task.fields[rate]}")
            counted = [MofNCompleteColumn(), TextColumn(self._unit), rate]
        return Progress(
            TextColumn(self._label),
            BarColumn(),
            TaskProgressColumn(),
            *counted,
            TimeElapsedColumn(),
            TextColumn("spent,"),
            TimeRemainingColumn(),
            TextColumn("left"),
            console=Console(stderr=True),
            transient=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def impl_limit_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--impl-timeout`` and ``--impl-memory``: the limits of each ``--impl`` sandbox."""
    fn = click.option(
        "--impl-memory",
        metavar="SIZE",
        help="Cap the memory of each --impl implementation's process: 2G, 512M, 25% "
        "[default: half the physical memory; 0: no cap].",
    )(fn)
    return click.option(
        "--impl-timeout",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        help=f"Fail a call of an --impl implementation that takes longer (its process is killed, "
        f"its later calls fail at once) [default: {DEFAULT_TIMEOUT:g}; 0: no limit].",
    )(fn)


precision_option = click.option(
    "--precision",
    type=int,
    default=113,
    show_default=True,
    metavar="BITS",
    help="Starting mpmath precision of the reference; raised until every value is certified.",
)


def precision_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--accumulate``, ``--block``, ``--target``, ``--grad`` and ``--bounds``."""
    for option in reversed(
        (
            click.option(
                "--accumulate",
                metavar="DTYPE",
                help="Compute sums, max-shift and log in this wider dtype (mixed precision).",
            ),
            click.option(
                "--block",
                type=int,
                default=DEFAULT_BLOCK,
                show_default=True,
                metavar="N",
                help="Block size of softmax_online_blocked.",
            ),
            click.option(
                "--target",
                metavar="SPEC",
                help="Target class for cross-entropy and --grad: N, N1,N2,..., argmax, argmin "
                "or col:K.",
            ),
            click.option(
                "--grad", is_flag=True, help="Also audit the backward pass (needs --target)."
            ),
            click.option(
                "--bounds",
                is_flag=True,
                help="Compare each error with the algorithm's proven error bound (slower: "
                "mpmath reference for every vector).",
            ),
        )
    ):
        fn = option(fn)
    return fn


def _zone(_ctx: click.Context, _param: click.Parameter, value: str) -> float | None:
    """``--danger-zone``: a percentage, as a fraction; ``off``: ``None`` (no headroom)."""
    if value.strip().lower() == "off":
        return None
    try:
        return float(value) / 100
    except ValueError:
        raise click.BadParameter(f"expected a percentage or off, got {value!r}") from None


#: ``--danger-zone PCT|off`` of ``run`` and ``explain`` (the command gets a fraction or None).
danger_zone_option = click.option(
    "--danger-zone",
    default="10",
    show_default=True,
    callback=_zone,
    metavar="PCT|off",
    help="Warn when a vector is within PCT percent of a measured limit (0: only past it; "
    "off: measure no limits, give no headroom, make no extra calls to --impl code).",
)


def note_black_boxes(formats: Iterable[Format], user: Sequence[Algorithm]) -> None:
    """Say on stderr that mixed precision (``--accumulate``, ``-d float16/acc=float32``) does
    not reach the user's implementations: a black box computes as it does, and is audited once
    in the storage dtype.  Without a word, the option seemed to skip them."""
    mixed = [f for f in formats if f.accumulate is not None]
    if not (mixed and user):
        return
    storage = ", ".join(dict.fromkeys(f.storage.name for f in mixed))
    click.echo(
        f"lsmcheck: {', '.join(f.name for f in mixed)}: the accumulation dtype does not apply "
        f"to {', '.join(a.name for a in user)} (your code computes as it does); audited in "
        f"{storage}",
        err=True,
    )

"""The command line: parse, call the library, pick a format, write, exit.

Exit codes: 0 every result passes; 1 a result fails the gate; 2 a usage, configuration or
input error (one line on stderr); 3 a bug in lsmcheck (a traceback on stderr); 130 interrupted
(Ctrl-C, SIGINT); 143 terminated (SIGTERM).  An interrupted run leaves no partial report file.

Each command lives in a module of its own and is registered on :func:`main` here.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import click

from lsmcheck import __version__, _startup

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (temporary files are removed on the way out)."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


#: Each command and where it lives: imported when it is called (or listed by ``--help``),
#: so that ``lsmcheck run`` does not pay for importing ``explain``, ``sweep`` and the rest.
COMMANDS = {
    "run": "lsmcheck.cli.run:run",
    "explain": "lsmcheck.cli.explain:explain",
    "algorithms": "lsmcheck.cli.info:list_algorithms",
    "limits": "lsmcheck.cli.explore:limits",
    "sweep": "lsmcheck.cli.explore:sweep",
    "hunt": "lsmcheck.cli.explore:hunt",
}


class Lsmcheck(click.Group):
    """The ``lsmcheck`` group: every way out is one line on stderr and a documented code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, name = where.split(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command)
        return command

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> None:
        if args is None:  # the program itself (or a caller using sys.argv): see _as_program
            _as_program()
        self._main(args, prog_name, **extra)

    def _main(self, args: Sequence[str] | None, prog_name: str | None, **extra: Any) -> None:
        program = args is None
        # Only the main thread may set a signal handler (lsmcheck called from a thread, e.g.
        # a test runner's worker, keeps the process's own SIGTERM handling).
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
        # mpmath's own import catches everything around importing gmpy2 (a bare except), so a
        # Ctrl-C that lands there is lost and the run goes on: imported here, under the
        # start-up guard, rather than lazily in the middle of an audit (0.05 s)
        import mpmath  # noqa: F401

        try:
            _startup.release()  # a Ctrl-C from here on is caught below
            super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:  # --help, --version
            sys.exit(e.exit_code)
        except click.ClickException as e:  # usage errors: one line, like every other error
            hint = ""
            ctx = getattr(e, "ctx", None)
            if ctx is not None:
                hint = f" (see '{ctx.command_path} --help')"
            click.echo(f"lsmcheck: error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except (KeyboardInterrupt, click.exceptions.Abort):
            click.echo("lsmcheck: interrupted", err=True)
            _stop(EXIT_INTERRUPTED, program)
        except Terminated:
            click.echo("lsmcheck: terminated", err=True)
            _stop(EXIT_TERMINATED, program)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
        sys.exit(0)


def _stop(code: int, program: bool) -> None:
    """Leave an interrupted run with ``code``; the program itself without the interpreter's
    finalization, where the thread of an abandoned worker pool could still print a traceback
    after the one-line message (``OSError: [Errno 9] Bad file descriptor``, seen once in the
    test suite: concurrent.futures' exit handler wakes a pool whose pipe is being closed).
    Nothing is lost: no report is written after an interruption, and the workers are
    stopped already."""
    if not program:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing left to say there
            stream.flush()
    os._exit(code)


@functools.cache
def _as_program() -> None:
    """When the interpreter exits, move every object out of the garbage collector's sight.

    At exit the interpreter runs a last collection over every object still alive (a report of
    21,000 results is some 600,000 of them): about 0.09 s of a default run's exit, measured,
    for nothing, since the process's memory goes back whole.  Done by an ``atexit`` handler,
    so that a program that calls ``main()`` and goes on is not left with objects the
    collector no longer sees (cyclic garbage among them would never be freed).  Registered
    once however often ``main()`` runs.
    """
    atexit.register(gc.freeze)


def keep_until_exit() -> None:
    """Called by a command once it holds what it will write (a report): in the program itself,
    move every object alive out of the garbage collector's sight now, as at exit.

    Rendering a report triggers collections that would otherwise walk its some 600,000
    objects again: 0.02-0.03 s of a default run, measured.  A caller of ``main([...])`` keeps
    ordinary collection.
    """
    if _as_program.cache_info().currsize:  # main() runs as the program
        gc.freeze()


@click.group(cls=Lsmcheck, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lsmcheck")
def main() -> None:
    """Audit softmax, log-softmax and logsumexp for overflow, underflow, NaN and ULP error."""


__all__ = ["main"]

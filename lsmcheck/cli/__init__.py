"""The command line: parse, call the library, pick a format, write, exit.

Exit codes: 0 every result passes; 1 a result fails the gate; 2 a usage, configuration or
input error (one line on stderr); 3 a bug in lsmcheck (a traceback on stderr).

Each command lives in a module of its own and is registered on :func:`main` here.
"""

from __future__ import annotations

import click

from lsmcheck import __version__
from lsmcheck.cli.explain import explain
from lsmcheck.cli.explore import hunt, limits, sweep
from lsmcheck.cli.info import list_algorithms
from lsmcheck.cli.run import run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lsmcheck")
def main() -> None:
    """Audit softmax, log-softmax and logsumexp for overflow, underflow, NaN and ULP error."""


main.add_command(run)
main.add_command(explain)
main.add_command(list_algorithms)
main.add_command(limits)
main.add_command(sweep)
main.add_command(hunt)

__all__ = ["main"]

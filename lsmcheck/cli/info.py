"""``lsmcheck algorithms``: what can be audited."""

from __future__ import annotations

import click

from lsmcheck.algorithms import BUILTINS
from lsmcheck.cli.common import guard


@click.command(name="algorithms")
@guard
def list_algorithms() -> int:
    """List the algorithms lsmcheck can audit, with what each computes."""
    width = max(len(n) for n in BUILTINS)
    for alg in BUILTINS.values():
        click.echo(f"{alg.name:<{width}}  {alg.kind.value:<11}  {alg.description}")
    return 0

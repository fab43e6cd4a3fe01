"""``lsmcheck algorithms``: what can be audited, and which frameworks are there."""

from __future__ import annotations

import click

from lsmcheck import frameworks
from lsmcheck.algorithms import BUILTINS, DEFAULT_ALGORITHMS, LOSSES, Algorithm
from lsmcheck.cli.common import guard
from lsmcheck.grad import GRADS


def _section(title: str, rows: list[tuple[str, str, str]], width: int) -> None:
    click.echo(title)
    for name, kind, text in rows:
        click.echo(f"  {name:<{width}}  {kind:<18}  {text}")


@click.command(name="algorithms")
@guard
def list_algorithms() -> int:
    """List the algorithms lsmcheck can audit, with what each computes."""
    adapters = frameworks.listing()
    names = [*BUILTINS, *LOSSES, *GRADS, *(a.name for a, _ in adapters)]
    width = max(len(n) for n in names)

    def rows(algs: dict[str, Algorithm]) -> list[tuple[str, str, str]]:
        return [
            (a.name, a.kind.value, a.description + (" *" if a.name in DEFAULT_ALGORITHMS else ""))
            for a in algs.values()
        ]

    _section("Built-in (traced; * = audited by default):", rows(BUILTINS), width)
    _section("Cross-entropy (needs --target):", rows(LOSSES), width)
    _section("Backward passes (--grad; need --target):", rows(GRADS), width)
    click.echo("Frameworks (black boxes, on the CPU):")
    for fw in dict.fromkeys(a.framework for a, _ in adapters):
        reason = frameworks.unavailable(fw)
        state = f"{fw} {frameworks.version(fw)}" if reason is None else f"unavailable: {reason}"
        click.echo(f"  [{state}]")
        for a, _ in (p for p in adapters if p[0].framework == fw):
            click.echo(f"  {a.name:<{width}}  {a.kind.value:<18}  {a.description}")
    return 0

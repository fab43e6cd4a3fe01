"""``lsmcheck explain``: one vector, element by element, with a verdict in words."""

from __future__ import annotations

import difflib
import sys

import click

from lsmcheck.cli.common import (
    algorithm_names,
    algorithm_option,
    danger_zone_option,
    dtype_names,
    dtype_option,
    guard,
    precision_flags,
    precision_option,
    style_for,
)
from lsmcheck.errors import InputError, UsageError
from lsmcheck.explain import explain as explain_vector
from lsmcheck.formats.explain import render
from lsmcheck.options import Options
from lsmcheck.sources import parse_logits_flag


class _Explain(click.Command):
    """Unknown options are taken as arguments (so that a vector may start with a minus:
    ``explain -1,2``); one that is no number is then named as an unknown option, as ``run``
    does, rather than as an "unexpected extra argument"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))
        except click.UsageError as e:
            if "unexpected extra argument" not in e.message:
                raise
            known = [o for p in self.params for o in getattr(p, "opts", ())]
            for arg in args:
                name = arg.split("=", 1)[0]
                if name.startswith("-") and not _numeric(arg) and name not in known:
                    close = difflib.get_close_matches(name, known)
                    raise click.NoSuchOption(name, possibilities=close, ctx=ctx) from None
            raise


def _numeric(arg: str) -> bool:
    """Whether ``arg`` starts like a negative number (``-1,2``, ``-.5``, ``-inf``, ``-nan``)."""
    return arg[1:2].isdigit() or arg[1:2] == "." or arg[1:4].lower() in ("inf", "nan")


@click.command(cls=_Explain, context_settings={"ignore_unknown_options": True})
@click.argument("logits", metavar="LOGITS", required=False)
@click.option(
    "-l",
    "--logits",
    "flag",
    metavar="TEXT",
    help='The vector as run takes it, instead of LOGITS: -l "2,1,0.1".',
)
@dtype_option
@algorithm_option
@precision_option
@precision_flags
@danger_zone_option
@guard
def explain(
    logits: str | None,
    flag: str | None,
    dtypes: tuple[str, ...],
    algorithms: tuple[str, ...],
    precision: int,
    accumulate: str | None,
    block: int,
    target: str | None,
    grad: bool,
    bounds: bool,
    danger_zone: float | None,
) -> int:
    """Explain one vector element by element: explain "1000,1001,1002" -d float32."""
    options = Options(
        dtypes=dtype_names(dtypes),
        algorithms=algorithm_names(algorithms),
        precision_bits=precision,
        accumulate=accumulate,
        block=block,
        target=target,
        grad=grad,
        bounds=bounds,
        danger_zone=danger_zone,
    )
    options.validate()
    if logits is not None and logits.startswith("-") and not _numeric(logits):
        # an unknown option taken as the vector (explain -f, explain -l 1,2 -x)
        raise click.NoSuchOption(logits.split("=", 1)[0], ctx=click.get_current_context())
    if (logits is None) == (flag is None):
        raise UsageError('give one vector, as LOGITS or with -l: lsmcheck explain "1000,1001,1002"')
    try:
        vector = parse_logits_flag(logits or flag or "", 0)
    except InputError as e:  # name the argument, not the -l flag
        where = "LOGITS" if logits is not None else "--logits"
        raise InputError(e.where.replace("--logits #1", where), e.message) from None
    sys.stdout.write(render(explain_vector(vector, options), style_for(sys.stdout)))
    return 0

"""Seeded families of logit vectors with one parameter, for ``lsmcheck sweep``.

Every family starts from one draw ``z`` of standard normal values, made once from the seed with
``numpy.random.default_rng(seed).standard_normal((samples, length))``, and varies one parameter:

=======  =========  ===========================================================================
family   parameter  vector at parameter value ``v``
=======  =========  ===========================================================================
scale    s          ``v * z``
shift    c          ``z + v``
spread   d          ``[max(rest) + v, *rest]`` with ``rest = z[:, 1:]``: the top logit leads
                    the others by ``v``
length   n          ``z[:, :v]`` (the draw has the largest length; every step takes a prefix)
=======  =========  ===========================================================================

So a sweep is repeated exactly by the same family, seed, length, samples and range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lsmcheck.errors import UsageError
from lsmcheck.vectors import beyond_memory

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Family:
    """A one-parameter family of vectors.

    Attributes:
        name: the family's name on the command line.
        parameter: the parameter's symbol in output (``s``, ``c``, ``d``, ``n``).
        formula: the vector in terms of the parameter, for people.
        start, stop: the default range.
        log: whether steps are spaced logarithmically by default.
        integer: whether the parameter is an integer (length).
        count: the default number of steps.
        samples: the default number of vectors per step.
    """

    name: str
    parameter: str
    formula: str
    start: float
    stop: float
    log: bool
    integer: bool = False
    count: int = 41
    samples: int = 4


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("scale", "s", "x = s * z", 0.01, 1e5, log=True),
        Family("shift", "c", "x = z + c", -1000.0, 1000.0, log=False),
        Family("spread", "d", "x = [max(rest) + d, rest...], rest = z[1:]", 0.01, 1e3, log=True),
        Family("length", "n", "x = z[:n]", 2, 256, log=True, integer=True, count=8, samples=1),
    )
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        known = ", ".join(FAMILIES)
        raise UsageError(f"FAMILY: unknown family {name!r} (choose from {known})") from None


def steps(family: Family, start: float, stop: float, count: int, log: bool) -> list[float]:
    """The parameter values of a sweep, in order (integers deduplicated for ``length``)."""
    if count < 1:
        raise UsageError(f"--steps: expected at least 1, got {count}")
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise UsageError(f"--from/--to: expected finite numbers, got {start:g}..{stop:g}")
    if family.integer and (start < 1 or stop < 1):
        raise UsageError(f"--from/--to: a length is at least 1, got {start:g}..{stop:g}")
    if log and (start <= 0 or stop <= 0):
        flag = "--log" if not family.log else f"--log (the {family.name} family's default)"
        raise UsageError(
            f"{flag}: a logarithmic range needs positive ends, got {start:g}..{stop:g} "
            "(use --linear)"
        )
    if count == 1:
        values = np.array([start])
    elif log:
        values = np.geomspace(start, stop, count)
    else:  # start*(1-t) + stop*t: no overflow for ends near the largest double (linspace
        # takes stop - start, which overflows for -1e308..1e308)
        t = np.linspace(0.0, 1.0, count)
        values = start * (1 - t) + stop * t
    if family.integer:
        check_length("--from/--to", round(max(values)))
        return [float(v) for v in dict.fromkeys(round(v) for v in values)]
    return [float(v) for v in values]


def check_length(flag: str, n: int) -> None:
    """Refuse vectors too long to audit in this machine's memory (each is audited whole)."""
    too_big = beyond_memory(n)
    if too_big is not None:
        size, memory = too_big
        raise UsageError(
            f"{flag}: vectors of {n:,} logits need about {size} to audit at once, more than "
            f"half this machine's {memory} of memory"
        )


def draw(seed: int, samples: int, length: int) -> FloatArray:
    """The standard normal draw every step of a sweep starts from."""
    if samples < 1:
        raise UsageError(f"--samples: expected at least 1, got {samples}")
    if length < 1:
        raise UsageError(f"--length: expected at least 1, got {length}")
    rng = np.random.default_rng(seed)
    return rng.standard_normal((samples, length))


def vectors(family: Family, value: float, z: FloatArray) -> FloatArray:
    """The family's vectors (one per row of ``z``) at parameter ``value``."""
    if family.name == "scale":
        return value * z
    if family.name == "shift":
        return z + value
    if family.name == "spread":
        if z.shape[1] < 2:
            raise UsageError("--length: the spread family needs at least 2 logits")
        rest = z[:, 1:]
        top = rest.max(axis=1, keepdims=True) + value
        return np.concatenate([top, rest], axis=1)
    if family.name == "length":
        return z[:, : int(value)].copy()
    raise ValueError(family.name)


__all__ = ["FAMILIES", "Family", "draw", "get_family", "steps", "vectors"]

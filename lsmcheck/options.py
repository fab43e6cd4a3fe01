"""The settings of an audit: :class:`Options`, the bounds they are checked against, and
:func:`resolve_algorithms` (implementation names and objects as Algorithms)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lsmcheck import targets
from lsmcheck.algorithms import (
    ALL_BUILTINS,
    DEFAULT_ALGORITHMS,
    DEFAULT_BLOCK,
    Algorithm,
    get_algorithm,
)
from lsmcheck.dtypes import (
    ALL_FORMATS,
    DEFAULT_FORMATS,
    Format,
    accumulate_all,
    get_format,
    with_all,
)
from lsmcheck.errors import UsageError
from lsmcheck.gate import Thresholds, nonnegative

#: The lowest and highest ``--precision`` accepted (bits of the first mpmath attempt).
MIN_BITS, MAX_START_BITS = 64, 4096

#: The reference modes: the tiered fast reference with mpmath fallback, or mpmath everywhere.
REFERENCE_MODES: tuple[str, ...] = ("auto", "mpmath")


@dataclass(frozen=True)
class Options:
    """What to audit and how.

    Attributes:
        dtypes: format names (see :mod:`lsmcheck.dtypes`); ``"all"`` stands for every one.
        algorithms: implementation names (see :mod:`lsmcheck.algorithms`) or
            :class:`~lsmcheck.algorithms.Algorithm` objects (e.g. the user's own, from
            :func:`lsmcheck.userimpl.wrap`); ``"all"`` stands for every built-in, as ``-a all``.
        precision_bits: the first mpmath working precision of the reference.
        per_element: whether results carry per-element detail.
        thresholds: the gate.
        reference: ``"auto"`` (the fast certified tier, mpmath for what it cannot settle) or
            ``"mpmath"`` (mpmath for every element).
        keep: aggregate the results as they stream, keeping per implementation and dtype
            only the ``keep`` worst vectors and the first ``keep`` failing and skipped ones
            (the groups and :class:`~lsmcheck.report.Aggregate` totals cover every vector).
            ``None``: keep every result up to 100,000 results, then aggregate keeping 10.
        aggregate: ``False`` keeps every result however many there are, as comparing with a
            baseline or recording one needs (``keep`` must then be ``None``).
        danger_zone: warn when a vector is within this fraction of a measured limit
            (:mod:`lsmcheck.explore.headroom`); ``None`` computes no headroom.
        accumulate: a wider dtype for sums, shifts and logs (``--accumulate``), or ``None``.
        block: the block size of blocked algorithms (``--block``).
        target: the ``--target`` specification (see :mod:`lsmcheck.targets`), or ``None``.
        grad: whether to audit the backward pass of every algorithm that has one.
        bounds: whether to compare every error with the algorithm's proven error bound
            (:mod:`lsmcheck.bounds`; this takes the mpmath reference for every vector).
    """

    dtypes: tuple[str, ...] = DEFAULT_FORMATS
    algorithms: tuple[str | Algorithm, ...] = DEFAULT_ALGORITHMS
    precision_bits: int = 113
    per_element: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    reference: str = "auto"
    keep: int | None = None
    aggregate: bool = True
    danger_zone: float | None = 0.10
    accumulate: str | None = None
    block: int = DEFAULT_BLOCK
    target: str | None = None
    grad: bool = False
    bounds: bool = False

    def __post_init__(self) -> None:
        # "all" as on the command line and in audit(): every dtype, every built-in
        object.__setattr__(self, "dtypes", with_all(self.dtypes, ALL_FORMATS))
        object.__setattr__(self, "algorithms", with_all(self.algorithms, ALL_BUILTINS))
        if self.block < 1:
            raise UsageError(f"--block: expected a block size >= 1, got {self.block}")
        if self.keep is not None and self.keep < 0:
            raise UsageError(f"--keep: expected a number >= 0, got {self.keep}")
        if self.keep is not None and not self.aggregate:
            raise UsageError(
                "--keep: a baseline compares and records every result, and --keep keeps only "
                "some; drop --keep, or the baseline"
            )
        if self.danger_zone is not None and not (
            nonnegative(self.danger_zone) and self.danger_zone < 1
        ):
            raise UsageError(
                f"--danger-zone: expected a percentage from 0 to below 100, "
                f"got {self.danger_zone * 100:g}"
            )
        if self.reference not in REFERENCE_MODES:
            raise UsageError(
                f"--reference: expected one of {', '.join(REFERENCE_MODES)}, got {self.reference!r}"
            )
        if not MIN_BITS <= self.precision_bits <= MAX_START_BITS:
            raise UsageError(
                f"--precision: expected bits between {MIN_BITS} and {MAX_START_BITS}, "
                f"got {self.precision_bits}"
            )
        if not self.dtypes:
            raise UsageError("--dtype: no dtype selected")
        if not self.algorithms:
            raise UsageError("--algorithm: no algorithm selected")

    def validate(self) -> None:
        """Raise :class:`UsageError` for an unknown dtype or algorithm name."""
        self.formats()
        self.implementations()

    def formats(self) -> list[Format]:
        names = accumulate_all(tuple(dict.fromkeys(self.dtypes)), self.accumulate)
        return [get_format(n) for n in names]

    def implementations(self) -> list[Algorithm]:
        algs = resolve_algorithms(self.algorithms)
        if self.grad:
            backward = [a.backward for a in algs if a.backward is not None]
            if not backward:
                raise UsageError(
                    "--grad: none of the selected algorithms has a backward pass "
                    "(log_softmax_stable, log_softmax_log1p, log_of_softmax, cross_entropy_*, "
                    "torch.log_softmax, torch.nn.functional.cross_entropy)"
                )
            names = {a.name for a in algs}
            algs += [get_algorithm(n) for n in dict.fromkeys(backward) if n not in names]
        needy = [a.name for a in algs if a.kind.needs_target]
        if needy and self.target is None:
            raise UsageError(
                f"--target: {needy[0]} needs the target class of each vector ({targets.FORMS})"
            )
        return algs


def resolve_algorithms(items: Sequence[str | Algorithm]) -> list[Algorithm]:
    """Registered names and Algorithm objects as Algorithms; a name used twice is an error."""
    out: dict[str, Algorithm] = {}
    for item in items:
        alg = item if isinstance(item, Algorithm) else get_algorithm(item)
        if out.setdefault(alg.name, alg) is not alg:
            raise UsageError(f"two different implementations are named {alg.name!r}")
    return list(out.values())

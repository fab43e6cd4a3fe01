"""Leading-order forward error bounds, and the ratio of the measured error to them.

Blanchard, Higham & Higham ("Accurately computing the log-sum-exp and softmax functions", IMA J.
Numer. Anal. 41(4), 2021) bound the rounding errors of each evaluation algorithm.  A bound says
what the algorithm may do on *this* input: the shifted softmax, for instance, may lose
``(|x_j - max| + max_i |x_i - max|) u`` to the rounding of ``x - max``, so a wide spread of logits
excuses a large error.  The ratio ``measured / bound`` tells the two cases apart: at most 1, the
algorithm did what its analysis allows (a large error then comes from the input, not a defect);
above 1, the implementation is worse than its proven bound: a defect, or not the algorithm it
claims to be.

The bounds here are derived with their method, to first order, for the algorithms exactly as
lsmcheck runs them (including mixed precision), under this model:

* ``u = 2**-p`` of the audited (storage) format, ``u_a`` of the accumulation format (``u`` when
  there is none).  ``+ - * /`` have relative error at most the unit roundoff of the dtype they run
  in; a result stored from the accumulation format to the storage format adds ``u``.
* ``exp``, ``log``, ``log1p`` and ``expm1`` have relative error ``f``: for formats narrower than
  float32, which numpy and ml_dtypes evaluate in float32 and round once, ``f = u + 8 u_32``; for
  float32 and float64 ``f = 8u`` (4 ulp: numpy's float32 ``exp`` was measured at up to 1.93 ulp
  on this project's machine, and its SIMD kernels document up to ~4 ulp for ``log``).  This is
  larger than the paper's ``u`` for elementary functions, so the constants below are larger
  than its ``n + 3`` (basic softmax) by a few ``u``.
* A sum of ``n`` positive terms has relative error ``(n - 1) u_a`` (recursive summation; numpy's
  pairwise summation does better).
* Underflow: every stored ``exp`` term and output may lose ``eta``, the smallest subnormal,
  absolutely (half of it, really; the whole keeps float64's ``eta`` representable); these terms
  are added, so a bound stays valid where terms are subnormal.

With ``m = max x``, ``d_j = x_j - m``, ``D = max_j |d_j|`` (finite logits), ``n`` finite logits,
``S = sum_{j != argmax} e^{d_j}``, ``L = log1p(S)`` and ``e = f`` (or ``u + f_a`` when the
exponential is computed in the accumulation format and stored), the absolute error bound of
element ``j`` is, to first order (``r`` is the final rounding: ``u_a``, plus ``u`` when stored):

* ``softmax_naive``: ``p_j (2e + (n-1) u_a + r) + eta ((1 + n p_j) / s + 1)`` with
  ``s = sum e^{x_i}``;
* ``softmax_stable``: the same with ``2e + (|d_j| + D + n - 1) u_a + r`` and ``s = 1 + S`` (the
  paper's ``n + 2 + 2(max x - min x)`` with ``e = u``);
* ``softmax_online``: ``2e + (|d_j| + 2D + 4(n-1)) u_a + r`` (each rescaling by
  ``exp(m_old - m_new)`` adds its exp, its argument and a multiply-add); blocked: ``4(n-1)``
  becomes ``(block - 1) + 5 * blocks``;
* ``log_softmax_naive``: ``sigma + f_a |lse| + r |x_j - lse|`` with ``sigma = e + (n-1) u_a +
  n eta / s``, the absolute error of the computed ``log(sum)``;
* ``log_softmax_stable``: ``|d_j| u_a + sigma + f_a L + r (|d_j| + L)``, ``sigma`` with
  ``+ D u_a`` for the shift and ``s = 1 + S``;
* ``log_softmax_log1p``: as stable, with ``sigma`` scaled by ``S / (1 + S)`` (``<= L``): the
  dominant class's ``-L`` keeps a relative bound of a few ``(n + D) u``, where the stable form's
  ``sigma`` is absolute and swamps ``L = 1.9e-22`` at ``x = [0, -50]``;
* ``log_of_softmax``: the stable softmax's relative bound, plus ``f |log p_j|``;
* ``logsumexp_*``: the ``log(sum)`` part of the log-softmax bound plus ``r |m + L|``;
* ``cross_entropy_*``: the bound of the log-softmax it is computed from, at the target.

The framework adapters are bounded as the shifted algorithms their libraries document (PyTorch,
JAX and SciPy shift by the maximum).  No bound is given for the double-softmax mistake (it
computes another function), for the backward passes, or for a result that overflowed or gave
NaN, or whose error is infinite (the bounds assume finite values).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lsmcheck.dtypes import Format
from lsmcheck.reference import Exact, Mpf

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Model:
    """The rounding model of one format (see the module docstring)."""

    u: float
    u_a: float
    f: float
    f_a: float
    e: float
    r: float
    eta: float

    @staticmethod
    def of(fmt: Format) -> Model:
        def func(p: int) -> float:
            return 2.0**-p + 8 * 2.0**-24 if p < 24 else 8 * 2.0**-p

        acc = fmt.accumulate
        u = fmt.unit_roundoff
        if acc is None:
            return Model(u, u, func(fmt.p), func(fmt.p), func(fmt.p), u, fmt.smallest_subnormal)
        u_a = acc.unit_roundoff
        return Model(
            u, u_a, func(fmt.p), func(acc.p), u + func(acc.p), u_a + u, fmt.smallest_subnormal
        )


@dataclass(frozen=True)
class Inputs:
    """What the bounds need to know about one vector (from its rounded logits and reference)."""

    x: Floats
    d: Floats
    n: int
    big_d: float
    m: float
    big_l: float
    s_ratio: float
    lse: float
    p: Floats
    log_p: Floats

    @staticmethod
    def of(x: Floats, ref: Exact) -> Inputs:
        import mpmath

        finite = np.isfinite(x)
        m = float(x[finite].max())
        with np.errstate(invalid="ignore"):
            d = np.where(finite, x - m, -np.inf)
        big_l = -float(max(ref.log_softmax))  # log1p(S): minus the dominant log-probability
        s_ratio = float(-mpmath.expm1(-mpmath.mpf(big_l)))  # S / (1 + S) = 1 - e^-L
        return Inputs(
            x=x,
            d=d,
            n=int(finite.sum()),
            big_d=float(np.max(np.abs(d[finite]))),
            m=m,
            big_l=big_l,
            s_ratio=s_ratio,
            lse=_float(ref.logsumexp),
            p=np.array([_float(v) for v in ref.softmax]),
            log_p=np.array([_float(v) for v in ref.log_softmax]),
        )


def _float(v: Mpf) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _exp_neg(v: float) -> float:
    """``e**-v``, ``inf`` when it overflows."""
    try:
        return math.exp(-v)
    except OverflowError:
        return math.inf


def _abs_d(q: Inputs) -> Floats:
    return np.where(np.isfinite(q.d), np.abs(q.d), 0.0)


def softmax_bound(q: Inputs, mo: Model, shifted: bool) -> Floats:
    """Per-element absolute bounds of the naive (``shifted=False``) or stable softmax."""
    shift = (_abs_d(q) + q.big_d) * mo.u_a if shifted else 0.0
    rel = 2 * mo.e + shift + (q.n - 1) * mo.u_a + mo.r
    inv_s = _exp_neg(q.big_l) if shifted else _exp_neg(q.lse)  # 1 / sum of exp terms
    return np.asarray(q.p * rel + mo.eta * ((1 + q.n * q.p) * inv_s + 1), np.float64)


def _online(q: Inputs, mo: Model, blocks: int | None, block: int) -> Floats:
    merge = 4 * (q.n - 1) if blocks is None else (min(block, q.n) - 1) + 5 * blocks
    sigma = mo.e + (2 * q.big_d + merge) * mo.u_a
    rel = mo.e + _abs_d(q) * mo.u_a + sigma + mo.r
    inv_s = _exp_neg(q.big_l)
    return np.asarray(q.p * rel + mo.eta * ((1 + q.n * q.p) * inv_s + 1), np.float64)


def _sigma(q: Inputs, mo: Model, shifted: bool, log1p: bool) -> float:
    """The absolute error of the computed log of the sum (first order)."""
    shift = q.big_d * mo.u_a if shifted else 0.0
    if log1p:
        terms = max(q.n - 2, 0)
        return (mo.e + shift + terms * mo.u_a) * q.s_ratio + (q.n - 1) * mo.eta * _exp_neg(q.big_l)
    inv_s = _exp_neg(q.big_l) if shifted else _exp_neg(q.lse)
    return mo.e + shift + (q.n - 1) * mo.u_a + q.n * mo.eta * inv_s


def log_softmax_bound(q: Inputs, mo: Model, shifted: bool, log1p: bool = False) -> Floats:
    """Per-element absolute bounds of the naive, stable or log1p log-softmax."""
    sigma = _sigma(q, mo, shifted, log1p)
    if not shifted:
        return np.asarray(sigma + mo.f_a * abs(q.lse) + mo.r * np.abs(q.x - q.lse), np.float64)
    ad = _abs_d(q)
    return np.asarray(ad * mo.u_a + sigma + mo.f_a * q.big_l + mo.r * (ad + q.big_l), np.float64)


def logsumexp_bound(q: Inputs, mo: Model, shifted: bool, log1p: bool = False) -> Floats:
    """The absolute bound of the naive, stable or log1p logsumexp (one element)."""
    sigma = _sigma(q, mo, shifted, log1p)
    if not shifted:
        stored = mo.r - mo.u_a  # only the final store: the log's own rounding is in f_a
        return np.array([sigma + (mo.f_a + stored) * abs(q.lse)])
    return np.array([sigma + mo.f_a * q.big_l + mo.r * abs(q.m + q.big_l)])


def log_of_softmax_bound(q: Inputs, mo: Model) -> Floats:
    """``log(p_j)`` from the stable softmax: its relative error, plus log's own."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = softmax_bound(q, mo, shifted=True) / q.p
    return np.asarray(rel + mo.f * np.abs(q.log_p), np.float64)


BoundFn = Callable[[Inputs, Model, int], Floats]

#: Per algorithm name: its per-element absolute bound (``block`` is ``--block``).
BOUNDS: dict[str, BoundFn] = {
    "softmax_naive": lambda q, mo, b: softmax_bound(q, mo, shifted=False),
    "softmax_stable": lambda q, mo, b: softmax_bound(q, mo, shifted=True),
    "softmax_online": lambda q, mo, b: _online(q, mo, None, b),
    "softmax_online_blocked": lambda q, mo, b: _online(q, mo, -(-q.x.size // b), b),
    "log_softmax_naive": lambda q, mo, b: log_softmax_bound(q, mo, shifted=False),
    "log_softmax_stable": lambda q, mo, b: log_softmax_bound(q, mo, shifted=True),
    "log_softmax_log1p": lambda q, mo, b: log_softmax_bound(q, mo, shifted=True, log1p=True),
    "log_of_softmax": lambda q, mo, b: log_of_softmax_bound(q, mo),
    "logsumexp_naive": lambda q, mo, b: logsumexp_bound(q, mo, shifted=False),
    "logsumexp_stable": lambda q, mo, b: logsumexp_bound(q, mo, shifted=True),
    "logsumexp_log1p": lambda q, mo, b: logsumexp_bound(q, mo, shifted=True, log1p=True),
}

#: Algorithms bounded as another one (cross-entropy at the target; framework adapters).
SAME_AS: dict[str, str] = {
    "cross_entropy_log_softmax": "log_softmax_stable",
    "cross_entropy_log_of_softmax": "log_of_softmax",
    "cross_entropy_log1p": "log_softmax_log1p",
    "torch.softmax": "softmax_stable",
    "torch.log_softmax": "log_softmax_stable",
    "torch.logsumexp": "logsumexp_stable",
    "torch.nn.functional.cross_entropy": "log_softmax_stable",
    "scipy.special.softmax": "softmax_stable",
    "scipy.special.log_softmax": "log_softmax_stable",
    "scipy.special.logsumexp": "logsumexp_stable",
    "jax.nn.softmax": "softmax_stable",
    "jax.nn.log_softmax": "log_softmax_stable",
    "jax.nn.logsumexp": "logsumexp_stable",
}


@dataclass(frozen=True)
class Verdict:
    """The measured error against the bound, for one result.

    Attributes:
        ratio: ``max_j |computed_j - exact_j| / bound_j``; above 1 the bound is broken.
        bound_rel: the bound at that element as a relative error, over ``max(|exact|,
            2**emin)`` as :attr:`~lsmcheck.results.Result.max_rel_error` is.
        over: how many elements broke their bound.
    """

    ratio: float
    bound_rel: float
    over: int


def has_bound(name: str) -> bool:
    """Whether a bound is known for the algorithm called ``name``."""
    return SAME_AS.get(name, name) in BOUNDS


def bounds_of(
    name: str, x: Floats, ref: Exact, fmt: Format, block: int, target: int | None = None
) -> Floats | None:
    """The per-output absolute error bounds of algorithm ``name`` on ``x``, or ``None``."""
    model = SAME_AS.get(name, name)
    fn = BOUNDS.get(model)
    if fn is None:
        return None
    with np.errstate(all="ignore"):
        b = fn(Inputs.of(np.asarray(x, np.float64), ref), Model.of(fmt), block)
    if name in SAME_AS and name.startswith(("cross_entropy", "torch.nn.functional")):
        if target is None:
            return None
        return np.array([b[target]])
    return b


#: The bounds are first order: they drop terms in ``(n u_a)**2``, which is only right while
#: ``(n - 1) u_a`` is small.  Beyond this, no bound applies (the sum of 200 float8_e5m2 terms,
#: ``(n - 1) u_a = 25``, stalls at 8; its "bound" of 2500% was called broken, "a defect").
FIRST_ORDER_LIMIT = 0.1


def verdict(
    name: str,
    x: Floats,
    ref: Exact,
    fmt: Format,
    abs_error: Floats,
    exact: tuple[Mpf, ...],
    block: int,
    target: int | None = None,
) -> Verdict | None:
    """The measured error of a result against its bound.

    ``None`` when no bound applies: no bound is known, an element's error is infinite (an
    overflow, NaN, or a flush to ``-inf``: the bounds assume finite values), or the vector is
    too long for a first-order bound in its accumulation format (:data:`FIRST_ORDER_LIMIT`).
    An element whose bound cannot be evaluated in float64 (a probability below float64's
    range) is not counted.
    """
    import mpmath

    b = bounds_of(name, x, ref, fmt, block, target)
    if b is None or not np.all(np.isfinite(abs_error)):
        return None
    n = int(np.sum(np.isfinite(np.asarray(x, np.float64))))
    if (n - 1) * Model.of(fmt).u_a > FIRST_ORDER_LIMIT:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(abs_error == 0, 0.0, abs_error / b)
    ratios = np.where(np.isnan(ratios), 0.0, ratios)
    j = int(np.argmax(ratios))
    v = _float(abs(exact[j])) if mpmath.isfinite(exact[j]) else math.inf
    v = max(v, 2.0**fmt.emin)  # the relative errors' floor (metrics.element_error)
    with np.errstate(all="ignore"):
        rel = float(b[j] / v) if v != math.inf else math.inf
    return Verdict(float(ratios[j]), rel, int(np.sum(ratios > 1)))

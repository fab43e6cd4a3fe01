"""Streaming: lazy input, and results aggregated as they stream with exact totals."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator

import numpy as np
import pytest

from lsmcheck import Options, Status, Thresholds, Vector, audit, stream
from lsmcheck.report import summarise


def vectors(n: int = 40) -> list[Vector]:
    rng = np.random.default_rng(9)
    out = [Vector("s", i, i + 1, rng.standard_normal(6) * 40) for i in range(n)]
    out[3] = Vector("s", 3, 4, np.array([1.0, math.nan]))  # undefined
    out[7] = Vector("s", 7, 8, np.array([19.0, 20.0, -math.inf]))  # float16 overflow
    out[11] = Vector("s", 11, 12, np.array([70000.0, 0.0]))  # unrepresentable in float16
    return out


def test_groups_are_those_of_summarise() -> None:
    report = audit(vectors(), Options())
    expected = summarise(report.results)
    got = tuple(dataclasses.replace(g, max_ulp_histogram=()) for g in report.groups)
    assert got == expected
    for g in report.groups:
        assert sum(n for _, n in g.max_ulp_histogram) == g.audited
    assert report.aggregated is None


def test_keep_aggregates_with_exact_totals() -> None:
    opts = Options(thresholds=Thresholds(fail_on=frozenset({"overflow"})))
    full = audit(vectors(), opts)
    agg = audit(vectors(), dataclasses.replace(opts, keep=2))
    assert agg.groups == full.groups  # every total, the worst vector and the mean included
    assert agg.counts() == full.counts() and agg.passed == full.passed is False
    a = agg.aggregated
    assert a is not None
    assert (a.results, a.vectors) == (len(full.results), 40)
    assert a.skipped == sum(
        r.status in (Status.UNDEFINED, Status.UNREPRESENTABLE) for r in full.results
    )
    # kept: per group the 2 worst, the first 2 failing and the first 2 skipped, in input order
    kept = agg.results
    assert len(kept) < len(full.results)
    order = [full.results.index(r) for r in kept]
    assert order == sorted(order)
    for g in full.groups:
        mine = [r for r in kept if (r.algorithm, r.dtype) == (g.algorithm, g.dtype)]
        assert g.worst in mine
        assert sum(r.status is Status.FAIL for r in mine) == min(2, g.failed)
    totals = {(f.algorithm, f.dtype, f.kind, f.event): f for f in a.findings}
    for r in full.results:
        for f in r.findings:
            assert totals[r.algorithm, r.dtype, f.kind, f.event].message
    elements = sum(f.count for r in full.results for f in r.findings)
    assert sum(f.elements for f in a.findings) == elements
    doc = json.loads(agg.to_json())
    assert doc["summary"]["aggregated"]["results"] == len(full.results)
    assert doc["summary"]["statuses"] == full.counts()


def test_large_runs_switch_to_aggregation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "AUTO_AGGREGATE", 50)
    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 30)
    report = audit(vectors(), Options())
    assert report.aggregated is not None and report.aggregated.results == 40 * 21
    assert len(report.results) <= 21 * 3 * stream.AUTO_KEEP


def test_chunks_of_short_vectors_are_capped_in_vectors() -> None:
    """2**17 logits of 2 each would be 65,536 vectors, 1.4 million results held at once (a
    review measured 2 GB for a 2.4 MB CSV): a chunk has at most CHUNK_VECTORS vectors."""
    short = (Vector("s", i, None, np.array([0.0, float(i)])) for i in range(5000))
    sizes = [len(c) for c in stream.chunks(short)]
    assert sum(sizes) == 5000 and max(sizes) == stream.CHUNK_VECTORS == 1024
    long_rows = [Vector("l", i, None, np.zeros(1000)) for i in range(300)]
    assert [len(c) for c in stream.chunks(long_rows)] == [132, 132, 36]  # 2**17 logits


def test_input_is_read_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 12)  # two vectors of 6 per chunk
    pulled = 0

    def source() -> Iterator[Vector]:
        nonlocal pulled
        for v in vectors():
            pulled += 1
            yield v

    seen: list[int] = []
    audit(source(), Options(dtypes=("float64",)), lambda done, _: seen.append(pulled))
    # the engine looks at two chunks ahead (to decide whether workers are worth starting)
    assert seen[0] <= 6 and seen[-1] == 40


def test_npy_streams_in_blocks(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from lsmcheck.sources import arrays, iter_sources

    path = f"{tmp_path}/big.npy"
    np.save(path, np.random.default_rng(1).standard_normal((64, 16)))
    monkeypatch.setattr(arrays, "_NPY_BLOCK", 16 * 8 * 4)
    reads = 0
    real = np.fromfile

    def spy(*args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(np, "fromfile", spy)
    it = iter_sources([path])
    first = [next(it) for _ in range(4)]
    assert reads == 1 and [v.index for v in first] == [0, 1, 2, 3]
    assert len(list(it)) == 60 and reads == 16


def test_exact_sum_of_huge_ulp_errors_is_the_exact_mean_not_nan() -> None:
    # a ULP error against an exact 0 is counted in subnormal ulps (1e307 for an output of
    # 1e-16): two of them made the partials inf and nan, and every later addition appended one
    from fractions import Fraction

    from lsmcheck.exactsum import ExactSum

    rng = np.random.default_rng(3)
    values = [*(rng.uniform(1, 2, 500) * 1.1e307), *rng.uniform(0, 5, 500), 2.0**1000, -3.0]
    s = ExactSum()
    for v in values:
        s.add(float(v))
    truth = sum(Fraction(float(v)) for v in values) / len(values)
    assert s.mean() == float(truth) or abs(Fraction(s.mean()) - truth) <= truth * 2**-52
    assert s.total() == math.inf  # the sum itself is beyond float64
    assert s.units.bit_length() < 2200  # one integer, not a growing list of partials
    small = ExactSum()
    for v in (0.1, 0.2, 0.3):
        small.add(v)
    assert small.total() == math.fsum([0.1, 0.2, 0.3]) and small.mean() == small.total() / 3
    assert ExactSum().mean() is None


def test_the_mean_ulp_of_one_logit_vectors_is_finite_streamed_or_not() -> None:
    x = np.random.default_rng(0).standard_normal((300, 1))
    kw = {"algorithms": ["log_softmax_naive"], "dtypes": ["float64"]}
    whole = audit(x, **kw)
    streamed = audit(x, keep=5, **kw)
    (g,) = whole.groups
    assert g.mean_ulp is not None and math.isfinite(g.mean_ulp) and g.mean_ulp > 1e300
    assert streamed.groups[0].mean_ulp == g.mean_ulp


def _mixed_results() -> list:  # type: ignore[type-arg]
    """Results of every kind: passes and failures (a gate), undefined and unrepresentable
    vectors, overflows and findings, equal max ULP errors (ties between kept results)."""
    rng = np.random.default_rng(11)
    rows = [rng.standard_normal(6) * s for s in rng.choice([1.0, 8.0, 40.0], 60)]
    rows[5] = np.array([1.0, math.nan, 0.0])
    rows[17] = np.array([70000.0, 1.0, 2.0])
    rows[30] = np.array([-math.inf, -math.inf])
    rows[41] = rows[40].copy()
    vectors = [Vector("m", i, None, r) for i, r in enumerate(rows)]
    opts = Options(thresholds=Thresholds(max_ulp=0.6))
    return list(audit(vectors, opts, keep=None).results)


@pytest.mark.parametrize("keep", [0, 1, 3, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merged_partial_accumulators_equal_one_accumulator(keep: int, seed: int) -> None:
    # a worker counts its unit in an accumulator of its own; merged in input order (some units
    # added as results, as the main process's own), the state must be the same as adding all
    results = _mixed_results()
    whole = stream.Accumulator(keep)
    whole.add(results)
    rng = np.random.default_rng(seed)
    cuts = sorted(rng.choice(np.arange(1, len(results)), 12, replace=False).tolist())
    merged = stream.Accumulator(keep)
    for lo, hi in zip([0, *cuts], [*cuts, len(results)], strict=True):
        unit = results[lo:hi]  # cut anywhere, within a vector's results too
        if rng.random() < 0.3:
            merged.add(unit)
        else:
            partial = stream.Accumulator(keep)
            partial.add(unit)
            merged.merge(partial)
    assert merged.groups() == whole.groups()
    assert merged.results() == whole.results()
    assert merged.aggregate() == whole.aggregate()


def test_partial_accumulators_once_the_main_one_aggregates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "AUTO_AGGREGATE", 200)
    results = _mixed_results()
    whole = stream.Accumulator()
    whole.add(results)
    merged = stream.Accumulator()
    for lo in range(0, len(results), 97):
        unit = results[lo : lo + 97]
        if merged.aggregating:
            partial = stream.Accumulator(merged.limit)
            partial.add(unit)
            merged.merge(partial)
        else:
            merged.add(unit)
    assert merged.aggregating and whole.aggregating
    assert merged.groups() == whole.groups()
    assert merged.results() == whole.results()
    assert merged.aggregate() == whole.aggregate()
    with pytest.raises(ValueError, match="both accumulators must aggregate"):
        stream.Accumulator().merge(stream.Accumulator(3))


def test_jobs_2_counts_in_the_workers_and_reports_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream, "AUTO_AGGREGATE", 2000)
    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 64)
    merges = []
    merge = stream.Accumulator.merge
    monkeypatch.setattr(stream.Accumulator, "merge", lambda s, o: merges.append(1) or merge(s, o))
    x = np.random.default_rng(4).standard_normal((600, 8)) * 6
    one = audit(x, jobs=1)
    two = audit(x, jobs=2)
    assert one.aggregated is not None and merges  # some units came back counted
    assert two.to_json() == one.to_json()

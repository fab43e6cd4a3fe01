"""Checks a project would keep in its pytest suite (docs/ci.md); not named test_* here
because one fails on purpose to show the message."""

from __future__ import annotations

from kernels import fused_log_softmax, fused_softmax

from lsmcheck.testing import assert_stable

LOGITS = [[2.0, 1.0, 0.1], [10.0, 11.0], [1000.0, 1001.0, 1002.0]]


def test_log_softmax_is_stable() -> None:
    assert_stable(fused_log_softmax, "log_softmax", logits=LOGITS, max_ulp=4)


def test_softmax_is_stable() -> None:
    assert_stable(fused_softmax, "softmax", logits=LOGITS, dtypes=["float32"], max_ulp=4)


if __name__ == "__main__":  # show the assertion message
    test_log_softmax_is_stable()
    try:
        test_softmax_is_stable()
    except AssertionError as e:
        print(f"AssertionError: {e}")

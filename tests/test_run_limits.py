"""``--max-elements`` and ``--timeout``: stop with exit 2, say what was done, write nothing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lsmcheck.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> str:
    """200 scaled copies of the bundled 32k-logit vector (6.4 million logits)."""
    row = np.load(ROOT / "cases" / "vocab_32k.npy").astype(np.float64)
    path = tmp_path_factory.mktemp("in") / "big.npy"
    np.save(path, np.outer(1 + np.arange(200) / 100, row))
    return str(path)


def run(tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    """Run in process; stderr's last line (earlier tests may have imported JAX, whose fork
    warning --jobs can print first)."""
    report = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["run", *args, "-q", "-f", "json", "-o", str(report)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    lines = result.stderr.splitlines(keepends=True)
    return result.exit_code, lines[-1] if lines else "", report


STOPPED = re.compile(
    r"lsmcheck: error: (--max-elements \d+|--timeout [0-9.]+): stopped after auditing (\d+) "
    r"of (\d+) elements \(logits x dtypes\) in [0-9.]+ s; no report was written\n"
)


def test_max_elements_refuses_an_input_known_to_be_larger_before_auditing_it(
    tmp_path: Path, big: str
) -> None:
    """The size of a .npy is known: it was audited up to the limit and thrown away, with a
    message saying "stopped after auditing 96000 of 96000" when one chunk held it all."""
    code, err, _ = run(tmp_path, big, "-d", "float32", "--max-elements", "100000", "--jobs", "1")
    assert (code, err) == (
        2,
        f"lsmcheck: error: --max-elements 100000: the input holds {200 * 32_000} elements "
        "(logits x dtypes); nothing was audited and no report was written\n",
    )
    assert list(tmp_path.iterdir()) == []
    code, _, report = run(tmp_path, "-l", "1,2,3", "-d", "float32", "--max-elements", "3")
    assert code == 0 and report.exists()


def test_max_elements_stops_a_stream_and_says_how_far_it_got(tmp_path: Path) -> None:
    rows = tmp_path / "in" / "rows.csv"
    rows.parent.mkdir()
    line = ",".join(["1.5", "-2", "0.25", "3"] * 2_500)
    rows.write_text((line + "\n") * 40)  # 400,000 logits; the size of a CSV is not known
    out = tmp_path / "out"
    out.mkdir()
    code, err, _ = run(out, str(rows), "-d", "float32", "--max-elements", "100000", "--jobs", "1")
    assert code == 2
    match = re.fullmatch(
        r"lsmcheck: error: --max-elements 100000: stopped after auditing (\d+) elements "
        r"\(logits x dtypes\) in [0-9.]+ s; no report was written\n",
        err,
    )
    assert match is not None, err
    assert 100_000 < int(match.group(1)) < 400_000
    assert list(out.iterdir()) == []


def test_a_run_within_max_elements_writes_its_report(tmp_path: Path) -> None:
    code, err, report = run(tmp_path, "-l", "2,1,0.1", "-d", "float32", "--max-elements", "3")
    assert code == 0, err
    assert report.exists()


def test_timeout_stops_a_long_run(tmp_path: Path, big: str) -> None:
    code, err, _ = run(tmp_path, big, "--timeout", "0.2", "--jobs", "1")
    assert code == 2
    match = STOPPED.fullmatch(err)
    assert match is not None, err
    assert match.group(1) == "--timeout 0.2"
    assert int(match.group(2)) < int(match.group(3))
    assert list(tmp_path.iterdir()) == []


def test_timeout_also_stops_a_parallel_run(tmp_path: Path, big: str) -> None:
    code, err, _ = run(tmp_path, big, "--timeout", "0.2", "--jobs", "2")
    assert code == 2 and STOPPED.fullmatch(err) is not None, err
    assert list(tmp_path.iterdir()) == []


def test_a_run_within_the_timeout_writes_its_report(tmp_path: Path) -> None:
    code, err, report = run(tmp_path, "-l", "2,1,0.1", "--timeout", "600")
    assert code == 0, err
    assert report.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "0"],
        ["--timeout", "-1"],
        ["--max-elements", "0"],
        # nan passes a range check, inf and 1e10 overflow the interval timer (were exit 3)
        ["--timeout", "nan"],
        ["--timeout", "inf"],
        ["--timeout", "1e10"],
    ],
)
def test_limits_must_be_positive(tmp_path: Path, args: list[str]) -> None:
    code, err, report = run(tmp_path, "-l", "1,2", *args)
    assert code == 2 and err.count("\n") == 1, err
    assert not report.exists()


def test_max_length_refuses_a_long_array_before_reading_it(tmp_path: Path) -> None:
    # one vector of 2**30 logits (an 8 GiB sparse file): refused from the header alone
    huge = tmp_path / "huge.npy"
    with huge.open("wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f8", "fortran_order": False, "shape": (1 << 30,)}
        )
        f.truncate(f.tell() + (1 << 30) * 8)
    code, err, report = run(tmp_path, str(huge))
    assert code == 2 and not report.exists()
    assert err == (
        f"lsmcheck: error: {huge}: vectors of 1,073,741,824 logits are longer than "
        "--max-length 2,097,152: a vector is audited whole, at about 500 bytes per logit "
        "(500.0 GiB here); raise --max-length to audit it\n"
    )
    npz = tmp_path / "two.npz"
    np.savez(npz, short=np.zeros((2, 4)), long=np.zeros((1, 9)))
    code, err, _ = run(tmp_path, str(npz), "--max-length", "8")
    assert code == 2 and err.startswith(f"lsmcheck: error: {npz}:long: vectors of 9 logits")
    code, _, report = run(tmp_path, str(npz), "--max-length", "9", "-d", "float64")
    assert code == 0 and report.exists()


def test_max_length_refuses_a_long_text_vector_before_auditing_it(tmp_path: Path) -> None:
    """It applied to arrays only: a 16 MiB CSV line (8 million logits, some 4 GB to audit)
    went through."""
    csv = tmp_path / "long.csv"
    csv.write_text("1,2\n" + ",".join(["0"] * 5000) + "\n")
    code, err, report = run(tmp_path, str(csv), "--max-length", "4999")
    assert code == 2 and not report.exists()
    assert err == (
        f"lsmcheck: error: {csv}:2: a vector of 5,000 logits is longer than --max-length 4,999: "
        "a vector is audited whole, at about 500 bytes per logit (2 MiB here); raise "
        "--max-length to audit it\n"
    )
    doc = tmp_path / "v.json"
    doc.write_text("[[1, 2], [1, 2, 3]]")
    code, err, _ = run(tmp_path, str(doc), "--max-length", "2")
    assert code == 2 and err.startswith(f"lsmcheck: error: {doc}[1]: a vector of 3 logits")
    code, err, _ = run(tmp_path, "-l", "1,2,3", "--max-length", "2")
    assert code == 2 and err.startswith("lsmcheck: error: --logits[0]: a vector of 3 logits")
    code, _, report = run(tmp_path, str(csv), "--max-length", "5000", "-d", "float64")
    assert code == 0 and report.exists()

"""Hostile inputs: each is audited or refused with a one-line reason; none leaves an output file.

Every case runs ``lsmcheck run FILE -o tmp_path/report.json``.  A refused input exits 2 with
one line on standard error and no report; an audited one exits 0 or 1 with a report.  The
decisions are documented in docs/errors.md.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import tracemalloc
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner

from lsmcheck.cli import main
from lsmcheck.sources import MAX_LINE_BYTES, MAX_NPZ_MEMBER_BYTES

ROOT = Path(__file__).resolve().parent.parent


def run(tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    """Run ``lsmcheck run ARGS -o report.json``; return exit code, stderr and the report path."""
    report = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["run", *args, "-q", "-o", str(report)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr, report


def assert_refused(tmp_path: Path, path: Path | str, expected: str) -> str:
    code, err, report = run(tmp_path, str(path))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("lsmcheck: error: "), err
    assert expected in err, err
    assert not report.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []
    return err


def assert_audited(tmp_path: Path, path: Path | str) -> None:
    code, err, report = run(tmp_path, str(path))
    assert code in (0, 1), err
    assert report.exists()


# --- text ----------------------------------------------------------------------------------


def test_a_line_of_100_megabytes_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    with path.open("wb") as f:
        for _ in range(100):
            f.write(b"1.5," * (1 << 18))  # 1 MiB
        f.write(b"2\n")
    tracemalloc.start()
    try:
        err = assert_refused(tmp_path, path, f"line longer than {MAX_LINE_BYTES >> 20} MiB")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "long.csv:1: " in err and ".npy" in err
    assert peak < 4 * MAX_LINE_BYTES  # the line is never read whole (it is ~100 MiB)


def test_a_long_line_on_standard_input_is_refused(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    text = "1," * (MAX_LINE_BYTES // 2 + 1) + "1\n"
    result = CliRunner().invoke(main, ["run", "-", "-q", "-o", str(report)], input=text)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "-:1: line longer than" in result.stderr
    assert not report.exists()


def test_json_nested_100000_levels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert_refused(tmp_path, path, "JSON nested too deeply")


def test_csv_with_nul_bytes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(b"1,2,3\n4,\x005,6\n")
    assert_refused(tmp_path, path, "binary file")


def test_csv_with_a_nul_byte_after_the_first_block_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "late_nul.csv"
    path.write_bytes(b"1,2,3\n" * 3000 + b"4,\x005\n")
    assert_refused(tmp_path, path, "binary file")


@pytest.mark.parametrize(
    "data",
    [b"\xef\xbb\xbf1,2,3\n4,5,6\n", b"1,2,3\r\n4,5,6\r\n", b"1,2,3\n4\t5\t6\n7 8 9\n"],
    ids=["utf8-bom", "crlf", "one-separator-per-line"],
)
def test_bom_crlf_and_a_separator_per_line_are_audited(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "ok.csv"
    path.write_bytes(data)
    assert_audited(tmp_path, path)


def test_separators_mixed_within_a_line_are_refused_at_the_column(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"1,2 3,4\n")
    assert_refused(tmp_path, path, "mixed.csv:1:3: expected a number, got '2 3'")


def test_thousands_of_columns_are_audited(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(str(i % 7 - 3.5) for i in range(5000)) + "\n")
    assert_audited(tmp_path, path)


def test_a_json_file_above_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lsmcheck.sources import jsonfile

    monkeypatch.setattr(jsonfile, "MAX_JSON_BYTES", 1 << 20)
    path = tmp_path / "big.json"
    path.write_text("[" + "1.0, " * 300_000 + "1.0]")
    assert_refused(tmp_path, path, "JSON file larger than 1 MiB")


# --- .npy and .npz --------------------------------------------------------------------------


def npy_bytes(descr: str, shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


def test_npy_header_claiming_an_absurd_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "absurd.npy"
    path.write_bytes(npy_bytes("<f8", (10**12, 10**9), b"\0" * 64))
    assert_refused(tmp_path, path, "truncated .npy file: shape (1000000000000, 1000000000)")


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[1.0, "a"]], dtype=object), "object arrays are not supported"),
        (np.zeros(3, dtype=[("x", "<f8"), ("y", "<i4")]), "structured arrays are not supported"),
        (np.zeros(3, dtype=np.complex128), "complex arrays are not supported"),
        (np.array(["a", "b"]), "string arrays are not supported"),
        # ml_dtypes' formats are written as raw bytes (|V2, |V1): say so, not "structured"
        (np.ones((2, 3), ml_dtypes.bfloat16), "raw 2-byte values (dtype |V2) do not say their"),
        (np.ones(3, ml_dtypes.float8_e4m3fn), "raw 1-byte values (dtype |V1) do not say their"),
        (np.ones(3, ml_dtypes.float8_e5m2), "raw 1-byte values (dtype <f1) do not say their"),
    ],
    ids=["object", "structured", "complex", "string", "bfloat16", "e4m3fn", "e5m2"],
)
def test_npy_of_an_unsupported_dtype_is_refused(
    tmp_path: Path, array: np.ndarray, expected: str
) -> None:
    path = tmp_path / "odd.npy"
    np.save(path, array, allow_pickle=True)
    assert_refused(tmp_path, path, expected)
    archive = tmp_path / "odd.npz"
    np.savez(archive, member=array)
    assert_refused(tmp_path, archive, expected)


def test_npz_zip_bomb_is_refused_before_decompressing(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, bomb=np.zeros(1000))
    data = bytearray(buffer.getvalue())
    central = data.rfind(b"PK\x01\x02")  # the member's central directory entry
    declared = 0xFFFF_FFF0  # about 4 GiB uncompressed, as a zip bomb declares
    data[central + 24 : central + 28] = declared.to_bytes(4, "little")
    path = tmp_path / "bomb.npz"
    path.write_bytes(bytes(data))
    err = assert_refused(tmp_path, path, f"member declares {declared} bytes uncompressed")
    assert f"{MAX_NPZ_MEMBER_BYTES >> 20} MiB" in err


def test_npz_member_whose_header_outgrows_the_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.npy", npy_bytes("<f8", (10**6, 10**6), b"\0" * 16))
    assert_refused(tmp_path, path, "truncated .npz member: shape (1000000, 1000000)")


def test_npz_with_thousands_of_members_is_audited(tmp_path: Path) -> None:
    path = tmp_path / "many.npz"
    rng = np.random.default_rng(7)
    np.savez(path, **{f"m{i}": rng.normal(size=4) for i in range(3000)})
    code, err, report = run(tmp_path, str(path))
    assert code in (0, 1), err
    assert report.exists()


def test_npz_member_not_named_npy_is_read_as_an_array(tmp_path: Path) -> None:
    path = tmp_path / "renamed.npz"
    buffer = io.BytesIO()
    np.save(buffer, np.array([2.0, 1.0, 0.1]))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", buffer.getvalue())
    assert_audited(tmp_path, path)


# --- symlinks and FIFOs ----------------------------------------------------------------------


def test_a_symlink_to_a_file_is_followed(tmp_path: Path) -> None:
    target = tmp_path / "real.csv"
    target.write_text("2,1,0.1\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert_audited(tmp_path, link)


def test_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "dangling.csv"
    link.symlink_to(tmp_path / "missing.csv")
    assert_refused(tmp_path, link, "dangling.csv: no such file")


def run_subprocess(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "lsmcheck", "run", *args, "-q", "-o", str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=120,  # a hang fails the test instead of the suite
        env=env,
        cwd=tmp_path,
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_without_a_writer_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    done = run_subprocess(tmp_path, str(fifo))
    assert done.returncode == 2
    assert done.stderr == f"lsmcheck: error: {fifo}: no logit vectors found (empty file)\n"
    assert not (tmp_path / "out.json").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_with_a_writer_streams_text(tmp_path: Path) -> None:
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as f:  # blocks until lsmcheck opens the FIFO
            f.write("2,1,0.1\n19,20\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    done = run_subprocess(tmp_path, str(fifo))
    writer.join(timeout=60)
    assert done.returncode in (0, 1), done.stderr
    assert (tmp_path / "out.json").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_binary_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "in.npy"
    os.mkfifo(fifo)
    done = run_subprocess(tmp_path, str(fifo))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a regular file" in done.stderr
    assert not (tmp_path / "out.json").exists()

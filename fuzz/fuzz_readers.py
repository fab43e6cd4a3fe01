"""Coverage-guided fuzz target (atheris) for lsmcheck's readers.

The first byte of each input picks the reader: a file with one of the extensions below (the
format follows the extension, and an unknown one is sniffed), standard input, or a
``-l/--logits`` value; the rest of the input is the content.  Every input must either yield
vectors or raise :class:`lsmcheck.errors.InputError` with a one-line message; anything else
(another exception, a multi-line message) is a crash that libFuzzer reports and saves.

Run it (the seed corpus is written from ``cases/`` into the corpus directory first)::

    pip install atheris
    python fuzz/fuzz_readers.py -max_total_time=600 -timeout=10

Extra arguments go to libFuzzer.  The corpus directory is ``fuzz/corpus`` unless the
``LSMCHECK_FUZZ_CORPUS`` environment variable names another.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout too

with atheris.instrument_imports():
    from lsmcheck.errors import InputError
    from lsmcheck.sources import parse_logits_flag, read_sources

ROOT = Path(__file__).resolve().parent.parent
KINDS = [".csv", ".tsv", ".txt", ".json", ".npy", ".npz", ".dat", "-", "--logits"]
SEED_LIMIT = 64 * 1024  # bytes of each case file kept as a seed
_WORKDIR = tempfile.mkdtemp(prefix="lsmcheck-fuzz-")


def write_seed_corpus(corpus: Path) -> None:
    """Write one seed per case file and per reader: the selector byte then the file's bytes."""
    corpus.mkdir(parents=True, exist_ok=True)
    for case in sorted((ROOT / "cases").iterdir()):
        if not case.is_file():
            continue
        data = case.read_bytes()[:SEED_LIMIT]
        extension = case.suffix.lower()
        selectors = [KINDS.index(extension)] if extension in KINDS else []
        if extension in (".csv", ".txt"):
            selectors += [KINDS.index("-"), KINDS.index(".tsv")]
        for selector in selectors:
            (corpus / f"{case.name}.{selector}").write_bytes(bytes([selector]) + data)
    (corpus / "logits").write_bytes(bytes([KINDS.index("--logits")]) + b"2,1,0.1")
    # Small valid arrays (the bundled .npy is larger than a useful seed).
    array = np.array([[2.0, 1.0, 0.1], [19.0, 20.0, -np.inf]], dtype=np.float32)
    npy, npz = io.BytesIO(), io.BytesIO()
    np.save(npy, array)
    np.savez(npz, a=array, b=array[0].astype(np.int16))
    (corpus / "small.npy").write_bytes(bytes([KINDS.index(".npy")]) + npy.getvalue())
    (corpus / "small.npz").write_bytes(bytes([KINDS.index(".npz")]) + npz.getvalue())
    (corpus / "small.json").write_bytes(bytes([KINDS.index(".json")]) + b"[[2, 1, 0.1], [1e308]]")


def _check(error: InputError) -> None:
    text = str(error)
    if not text or "\n" in text or "\r" in text:
        raise AssertionError(f"an InputError message is not one line: {text!r}")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    kind = KINDS[data[0] % len(KINDS)]
    content = data[1:]
    try:
        if kind == "--logits":
            parse_logits_flag(content.decode("utf-8", "replace"), 0)
        elif kind == "-":
            stream = io.TextIOWrapper(
                io.BytesIO(content), encoding="utf-8", errors="surrogateescape"
            )
            read_sources(["-"], stdin=stream)
        else:
            path = os.path.join(_WORKDIR, "input" + kind)
            with open(path, "wb") as file:
                file.write(content)
            read_sources([path])
    except InputError as error:
        _check(error)


def main() -> None:
    corpus = Path(os.environ.get("LSMCHECK_FUZZ_CORPUS", ROOT / "fuzz" / "corpus"))
    write_seed_corpus(corpus)
    args = list(sys.argv)
    if not any(not arg.startswith("-") for arg in args[1:]):
        args.append(str(corpus))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

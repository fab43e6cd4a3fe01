"""docs/errors.md lists every error message the code can raise (issue 7: an error catalogue)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script() -> object:
    spec = importlib.util.spec_from_file_location(
        "error_catalogue", ROOT / "scripts" / "error_catalogue.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_error_message_is_in_the_catalogue() -> None:
    script = load_script()
    found = list(script.messages())  # type: ignore[attr-defined]
    assert len(found) > 100  # the extraction itself works
    doc = (ROOT / "docs" / "errors.md").read_text()
    assert script.missing(doc) == []  # type: ignore[attr-defined]
    assert script.missing("") == found  # type: ignore[attr-defined]  # and it can fail

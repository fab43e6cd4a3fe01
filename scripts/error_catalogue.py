"""List every error message lsmcheck can raise, as docs/errors.md's catalogue writes them.

    python scripts/error_catalogue.py            # module: message, one per line
    python scripts/error_catalogue.py --missing  # only those docs/errors.md does not list

A message is the text of a ``raise InputError/UsageError/ConfigError(...)`` (the last
argument that is a string), with ``{expression}`` where an f-string fills a value in;
tests/test_error_catalogue.py checks that docs/errors.md lists every one.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLASSES = {"InputError", "UsageError", "ConfigError"}


def _text(node: ast.expr, source: str) -> str | None:
    """The message of a string or f-string expression, ``{...}`` for its fields."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                assert isinstance(value, ast.FormattedValue)
                parts.append("{" + ast.unparse(value.value) + "}")  # no !r, no :spec
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, source), _text(node.right, source)
        if left is not None and right is not None:
            return left + right
    return None


def messages() -> Iterator[tuple[str, str]]:
    """``(module path, message)`` for every raise of a user-facing error, in file order."""
    for path in sorted((ROOT / "lsmcheck").rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in CLASSES or not node.exc.args:
                continue
            text = _text(node.exc.args[-1], source)
            if text is not None:
                yield str(path.relative_to(ROOT)), text


def missing(doc: str) -> list[tuple[str, str]]:
    """The messages ``doc`` does not contain."""
    return [(module, m) for module, m in messages() if m not in doc]


def main() -> None:
    doc = (ROOT / "docs" / "errors.md").read_text()
    found = missing(doc) if "--missing" in sys.argv else list(messages())
    for module, text in found:
        print(f"{module}: {text}")


if __name__ == "__main__":
    main()

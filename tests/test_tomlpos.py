"""Locating keys in TOML text for config error messages (tomllib gives no positions)."""

from __future__ import annotations

import tomllib

import pytest

from lsmcheck.tomlpos import locate, split_key

TEXT = """\
[project]
name = "x"  # a comment with = and [brackets]
description = \"\"\"several
fake = 1 \\\"\"\" still inside
\"\"\"
literal = '''
[not.a.table]
'''

[tool.lsmcheck]
inputs = [
  "a.csv",  # one
  'b = c',
]
other.max_rel_error = 1e-3
"quoted.key" = "with \\" quote = 1"

[tool.lsmcheck.thresholds]
max_ulp = "abc"
inline = { x = 1, y = [1, 2] }

  [tool.lsmcheck.thresholds.algorithm."mypkg.ops:f".dtype.float16]
  max_ulp   = 8
"""


@pytest.mark.parametrize(
    ("dotted", "position"),
    [
        ("project.name", (2, 1)),
        ("tool.lsmcheck", (10, 1)),
        ("tool", (10, 1)),  # a table only a header defines
        ("tool.lsmcheck.inputs", (11, 1)),
        ("tool.lsmcheck.inputs[1]", (11, 1)),  # an element: at its array's key
        ("tool.lsmcheck.other.max_rel_error", (15, 1)),
        ('tool.lsmcheck."quoted.key"', (16, 1)),
        ("tool.lsmcheck.other", (15, 1)),  # a table a dotted key defines
        ("tool.lsmcheck.thresholds", (18, 1)),
        ("tool.lsmcheck.thresholds.max_ulp", (19, 1)),
        ("tool.lsmcheck.thresholds.inline.y", (20, 1)),  # inside an inline table
        ('tool.lsmcheck.thresholds.algorithm."mypkg.ops:f".dtype.float16', (22, 3)),
        ('tool.lsmcheck.thresholds.algorithm."mypkg.ops:f".dtype.float16.max_ulp', (23, 3)),
        # inside strings: not keys, not tables
        ("project.fake", None),
        ("not.a.table", None),
        ("tool.lsmcheck.nope", None),
        ("not a key!", None),
    ],
)
def test_locate(dotted: str, position: tuple[int, int] | None) -> None:
    tomllib.loads(TEXT)  # the text is valid TOML
    assert locate(TEXT, dotted) == position


def test_locate_with_crlf_line_ends() -> None:
    assert locate("[a]\r\nb = 1\r\n\r\n[c]\r\nd = 2\r\n", "c.d") == (5, 1)


def test_split_key() -> None:
    assert split_key('tool.lsmcheck.thresholds.algorithm."a.b:c".dtype') == (
        "tool",
        "lsmcheck",
        "thresholds",
        "algorithm",
        "a.b:c",
        "dtype",
    )
    assert split_key("implementations[0]") == ("implementations",)
    assert split_key("a b") is None

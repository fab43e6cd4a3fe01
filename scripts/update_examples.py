"""Re-run every example in the given Markdown files and paste its real output.

A fenced block that opens with ```console holds one or more commands, each on a line starting
with ``$ ``; everything up to the next command (or the fence) is that command's output and is
replaced by what the command prints now (stdout and stderr interleaved as they are written,
as a terminal 140 columns wide would show them without colour).  Commands run from the
repository root with ``lsmcheck`` meaning this checkout (``python -m lsmcheck``).

    python scripts/update_examples.py README.md docs/*.md
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```console\n(.*?)```", re.S)


def run(command: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "140"}
    env["PYTHONUNBUFFERED"] = "1"  # stdout written when printed, as on a terminal
    shell = command.replace("lsmcheck ", f"{sys.executable} -m lsmcheck ")
    done = subprocess.run(
        shell,
        shell=True,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe: the order a terminal shows
        text=True,
        timeout=600,
    )
    return done.stdout


def refresh(block: str) -> str:
    out = []
    for line in block.splitlines():
        if line.startswith("$ "):
            out.append(line)
            out.append(run(line[2:]).rstrip("\n"))
    return "\n".join(x for x in out if x) + "\n"


def main(paths: list[str]) -> None:
    for path in paths:
        p = Path(path)
        text = p.read_text()
        new = BLOCK.sub(lambda m: "```console\n" + refresh(m.group(1)) + "```", text)
        if new != text:
            p.write_text(new)
            print(f"updated {path}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""``python -m lsmcheck``."""

from lsmcheck.cli import main

main()

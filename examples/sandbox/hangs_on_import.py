"""A module that never finishes importing (it waits for a device that is not there):
docs/sandbox.md shows what ``lsmcheck run --impl softmax=hangs_on_import:f`` says."""

while True:
    pass

"""`dpmd doc-train-input`: the input.json reference, from the schema."""

from __future__ import annotations

NAME = "doc-train-input"
HELP = "print the input.json reference (markdown)"
ORDER = 90


def add_arguments(p) -> None:
    pass



def run(args) -> int:
    from deepmd_md.config import make_doc

    print(make_doc())
    return 0

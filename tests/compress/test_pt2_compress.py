"""The compressed model as an AOTInductor package (one compile, ~1 min): DeepPot on it = DeepPot
on the .pth; LAMMPS (2 ranks) on it = DeepPot."""

from __future__ import annotations

import numpy as np
from lammps_helpers import run_driver
from test_lammps_compress import VOIGT, _deeppot, _lines

from deepmd_md.formats import read_model, write_model


def test_pt2_in_lammps(water_models, lmp_env, tmp_path):
    """The compressed model as an AOTInductor package (the op compiled in as an extern call):
    DeepPot on it = DeepPot on the .pth; LAMMPS on it = DeepPot."""
    _, comp = water_models
    pt2 = tmp_path / "comp.pt2"
    write_model(read_model(comp), pt2)
    res = run_driver({"commands": _lines(pt2)}, tmp_path / "pt2", lmp_env, np_=2)
    e, f, v = _deeppot(pt2, res)
    e_pth, f_pth, _ = _deeppot(comp, res)
    assert abs(e - e_pth) < 1e-9 and np.max(np.abs(f - f_pth)) < 1e-10
    assert abs(res["pe"] - e) < 1e-9 * max(1.0, abs(e))
    np.testing.assert_allclose(np.array(res["f"]), f, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["virial"], v[VOIGT], rtol=0, atol=1e-9)

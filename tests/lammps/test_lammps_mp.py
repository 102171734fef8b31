"""Message passing across MPI ranks (DPA-2, DPA-3): between layers every rank receives its
ghost atoms' node features from their owners through LAMMPS' forward communication, and on the
way back sends the ghosts' gradients to the owners (reverse communication). 1, 2 and 4 ranks
(`processors 4 1 1`: slabs thinner than rcut + skin, so ghosts of ghosts travel over several
swaps) give the same MD; forces, virial and per-atom energies equal DeepPot on the whole box;
model deviation of two GNN models on 2 ranks equals the Python figures; a model frozen before
the exchange op still runs on one rank and is refused on two with one clear line."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import PT2_MESSAGE_PASSING, make_model, tiny_descriptors
from lammps_helpers import (
    WATER_LMP,
    edit_metadata,
    lmp_box,
    python_devi,
    run_driver,
    run_lmp,
    water_types,
)

VOIGT = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])  # LAMMPS xx yy zz xy xz yz
PE_TOL = 1e-8  # eV, potential energy between rank counts over the MD run (issue 13)
TOL = 1e-10  # eV/A, forces against DeepPot on the final frame
NKTV2P = 1.6021765e6  # LAMMPS metal units: stress/atom is -(virial) in bar A^3
DECOMPOSITIONS = {1: [], 2: [], 4: ["processors 4 1 1"]}
TRICLINIC = ["change_box all triclinic",
             "change_box all xy final 1.6 xz final -1.1 yz final 0.8 remap"]
# (format, tiny model, box): both DPA families on both box shapes as .pth; one as .pt2
CASES = [("pth", n, b) for n in ("dpa2:small", "dpa3:default") for b in ("ortho", "triclinic")]
CASES += [("pt2", PT2_MESSAGE_PASSING, "triclinic")]


def md_lines(model, box="ortho", pair_extra=""):
    """The water box stretched by 1.15 (the tiny models' sel fit it), 20 steps of NVE."""
    return ["units metal", "boundary p p p", "atom_style atomic", f"read_data {WATER_LMP}",
            "mass 1 16", "mass 2 2",
            "change_box all x scale 1.15 y scale 1.15 z scale 1.15 remap",
            *(TRICLINIC if box == "triclinic" else []),
            "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes",
            f"pair_style deepmd {model}{pair_extra}", "pair_coeff * * O H",
            "compute dpvir all pressure NULL virial", "compute pea all pe/atom",
            "compute sa all stress/atom NULL virial", "compute sasum all reduce sum c_sa[*]",
            "thermo_style custom step pe c_dpvir[1]",
            "velocity all create 330.0 4928459 loop geom", "fix 1 all nve",
            "timestep 0.0005"]


def _runs(model, tmp_path, lmp_env, box, ranks=(1, 2, 4)):
    out = {}
    for n in ranks:
        spec = {"commands": DECOMPOSITIONS[n] + md_lines(model, box), "steps": 20,
                "computes_peratom": [["pea", 1], ["sa", 6]]}
        out[n] = run_driver(spec, tmp_path / f"np{n}", lmp_env, np_=n, timeout=300)
    return out


@pytest.mark.parametrize("fmt,name,box", CASES, ids=[f"{f}-{n}-{b}" for f, n, b in CASES])
def test_ranks_same_md_and_deeppot(fmt, name, box, frozen_tiny, lmp_env, tmp_path):
    from deepmd_md.infer.deep_pot import DeepPot

    _, model = frozen_tiny(name, fmt)
    runs = _runs(model, tmp_path, lmp_env, box)
    pe1 = np.array(runs[1]["pe_steps"])
    assert len(pe1) == 21 and np.ptp(pe1) > 1e-6  # the atoms move and the energy follows
    for n in (2, 4):
        dpe = np.abs(np.array(runs[n]["pe_steps"]) - pe1).max()
        assert dpe <= PE_TOL, f"{n} ranks: potential energy {dpe:.2e} eV from 1 rank's"
    _, pth = frozen_tiny(name, "pth")
    for n, res in runs.items():
        x = np.array(res["x"])
        e, f, v = DeepPot(str(pth)).eval(x.reshape(1, -1), lmp_box(res).reshape(1, 9),
                                         water_types())
        assert abs(res["pe"] - e[0, 0]) <= TOL * max(1.0, abs(e[0, 0])), n
        np.testing.assert_allclose(res["f"], f.reshape(-1, 3), rtol=0, atol=TOL, err_msg=str(n))
        np.testing.assert_allclose(res["virial"], v.reshape(3, 3)[VOIGT], rtol=0,
                                   atol=TOL * max(1.0, np.abs(v).max()), err_msg=str(n))
        # per-atom energies and virials add up to the totals on every decomposition
        assert abs(np.sum(res["pea"]) - res["pe"]) <= 1e-9 * max(1.0, abs(res["pe"]))
        np.testing.assert_allclose(-np.sum(res["sa"], axis=0) / NKTV2P, res["virial"], rtol=0,
                                   atol=1e-9 * max(1.0, np.abs(v).max()))
    # per-atom energies do not depend on the decomposition
    np.testing.assert_allclose(runs[4]["pea"], runs[1]["pea"], rtol=0, atol=1e-10)
    assert np.abs(runs[1]["f"]).max() > 1e-3  # the model interacts


def test_model_deviation_two_ranks(lmp_env, tmp_path, tmp_path_factory):
    """Two DPA-2 models (different weights) on 2 ranks: the deviation file equals Python's."""
    from deepmd_md.backends.torch.freeze import freeze_pth

    root = tmp_path_factory.mktemp("devi")
    models = []
    for seed in (1, 2):
        data = make_model(desc=tiny_descriptors()["dpa2:small"], seed=seed)
        models.append(root / f"m{seed}.pth")
        freeze_pth(data, str(models[-1]))
    lines = md_lines(f"{models[0]} {models[1]}", pair_extra=" out_file md.out out_freq 5 atomic")
    lines += ["dump d all custom 5 traj.dump id x y z", "dump_modify d sort id format float %.17g"]
    res = run_driver({"commands": lines, "steps": 10}, tmp_path, lmp_env, np_=2, timeout=300)
    rows = np.loadtxt(tmp_path / "md.out", ndmin=2)
    assert list(rows[:, 0]) == [0, 5, 10]
    frames = (tmp_path / "traj.dump").read_text().split("ITEM: TIMESTEP")[1:]
    for fr, row in zip(frames, rows, strict=True):
        x = np.loadtxt(fr.strip().splitlines()[8:])[:, 1:]
        stats, per_atom = python_devi(models, x, lmp_box(res))
        assert stats[3] > 1e-4  # the two models differ
        np.testing.assert_allclose(row[1:7], stats, rtol=2e-6, atol=1e-12)
        np.testing.assert_allclose(row[7:], per_atom, rtol=2e-6, atol=1e-12)


def test_model_without_exchange_op(frozen_tiny, lmp_env, tmp_path):
    """A message-passing model frozen before the exchange op (no "exchange" in its metadata)
    runs on one rank through the owner map, and on two ranks stops with one clear line."""
    from deepmd_md.infer.deep_pot import DeepPot

    _, pth = frozen_tiny("dpa2:small", "pth")
    old = edit_metadata(pth, tmp_path / "old.pth", exchange=None)
    lines = ["atom_modify map yes"] + md_lines(old)
    res = run_driver({"commands": lines, "steps": 2}, tmp_path / "one", lmp_env)
    e, f, _ = DeepPot(str(pth)).eval(np.array(res["x"]).reshape(1, -1),
                                     lmp_box(res).reshape(1, 9), water_types())
    np.testing.assert_allclose(res["f"], f.reshape(-1, 3), rtol=0, atol=TOL)
    p = run_lmp("\n".join(md_lines(old) + ["run 0"]) + "\n", tmp_path, lmp_env, np_=2,
                timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-2000:]
    err = [ln for ln in out.splitlines() if "ERROR" in ln]
    assert err and "frozen without the ghost-exchange op" in err[0], out[-2000:]
    assert "Segmentation" not in out and "core dumped" not in out

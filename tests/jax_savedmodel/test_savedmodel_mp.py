"""Message-passing JAX .savedmodel (DPA-2, DPA-3) on several LAMMPS ranks (issue 14). A SavedModel
holds no ghost-exchange op, so on several ranks the core takes the widened ghost shell: ghosts out
to the receptive field (pair_style deepmd raises LAMMPS' ghost cutoff itself), every atom
evaluated, only local atoms' energies counted (the `atom_weight` input). Checked: the same
potential energy over 10 MD steps as the .pth of the same model on 1 rank (<= 1e-8 eV) and
DeepPot's forces (<= 1e-10): DPA-2 on 4 ranks (`processors 4 1 1`: slabs thinner than the
shell), DPA-3 on 2; beside the .pth (exchange op) in one pair style on 2 ranks, the same
forces every step; a file without atom_weight on 2 ranks is one ERROR line naming "freeze it
again"; comm cutoffs LAMMPS will not raise for us are one ERROR line naming `comm_modify ...
cutoff X`; at the C level, ghosts short of the receptive field are one error naming
dpmd_input.ghost_cutoff, and ghosts deep enough give the NumPy reference's numbers with an
engine exchange handle passed."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ORTHO_BOX, make_model, random_frames, tiny_descriptors

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lammps"))
from lammps_helpers import (  # noqa: E402
    lammps_env,
    lmp_box,
    run_driver,
    run_lmp,
    water_nve,
    water_nve_lines,
    water_types,
)

if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("jax") is None:
    pytest.skip("a .savedmodel needs jax and tensorflow (pip install 'deepmd-md[jax,tensorflow]')",
                allow_module_level=True)
STEPS = 10
PE_TOL = 1e-8  # eV, potential energy against the .pth over the run
TOL = 1e-10  # eV/A, forces against DeepPot on the last frame
NAMES = ("dpa2:small", "dpa3:default")
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def lmp_env():
    return lammps_env("libdpmd_backend_tensorflow.so", TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """name -> (ModelData, .pth, .savedmodel); both SavedModels from one export process."""
    pytest.importorskip("torch")
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.serialize import save_dp

    root = tmp_path_factory.mktemp("mp")
    out, argv = {}, []
    for name in NAMES:
        data = make_model(desc=tiny_descriptors()[name])
        stem = root / name.replace(":", "_")
        freeze_pth(data, str(stem.with_suffix(".pth")))
        save_dp(data, str(stem.with_suffix(".dp")))
        argv += [str(stem.with_suffix(".dp")), str(stem.with_suffix(".savedmodel"))]
        out[name] = (data, stem.with_suffix(".pth"), stem.with_suffix(".savedmodel"))
    r = subprocess.run([sys.executable, "-m", "deepmd_md.backends.jax.savedmodel", *argv],
                       capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def md(model, tmp, env, np_, extra=()):
    """test_lammps_mp's water box (stretched by 1.15: the tiny models' sel fit it), NVE."""
    return water_nve(model, tmp, env, np_, steps=STEPS, timeout=600, extra=extra, stretch=1.15)


def errors(p) -> list[str]:
    return [ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("ERROR")]


@pytest.mark.parametrize("name", NAMES)
def test_ranks_same_md_as_pth(name, frozen, lmp_env, tmp_path):
    """The widened ghost shell: DPA-2 on 4 slabs thinner than the shell (ghosts over several
    swaps), DPA-3 on 2 ranks: the .pth's energies over the run, DeepPot's forces on the last
    frame."""
    from deepmd_md.infer.deep_pot import DeepPot

    _, pth, sm = frozen[name]
    ref = md(pth, tmp_path / "pth", lmp_env, 1)
    pe_ref = np.array(ref["pe_steps"])
    assert len(pe_ref) == STEPS + 1 and np.ptp(pe_ref) > 1e-6  # the atoms move
    # (one rank, owners by atom ID: test_savedmodel_lammps.py; here the shell, within ~2 min)
    runs = {4: ["processors 4 1 1"]} if name == "dpa2:small" else {2: []}
    for n, extra in runs.items():
        res = md(sm, tmp_path / f"sm{n}", lmp_env, n, extra)
        dpe = np.abs(np.array(res["pe_steps"]) - pe_ref).max()
        assert dpe <= PE_TOL, f"{n} ranks: potential energy {dpe:.2e} eV from the .pth's"
        e, f, _ = DeepPot(str(pth)).eval(np.array(res["x"]).reshape(1, -1),
                                         lmp_box(res).reshape(1, 9), water_types())
        assert abs(res["pe"] - e[0, 0]) <= TOL * max(1.0, abs(e[0, 0])), n
        np.testing.assert_allclose(res["f"], f.reshape(-1, 3), rtol=0, atol=TOL, err_msg=str(n))
    assert np.abs(ref["f"]).max() > 1e-3  # the model interacts


def test_beside_a_pth_on_two_ranks(frozen, lmp_env, tmp_path):
    """Model deviation of the .pth (exchange op: LAMMPS' feature exchange) and the .savedmodel
    (widened shell) of one DPA-2 on 2 ranks: both run in one pair style, forces equal per step."""
    _, pth, sm = frozen["dpa2:small"]
    inp = water_nve_lines(f"{pth} {sm} out_file devi.out out_freq 1", stretch=1.15)
    run_driver({"commands": inp, "steps": 3, "gather": False}, tmp_path, lmp_env, np_=2,
               timeout=300)
    devi = np.loadtxt(tmp_path / "devi.out", ndmin=2)
    assert len(devi) >= 4 and np.abs(devi[:, 4]).max() <= 1e-10, devi  # max_devi_f


def without_atom_weight(src: Path, dst: Path) -> Path:
    """A copy whose metadata says `"atom_weight": null`, as a file frozen before the input
    (same length: saved_model.pb's string constant stays a valid protobuf)."""
    shutil.copytree(src, dst)
    for f in (dst / "saved_model.pb", dst / "assets" / "metadata.json"):
        b = f.read_bytes()
        assert b.count(b'"atom_weight": true') >= 1, f  # the metadata signature and asset
        f.write_bytes(b.replace(b'"atom_weight": true', b'"atom_weight": null'))
    return dst


def test_without_atom_weight_refused_on_two_ranks(frozen, lmp_env, tmp_path):
    _, _, sm = frozen["dpa2:small"]
    old = without_atom_weight(sm, tmp_path / "old.savedmodel")
    p = run_lmp("\n".join([*water_nve_lines(old, stretch=1.15), "run 0"]) + "\n", tmp_path,
                lmp_env, np_=2, timeout=300)
    err = errors(p)
    assert p.returncode != 0 and len(err) == 1, (p.stdout + p.stderr)[-2000:]
    assert "freeze it again" in err[0] and "old.savedmodel" in err[0], err[0]


def test_comm_cutoff_lammps_will_not_raise(frozen, lmp_env, tmp_path):
    """`comm_modify mode multi`: the plugin cannot raise a single ghost cutoff; one ERROR line
    naming the command and the cutoff (receptive field + skin)."""
    _, _, sm = frozen["dpa2:small"]
    inp = [ln.replace("neighbor 1.0 bin", "neighbor 1.0 multi")
           for ln in water_nve_lines(sm, stretch=1.15)]
    p = run_lmp("\n".join([*inp, "comm_modify mode multi", "run 0"]) + "\n", tmp_path, lmp_env,
                np_=2, timeout=300)
    err = errors(p)
    assert p.returncode != 0 and len(err) == 1, (p.stdout + p.stderr)[-2000:]
    assert "comm_modify mode single cutoff 10.5" in err[0], err[0]  # 9.5 A + 1 A skin


def core_shell(path: str, out: str) -> None:
    """Child process (TensorFlow, which the core loads, never enters pytest's): dpmd_compute on
    10 atoms and their images out to the receptive field, with ghosts 1 A short and deep enough,
    an exchange handle whose callbacks fail if called, no mapping. Writes what came back."""
    import json

    from capi import DP, IP, Exchange, Input, Output, load_core
    from capi import EXCHANGE_FN as XFN

    from deepmd_md.data.neighbor import extend_coord

    lib = load_core()
    model = lib.dpmd_model_load(path.encode())
    assert model, lib.dpmd_last_error().decode()
    called = []

    def refuse(ctx, rows, ncol):
        called.append(ncol)
        return 1

    fn = XFN(refuse)
    ex = Exchange(ctypes.sizeof(Exchange), None, fn, fn)
    field = lib.dpmd_model_receptive_field(model)
    coord, atype, box = random_frames(10, ORTHO_BOX, seed=8)
    ext, eatype, mapping, _ = extend_coord(coord, atype, box, field + 0.5)
    nall = ext.shape[1]
    x = np.ascontiguousarray(ext[0], dtype=np.float64)
    t = np.ascontiguousarray(eatype[0], dtype=np.int32)
    lib.dpmd_model_supports_widened_shell.argtypes = [ctypes.c_void_p]
    res = {"field": field, "nall": nall, "exchange": lib.dpmd_model_supports_exchange(model),
           "widened": lib.dpmd_model_supports_widened_shell(model)}
    for key, reach in (("short", field - 1.0), ("deep", field + 0.5)):
        force, ae = np.zeros((nall, 3)), np.zeros(10)
        inp = Input(nloc=10, nghost=nall - 10, coord=x.ctypes.data_as(DP),
                    atype=t.ctypes.data_as(IP), exchange=ctypes.pointer(ex), ghost_cutoff=reach)
        o = Output(force=force.ctypes.data_as(DP), atom_energy=ae.ctypes.data_as(DP))
        rc = lib.dpmd_compute(model, ctypes.byref(inp), ctypes.byref(o))
        folded = np.zeros((10, 3))
        np.add.at(folded, mapping[0], force)
        res[key] = {"rc": rc, "error": lib.dpmd_last_error().decode(), "energy": o.energy,
                    "force": folded.tolist(), "atom_energy": ae.tolist(),
                    "virial": list(o.virial), "ghost_force": float(np.abs(force[10:]).max())}
    res["called"] = called
    lib.dpmd_model_free(model)
    with open(out, "w") as f:
        json.dump(res, f)


def test_core_widened_shell_and_short_ghosts(frozen, tmp_path):
    """C level (no engine), DPA-2 .savedmodel: ghosts 1 A short of the receptive field are one
    error naming dpmd_input.ghost_cutoff and the field; ghosts deep enough, with an exchange
    handle the model cannot use and no mapping, give the NumPy reference's energy, folded forces,
    virial and atom energies, and never call the exchange."""
    import json

    from capi import load_core

    from deepmd_md.backends.numpy import reference

    if load_core() is None:
        pytest.skip("libdpmd_core.so is not built")
    data, _, sm = frozen["dpa2:small"]
    out = tmp_path / "core.json"
    code = f"import sys; sys.path[:0] = {[str(HERE.parent), str(HERE)]!r}; " \
           f"import test_savedmodel_mp as t; t.core_shell({str(sm)!r}, {str(out)!r})"
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["field"] == pytest.approx(9.5) and res["nall"] > 300
    assert (res["exchange"], res["widened"]) == (0, 1)
    short, deep = res["short"], res["deep"]
    assert short["rc"] != 0, short
    assert "dpmd_input.ghost_cutoff is 8.5 A" in short["error"] and "(9.5 A" in short["error"]
    assert deep["rc"] == 0, deep["error"]
    assert not res["called"]
    coord, atype, box = random_frames(10, ORTHO_BOX, seed=8)
    ref = reference.evaluate(data, coord, atype, box[None] if box.ndim == 1 else box)
    assert abs(deep["energy"] - ref["energy"][0]) < TOL
    assert np.abs(np.array(deep["force"]) - ref["force"][0]).max() < TOL
    assert np.abs(np.array(deep["atom_energy"]) - ref["atom_energy"][0]).max() < TOL
    assert np.abs(np.array(deep["virial"]) - ref["virial"][0]).max() < TOL
    assert deep["ghost_force"] > 1e-4  # ghosts carry force (folded onto owners)

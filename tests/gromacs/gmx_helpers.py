"""Helpers of the GROMACS NNPot tests (a uniquely named module: several conftest.py files in one
session would shadow each other when imported by name): find or build GROMACS, run gmx, read its
outputs (.trr forces at full precision, .xvg energies), and models to run."""

from __future__ import annotations

import copy
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tools" / "gromacs" / "build.sh"
EXAMPLES = REPO / "examples" / "md" / "gromacs"
KJ = 96.48533212331002      # kJ/mol per eV
KJ_NM = 964.8533212331002   # kJ/mol/nm per eV/A

for _p in (str(REPO), str(REPO / "tests"), str(REPO / "tests" / "lammps")):
    if _p not in sys.path:
        sys.path.insert(0, _p)


def find_gmx() -> tuple[str | None, str]:
    """(path of gmx with NNPot, "") or (None, why not). `make test` builds GROMACS first and
    passes the result in DPMD_MD_GMX (a path, or "none" after a failed build); run directly,
    pytest builds it here through tools/gromacs/build.sh (cached: at once when built)."""
    env = os.environ.get("DPMD_MD_GMX")
    if env:
        if os.access(env, os.X_OK):
            return env, ""
        err = REPO / "build" / "gromacs-build.err"
        tail = err.read_text().strip().splitlines()[-3:] if err.is_file() else []
        return None, "GROMACS with NNPot did not build: " + " | ".join(tail or [env])
    p = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True)
    path = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if p.returncode != 0 or not os.access(path, os.X_OK):
        tail = " | ".join(p.stderr.strip().splitlines()[-3:])
        return None, f"GROMACS with NNPot did not build (tools/gromacs/build.sh): {tail}"
    return path, ""


def run(cmd, cwd, env, stdin: str | None = None, timeout: int = 300, check: bool = True):
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, input=stdin, capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n"
                             f"{p.stdout[-3000:]}\n{p.stderr[-4000:]}")
    return p


def read_gro(path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x [n,3] as GROMACS reads them (float32, nm), box [3,3] nm, atom names)."""
    lines = Path(path).read_text().splitlines()
    n = int(lines[1])
    x = np.array([[float(ln[20 + 8 * k:28 + 8 * k]) for k in range(3)] for ln in lines[2:2 + n]],
                 dtype=np.float32)
    names = [ln[10:15].strip() for ln in lines[2:2 + n]]
    b = [float(v) for v in lines[2 + n].split()]
    box = np.zeros((3, 3))
    box[0, 0], box[1, 1], box[2, 2] = b[:3]
    if len(b) == 9:
        box[0, 1], box[0, 2], box[1, 0], box[1, 2], box[2, 0], box[2, 1] = b[3:]
    return x, box.astype(np.float32), names


def read_trr(path) -> list[dict]:
    """Frames of a GROMACS .trr (XDR, big-endian): step, time, box, x, v, f as float64 arrays."""
    buf = Path(path).read_bytes()
    off = 0
    frames = []

    def ints(k):
        nonlocal off
        v = struct.unpack_from(f">{k}i", buf, off)
        off += 4 * k
        return v

    while off < len(buf):
        magic, _slen, n = ints(3)
        assert magic == 1993, f"{path}: not a trr frame at byte {off}"
        off += (n + 3) // 4 * 4
        (ir, e, box, vir, pres, top, sym, xs, vs, fs, natoms, step, _nre) = ints(13)
        real = next((s // k for s, k in ((box, 9), (xs, 3 * natoms), (vs, 3 * natoms), (fs, 3 * natoms))
                     if s), 4)
        fmt = ">f" if real == 4 else ">d"
        t = struct.unpack_from(fmt, buf, off)[0]
        off += 2 * real  # t, lambda
        fr = {"step": step, "time": t}
        for name, size, shape in (("box", box, (3, 3)), ("vir", vir, (3, 3)), ("pres", pres, (3, 3)),
                                  ("x", xs, (natoms, 3)), ("v", vs, (natoms, 3)), ("f", fs, (natoms, 3))):
            if size:
                fr[name] = np.frombuffer(buf, dtype=fmt[0] + fmt[1], count=size // real,
                                         offset=off).astype(np.float64).reshape(shape)
                off += size
        off += ir + e + top + sym
        frames.append(fr)
    return frames


def read_xvg(path) -> tuple[list[str], np.ndarray]:
    """(legend names, data [rows, cols]) of a GROMACS .xvg."""
    names, rows = [], []
    for line in Path(path).read_text().splitlines():
        if line.startswith("@ s") and " legend " in line:
            names.append(line.split('"')[1].replace(" ", "-"))
        elif line and line[0] not in "#@":
            rows.append([float(v) for v in line.split()])
    return names, np.array(rows)


def energies(gmx, edr, cwd, env,
             terms=("NN-Potential", "Potential", "Total-Energy", "Conserved-En.")) -> dict:
    """Energy terms of an .edr by `gmx energy` (time series, kJ/mol; names with "-" for " ", as
    gmx energy lists them; a term the run lacks, e.g. Conserved-En. without a thermostat, is absent)."""
    run([gmx, "energy", "-f", edr, "-o", "energy.xvg"], cwd, env, stdin="\n".join(terms) + "\n\n")
    names, data = read_xvg(Path(cwd) / "energy.xvg")
    return {"time": data[:, 0]} | {n: data[:, i + 1] for i, n in enumerate(names)}


MDP_BASE = """integrator      = md
dt              = 0.0005
nsteps          = {nsteps}
nstcalcenergy   = 1
nstenergy       = {nstenergy}
nstlog          = {nstenergy}
nstxout         = {nstxout}
nstvout         = {nstxout}
nstfout         = {nstxout}
cutoff-scheme   = Verlet
pbc             = xyz
coulombtype     = {coulomb}
rcoulomb        = {rc}
rvdw            = {rc}
verlet-buffer-tolerance = {vbt}
{rlist}tcoupl          = no
pcoupl          = no
gen-vel         = {genvel}
gen-temp        = 300
gen-seed        = 7
constraints     = none
continuation    = {continuation}
"""


def mdp(nn_lines: str, nsteps: int = 0, nstout: int = 1, coulomb: str = "reaction-field", rc: float = 0.5,
        gen_vel: bool = False, rlist: float | None = None, extra: str = "") -> str:
    return MDP_BASE.format(nsteps=nsteps, nstenergy=nstout, nstxout=nstout, coulomb=coulomb, rc=rc,
                           vbt=-1 if rlist else 0.005, rlist=f"rlist = {rlist}\n" if rlist else "",
                           genvel="yes" if gen_vel else "no",
                           continuation="no" if gen_vel else "yes") + extra + "\n" + nn_lines + "\n"


def nn_lines(output: str, group: str, inputs, pair_cutoff: float | None = None) -> str:
    lines = ["nnpot-active = yes", f"nnpot-modelfile = {output}", f"nnpot-input-group = {group}",
             "nnpot-embedding = mechanical"]
    lines += [f"nnpot-model-input{i} = {name}" for i, name in enumerate(inputs, 1)]
    if pair_cutoff:
        lines.append(f"nnpot-pair-cutoff = {pair_cutoff}")
    return "\n".join(lines)


# -- models ------------------------------------------------------------------------------------

def tiny_water(kind: str, type_map=("O", "H"), zero: bool = False) -> dict:
    """ModelData of a tiny model (tests/helpers.py) whose sel holds liquid water at rcut 3.5 A;
    zero: every fitting weight and bias 0 (energy and forces exactly 0, for force differences)."""
    from helpers import make_model, tiny_descriptors

    if kind == "se_e2_a":
        data = make_model(sel=[24, 48])
    else:
        desc = copy.deepcopy(tiny_descriptors()[kind])
        for part in ("repinit", "repformer"):
            if part in desc:
                for k in ("nsel", "three_body_sel"):
                    if k in desc[part]:
                        desc[part][k] = 72
        data = make_model(desc=desc)
    data["config"]["type_map"] = list(type_map)
    if zero:
        from deepmd_md.tree import flatten, unflatten

        flat = flatten(data["params"])
        data["params"] = unflatten({k: (v * 0 if "fitting" in k else v) for k, v in flat.items()})
        data["buffers"]["bias_atom_e"] = data["buffers"]["bias_atom_e"] * 0
    return data

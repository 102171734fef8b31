"""Peak memory of Python inference (DeepPot, ASE) against LAMMPS on the same frame.

Usage: python benchmarks/inference_memory.py [--atoms 1536] [--model M.pth|.pt2] [--workdir D]
Each case runs in its own process; the figure is that process's peak RSS (ru_maxrss), printed
beside LAMMPS' (pair_style deepmd, 1 rank, `run 0`) as a ratio. Without --model, a randomly
initialised model of examples/water/se_e2_a's size is frozen (memory does not depend on the
weights).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lammps_speed import BIN, REPLICATE, WATER, make_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

PY_CASE = r"""
import sys, numpy as np
from ase.io import read
kind, model, rep = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:6]]
atoms = read(sys.argv[6], format="lammps-data", style="atomic", Z_of_type={1: 8, 2: 1})
atoms = atoms.repeat(rep)
if kind == "ase":
    from deepmd_md.calculators.ase import DP
    atoms.calc = DP(model)
    e = atoms.get_potential_energy(); f = atoms.get_forces()
else:
    from deepmd_md.infer import DeepPot
    dp = DeepPot(model)
    t = {"O": 0, "H": 1}
    atype = np.array([t[s] for s in atoms.get_chemical_symbols()])
    e, f, v = dp.eval(atoms.get_positions().reshape(1, -1), atoms.cell.array.reshape(1, 9), atype)
    e = float(e[0, 0])
print("ENERGY", e)
"""


def measure(cmd: list[str], cwd: str) -> tuple[float, str]:
    """Peak RSS of one command, isolated in its own wrapper process (ru_maxrss of children
    accumulates as a maximum across children)."""
    wrap = [sys.executable, "-c",
            "import resource, subprocess, sys, json; p = subprocess.run(sys.argv[1:], "
            "capture_output=True, text=True); print(json.dumps([p.returncode, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.stdout, p.stderr]))",
            *cmd]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(wrap, cwd=cwd, capture_output=True, text=True, env=env)
    rc, kb, out, err = json.loads(p.stdout)
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out[-1500:]}\n{err[-1500:]}")
    return kb / 1024.0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=1536, choices=sorted(REPLICATE))
    ap.add_argument("--model", help="frozen model (default: se_e2_a of the example's size)")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    wd = Path(a.workdir or tempfile.mkdtemp(prefix="dpmd-mem-"))
    wd.mkdir(parents=True, exist_ok=True)
    model = a.model or str(make_model(wd / "se_e2_a.pth",
                                      REPO / "examples/water/se_e2_a/input.json"))
    rep = REPLICATE[a.atoms]
    inp = (f"units metal\nboundary p p p\natom_style atomic\nread_data {WATER}\n"
           f"replicate {rep[0]} {rep[1]} {rep[2]}\nmass 1 16\nmass 2 2\n"
           f"pair_style deepmd {os.path.abspath(model)}\npair_coeff * * O H\n"
           "thermo_style custom step pe\nthermo_modify format float %.10f\nrun 0\n")
    (wd / "in.lammps").write_text(inp)
    lmp_mb, out = measure([str(BIN / "lmp"), "-in", "in.lammps", "-log", "none"], str(wd))
    (wd / "case.py").write_text(PY_CASE)
    rows = [("LAMMPS (1 rank, run 0)", lmp_mb)]
    for kind in ("deeppot", "ase"):
        mb, out = measure([sys.executable, "case.py", kind, os.path.abspath(model),
                           *map(str, rep), str(WATER)], str(wd))
        rows.append((f"Python {kind}", mb))
    print(f"model {model}, {a.atoms} atoms: peak RSS (MB) and ratio to LAMMPS")
    for name, mb in rows:
        print(f"  {name:<24s} {mb:8.0f}  {mb / lmp_mb:5.2f}x")


if __name__ == "__main__":
    main()

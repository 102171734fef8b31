#!/usr/bin/env python
"""GROMACS NNPot beside LAMMPS pair_style deepmd: ms per MD step on the same box and model (by hand).

  python tools/gromacs/speed.py                           # random-init model of the example's size
  python tools/gromacs/speed.py --model frozen.pth --sizes 192 1536 --steps 200
  python tools/gromacs/speed.py --preload --pairs          # also LD_PRELOAD=libtorch_cpu.so, pair list
  python tools/gromacs/speed.py --nve 2000                # also: NVE drift of 192 NN atoms in GROMACS

Water (examples/md/water/water.lmp) replicated to 192 / 1,536 atoms, every atom NN; one rank, one
thread (OMP_NUM_THREADS=1) in both engines. GROMACS: `gmx mdrun -resethway` (the first half, with
the model load, is not timed), the "Time:" wall seconds of the second half per step. LAMMPS: a
warm-up run, then "Loop time" per step. Prints one table; figures go in docs/gromacs.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools" / "gromacs"))
sys.path.insert(0, str(REPO / "benchmarks"))
BIN = Path(sys.executable).parent
REPLICATE = {192: (1, 1, 1), 1536: (2, 2, 2), 12288: (4, 4, 4)}


def gmx_path(given: str | None) -> str:
    if given:
        return given
    p = subprocess.run(["bash", str(REPO / "tools" / "gromacs" / "build.sh")], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"GROMACS with NNPot did not build: {p.stderr[-2000:]}")
    return p.stdout.strip().splitlines()[-1]


def write_box(d: Path, n: int):
    """conf.gro / topol.top (charges 0) / index.ndx of the water box replicated to n atoms."""
    import make_examples as mk

    box, types, x = mk.read_lmp()
    mols = mk.molecules(box, types, x)
    rep = REPLICATE[n]
    allm = []
    for i in range(rep[0]):
        for j in range(rep[1]):
            for k in range(rep[2]):
                allm += [("SOL", mk.whole(box, x, m) + np.array([i, j, k]) * box) for m in mols]
    mk.write_gro(d / "conf.gro", f"{n}-atom water", allm, box * np.array(rep))
    (d / "topol.top").write_text(mk.top_text(f"{n}-atom water", [("SOL", len(allm))], {"SOL"}))
    mk.write_ndx(d / "index.ndx", {"System": list(range(3 * len(allm))), "NN": list(range(3 * len(allm)))})


MDP = """integrator = md
dt = 0.0005
nsteps = {nsteps}
nstcalcenergy = {nstcalc}
nstenergy = {nstenergy}
nstlog = {nstenergy}
cutoff-scheme = Verlet
pbc = xyz
coulombtype = reaction-field
rcoulomb = 0.5
rvdw = 0.5
constraints = none
tcoupl = no
gen-vel = yes
gen-temp = 300
gen-seed = 1
{nn}
"""


def torch_cpu_of(gmx: str) -> str:
    """The libtorch_cpu.so this gmx links (LD_PRELOAD it so that torch's GEMMs are torch's)."""
    out = subprocess.run(["ldd", gmx], capture_output=True, text=True).stdout
    return next(ln.split("=>")[1].split()[0] for ln in out.splitlines() if "libtorch_cpu.so" in ln)


def run_gromacs(gmx: str, model: Path, n: int, steps: int, work: Path, pairs: bool = False,
                nve: int = 0, preload: bool = False) -> dict:
    from deepmd_md.gromacs import export, mdp_text

    d = work / f"gmx_{n}{'_pairs' if pairs else ''}{'_nve' if nve else ''}{'_preload' if preload else ''}"
    d.mkdir(parents=True, exist_ok=True)
    write_box(d, n)
    r = export(str(model), str(d / "model.pt"), mode="pairs" if pairs else "periodic")
    nn = "\n".join(ln.replace(str(d / "model.pt"), "model.pt")
                   .replace("NN  ; <- the index group of the NN atoms", "NN")
                   for ln in mdp_text(r).splitlines() if ln.startswith("nnpot-"))
    nsteps = nve or steps
    extra = "rlist = 0.75\nverlet-buffer-tolerance = -1\n" if pairs else ""
    (d / "md.mdp").write_text(MDP.format(nsteps=nsteps, nstcalc=1 if nve else 100,
                                         nstenergy=10 if nve else nsteps, nn=nn) + extra)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    sub = subprocess.run([gmx, "grompp", "-f", "md.mdp", "-c", "conf.gro", "-p", "topol.top", "-n",
                          "index.ndx", "-o", "md.tpr"], cwd=d, env=env, capture_output=True, text=True)
    if sub.returncode:
        sys.exit(sub.stderr[-3000:])
    args = [gmx, "mdrun", "-deffnm", "md", "-ntmpi", "1", "-ntomp", "1"] + ([] if nve else ["-resethway"])
    run_env = dict(env, LD_PRELOAD=torch_cpu_of(gmx)) if preload else env
    sub = subprocess.run(args, cwd=d, env=run_env, capture_output=True, text=True)
    if sub.returncode:
        sys.exit(sub.stderr[-3000:])
    log = (d / "md.log").read_text()
    m = re.search(r"^\s+Time:\s+([\d.]+)\s+([\d.]+)", log, re.M)
    wall = float(m.group(2))
    out = {"ms_per_step": 1e3 * wall / (nsteps if nve else nsteps - nsteps // 2)}
    if nve:
        sub = subprocess.run([gmx, "energy", "-f", "md.edr", "-o", "e.xvg"], cwd=d, env=env,
                             input="Total-Energy\n\n", capture_output=True, text=True)
        t, e = np.loadtxt([ln for ln in (d / "e.xvg").read_text().splitlines() if ln[:1] not in "#@"]).T
        slope = np.polyfit(t, e, 1)[0]
        out |= {"nve_ps": float(t[-1]), "drift_kj_mol_atom_ps": float(slope / n),
                "drift_mev_atom_ps": float(slope / n / 96.48533212331002 * 1e3),
                "conserved_ptp_kj_mol": float(np.ptp(e))}
    return out


LMP = """units metal
boundary p p p
atom_style atomic
read_data {data}
replicate {rep}
mass 1 16
mass 2 2
pair_style deepmd {model}
pair_coeff * * O H
velocity all create 300 1 loop geom
fix 1 all nve
timestep 0.0005
thermo 1000
run 10
run {steps}
"""


def run_lammps(model: Path, n: int, steps: int, work: Path) -> dict:
    d = work / f"lmp_{n}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "in.lmp").write_text(LMP.format(data=REPO / "examples" / "md" / "water" / "water.lmp",
                                         rep=" ".join(map(str, REPLICATE[n])), model=model, steps=steps))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    sub = subprocess.run([str(BIN / "lmp"), "-in", "in.lmp", "-log", "log.lammps"], cwd=d, env=env,
                         capture_output=True, text=True)
    if sub.returncode:
        sys.exit(sub.stdout[-3000:] + sub.stderr[-3000:])
    loops = re.findall(r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps", sub.stdout)
    t, k = loops[-1]
    return {"ms_per_step": 1e3 * float(t) / int(k)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="frozen model (.pth/.pt2); default: random-init model of the "
                    "example's size")
    ap.add_argument("--sizes", type=int, nargs="+", default=[192, 1536])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--gmx")
    ap.add_argument("--pairs", action="store_true", help="also GROMACS with its pair list")
    ap.add_argument("--nve", type=int, default=0, help="NVE steps of 192 NN atoms in GROMACS (drift)")
    ap.add_argument("--preload", action="store_true", help="also GROMACS with LD_PRELOAD=libtorch_cpu.so "
                    "(torch's own BLAS instead of GROMACS' built-in one)")
    ap.add_argument("--repeat", type=int, default=1, help="run each case N times, interleaved; report the "
                    "fastest (the machine may be shared)")
    ap.add_argument("--work", help="keep the runs here")
    a = ap.parse_args()
    gmx = gmx_path(a.gmx)
    work = Path(a.work or tempfile.mkdtemp(prefix="gmx_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DPMD_MD_GROMACS_CACHE", str(work / "cache"))
    if a.model:
        model = Path(a.model).resolve()
    else:
        from lammps_speed import make_model

        model = make_model(work / "model.pth", REPO / "examples" / "water" / "se_e2_a" / "input.json")
    rows = []
    for n in a.sizes:
        row: dict = {"atoms": n}
        for _ in range(a.repeat):  # interleaved: GROMACS, LAMMPS, GROMACS, ... (minimum of each)
            res = {"gromacs": run_gromacs(gmx, model, n, a.steps, work)["ms_per_step"]}
            if a.preload:
                res["gromacs_preload"] = run_gromacs(gmx, model, n, a.steps, work,
                                                     preload=True)["ms_per_step"]
            if a.pairs:  # GROMACS needs rlist (>= rcut + buffer = 0.7 nm) below half the box: not 192 atoms
                res["gromacs_pairs"] = (run_gromacs(gmx, model, n, a.steps, work, pairs=True,
                                                    preload=a.preload)["ms_per_step"]
                                        if n >= 1536 else float("nan"))
            res["lammps"] = run_lammps(model, n, a.steps, work)["ms_per_step"]
            for k, v in res.items():
                row[k] = min(row.get(k, v), v)
            print(json.dumps({"atoms": n} | res), flush=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nmodel {model}, 1 rank x 1 thread, {a.steps} steps (GROMACS: second half timed), "
          f"fastest of {a.repeat}")
    print(f"{'atoms':>7s} {'GROMACS ms/step':>16s}" + (f" {'+LD_PRELOAD':>12s}" if a.preload else "")
          + (f" {'GROMACS pairs':>14s}" if a.pairs else "") + f" {'LAMMPS ms/step':>15s} {'ratio':>6s}")
    for r in rows:
        best = r.get("gromacs_preload", r["gromacs"])
        print(f"{r['atoms']:7d} {r['gromacs']:16.2f}"
              + (f" {r['gromacs_preload']:12.2f}" if a.preload else "")
              + (f" {r['gromacs_pairs']:14.2f}" if a.pairs else "")
              + f" {r['lammps']:15.2f} {best / r['lammps']:6.2f}")
    print("ratio: GROMACS (with LD_PRELOAD when measured) / LAMMPS")
    if a.nve:
        res = run_gromacs(gmx, model, 192, a.steps, work, nve=a.nve, preload=a.preload)
        print(f"\nNVE {res['nve_ps']:.2f} ps, 192 NN atoms: conserved-energy drift "
              f"{res['drift_kj_mol_atom_ps']:.2e} kJ/mol/atom/ps = "
              f"{res['drift_mev_atom_ps']:.3f} meV/atom/ps; "
              f"peak-to-peak {res['conserved_ptp_kj_mol']:.3f} kJ/mol")
    return 0


if __name__ == "__main__":
    sys.exit(main())

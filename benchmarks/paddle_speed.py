#!/usr/bin/env python
"""Paddle `.json` beside `.pth` of one model in LAMMPS (run by hand, not in CI): microseconds
per step per atom and the core's backend milliseconds per call, every (model, size, ranks)
case in one run, so the ratios compare like with like on a shared machine.

  python benchmarks/paddle_speed.py                       # random-init water se_e2_a, .pth + .json
  python benchmarks/paddle_speed.py --models a.pth a.json b.json --cases 192x1 1536x2
  python benchmarks/paddle_speed.py --env DPMD_MD_CHUNK=0  # extra environment for every run
  python benchmarks/paddle_speed.py --models a.json a.json@DPMD_MD_BACKEND_DIR=/old/lib  # per model

Without --models, the example's se_e2_a water model (random init, fp64, dstd 0.1) is frozen
to .pth and .json in a temporary folder. 1 thread per rank (OMP_NUM_THREADS=1).

Two figures per run: wall (LAMMPS' loop time) and CPU (loop time x LAMMPS' "% CPU use", the
figure that holds still while other jobs share the cores; still inflated by their cache use).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
EXAMPLE = REPO / "examples" / "water" / "se_e2_a" / "input.json"
from backends import FREEZE  # noqa: E402  (benchmarks/backends.py: the example model, frozen)


def freeze(tmp: Path) -> list[str]:
    """The example model as .pth and .json (own process each)."""
    out = []
    for fmt in (".pth", ".json"):
        p = tmp / f"water{fmt}"
        subprocess.run([sys.executable, "-c", FREEZE, str(EXAMPLE), str(p)], check=True,
                       capture_output=True, timeout=600)
        out.append(str(p))
    return out


def run(lmp: str, inp: str, ranks: int, env_extra: dict) -> dict:
    """One LAMMPS run: wall and CPU us/step/atom of the last loop, core's backend ms/call."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.lammps").write_text(inp)
        env = dict(os.environ, OMP_NUM_THREADS="1", DPMD_MD_PROFILE="1") | env_extra
        cmd = [lmp, "-in", "in.lammps", "-log", "none"]
        if ranks > 1:
            cmd = [str(Path(lmp).parent / "mpirun"), "-np", str(ranks)] + cmd
        p = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    t, steps, natoms = re.findall(r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps with "
                                  r"(\d+) atoms", p.stdout)[-1]
    cpu = float(re.findall(r"([\d.]+)% CPU use", p.stdout)[-1])
    prof = re.findall(r"backend ([\d.]+) ms/call", p.stderr)
    wall = float(t) / int(steps) / int(natoms) * 1e6
    return {"wall": wall, "cpu": wall * cpu / 100,
            "backend_ms": max(float(b) for b in prof) if prof else float("nan")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", help="frozen models, each PATH or PATH@NAME=VALUE,... "
                    "(its own environment, e.g. another DPMD_MD_BACKEND_DIR); default: the "
                    "example model as .pth and .json")
    ap.add_argument("--cases", nargs="+", default=["192x1", "1536x2"],
                    help="ATOMSxRANKS cases (atoms: 192, 1536 or 12288)")
    ap.add_argument("--steps", type=int, default=0,
                    help="timed MD steps (default: about 6,000 atom-steps per rank, >= 3)")
    ap.add_argument("--env", nargs="*", default=[], help="NAME=VALUE for every LAMMPS run")
    args = ap.parse_args()
    from lammps_speed import REPLICATE, lammps_input

    env = dict(e.split("=", 1) for e in args.env)
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or freeze(Path(tmp))
        lmp = str(Path(sys.executable).parent / "lmp")
        print(f"{'model':40s} {'atoms':>6s} {'ranks':>5s} {'wall us/step/atom':>18s} "
              f"{'CPU us/step/atom':>17s} {'backend ms/call':>16s}")
        for case in args.cases:
            atoms, ranks = (int(x) for x in case.split("x"))
            steps = args.steps or max(3, 6000 * ranks // atoms)
            for spec in models:
                m, _, extra = spec.partition("@")
                menv = env | dict(e.split("=", 1) for e in extra.split(",") if e)
                r = run(lmp, lammps_input(m, REPLICATE[atoms], steps, 2), ranks, menv)
                name = Path(m).name + (f" ({extra})" if extra else "")
                print(f"{name:40s} {atoms:6d} {ranks:5d} {r['wall']:18.1f} {r['cpu']:17.1f} "
                      f"{r['backend_ms']:16.1f}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as e:
        sys.exit(f"failed: {e}")

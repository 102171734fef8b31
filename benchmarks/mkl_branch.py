#!/usr/bin/env python
"""MKL's branch and fp64 GEMM rate with and without deepmd_md's vendor answer (run by hand).

Each case is a fresh process (the answer must be in place before torch is imported):
`DPMD_MD_MKL_AMD=0` (MKL's own choice: its generic branch on AMD CPUs) and the default. Prints
MKL's auto branch (mkl_serv_cbwr_get_auto_branch: 2 = generic) and GFLOP/s of torch.mm and
torch.bmm on the shapes that dominate a DPA-1 training step (tests/test_mkl_cpu.py checks the
branch; this measures what it buys), then the ratio default / off.

    OMP_NUM_THREADS=1 python benchmarks/mkl_branch.py [--threads 1 2] [--reps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SHAPES = [("mm", (23040, 100, 128)), ("mm", (23040, 128, 100)), ("mm", (23040, 100, 100)),
          ("bmm", (192, 120, 128, 120)), ("bmm", (192, 120, 120, 100))]

CHILD = r"""
import ctypes, json, os, sys, time
import deepmd_md
import torch
threads, reps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
shapes = json.loads(sys.argv[3])
out = {}
for kind, s in shapes:
    if kind == "mm":
        m, k, n = s
        a, b = torch.randn(m, k, dtype=torch.float64), torch.randn(k, n, dtype=torch.float64)
        fn, flop = (lambda: a @ b), 2 * m * k * n
    else:
        bs, m, k, n = s
        a, b = torch.randn(bs, m, k, dtype=torch.float64), torch.randn(bs, k, n, dtype=torch.float64)
        fn, flop = (lambda: torch.bmm(a, b)), 2 * bs * m * k * n
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    out[f"{kind} {'x'.join(map(str, s))}"] = flop * reps / (time.perf_counter() - t) / 1e9
lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
out["branch"] = lib.mkl_serv_cbwr_get_auto_branch()
print(json.dumps(out))
"""


def run(off: bool, threads: int, reps: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("DPMD_MD_MKL_AMD", None)
    if off:
        env["DPMD_MD_MKL_AMD"] = "0"
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(reps), json.dumps(SHAPES)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    for t in args.threads:
        off, on = run(True, t, args.reps), run(False, t, args.reps)
        print(f"{t} thread(s): MKL branch {off['branch']} (DPMD_MD_MKL_AMD=0) -> {on['branch']}")
        print(f"  {'shape':<24s} {'off GF/s':>9s} {'on GF/s':>9s} {'on/off':>7s}")
        for k in off:
            if k != "branch":
                print(f"  {k:<24s} {off[k]:9.1f} {on[k]:9.1f} {on[k] / off[k]:6.2f}x")


if __name__ == "__main__":
    main()

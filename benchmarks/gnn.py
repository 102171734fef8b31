"""Training benchmark of the attention and graph descriptors (run by hand): DeePMD-kit's water
examples for DPA-1 (se_atten_v2), DPA-2 (small) and DPA-3, N steps on each of our backends
beside DeePMD-kit's PyTorch backend in the same run. Prints s/step, validation RMSE on data_3
after the same steps, peak RSS of the training process, and the ratio to DeePMD-kit.

    python benchmarks/gnn.py --dp-venv /tmp/dp --steps 100 [--examples dpa3] [--backends torch jax]

Uses benchmarks/train_water.py's runners (same timing rule: each code's own 'average training
time', which leaves out the first steps). Machines differ 2x: only ratios within a run count.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import train_water as tw

EXAMPLES = ("se_atten_v2", "dpa2", "dpa3")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--examples", nargs="+", default=list(EXAMPLES), choices=EXAMPLES)
    ap.add_argument("--backends", nargs="+", default=["torch", "jax"],
                    help="torch, torch+compile, jax")
    ap.add_argument("--dp-venv", type=Path, help="a venv with deepmd-kit 3.2 (baseline)")
    ap.add_argument("--threads", default="2")
    args = ap.parse_args()
    env = tw._env(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-gnn-"))
    table = []
    try:
        for ex in args.examples:
            tw.NAME = ex
            rows = {}
            if args.dp_venv:
                rows["deepmd-kit pt"] = tw.deepmd_kit(tmp / ex, args.dp_venv, "pt", args.steps,
                                                      env)
                print(ex, rows["deepmd-kit pt"], flush=True)
            for b in args.backends:
                rows[f"deepmd_md {b}"] = tw.ours(tmp / ex, b, args.steps, env)
                print(ex, b, rows[f"deepmd_md {b}"], flush=True)
            table.append((ex, rows))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwater, {args.steps} steps, {args.threads} threads, validation data_3")
    print(f"{'example':<12s} {'run':<22s} {'s/step':>8s} {'vs DP-PT':>9s} {'E meV/atom':>11s} "
          f"{'F eV/A':>8s} {'peak MiB':>9s}")
    for ex, rows in table:
        base = rows.get("deepmd-kit pt")
        for k, r in rows.items():
            ratio = f"{r['s_per_step'] / base['s_per_step']:.2f}x" if base else "-"
            print(f"{ex:<12s} {k:<22s} {r['s_per_step']:8.3f} {ratio:>9s} "
                  f"{r['e_rmse_mev_atom']:11.2f} {r['f_rmse']:8.3f} {r['peak_rss_mib']:9.0f}")


if __name__ == "__main__":
    main()

"""Why the embedding nets run feature-major (run by hand): fp64 GEMM speed of the embedding's
long, thin products with the pairs as the slow axis ([pairs, K] x [K, N], row-major) and as the
fast axis ([N, K] x [K, pairs]), same FLOPs, one thread, beside each other in one run.

    python benchmarks/gemm_layout.py [--pairs 3840 7680 11520]
"""

from __future__ import annotations

import argparse
import time

import torch


def _best(f, reps: int = 30) -> float:
    f()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, nargs="+", default=[3840, 7680, 11520])
    args = ap.parse_args()
    torch.set_num_threads(1)
    dt = torch.float64
    print(f"{'pairs':>6s} {'K':>4s} {'N':>4s} {'row-major GFLOPS':>17s} {'feature-major':>14s} "
          f"{'ratio':>6s}")
    for m in args.pairs:
        for k, n in ((25, 50), (50, 100), (100, 50)):  # water se_e2_a: layers 2, 3, 3's backward
            a, w = torch.randn(m, k, dtype=dt), torch.randn(k, n, dtype=dt)
            a_t, w_t = a.t().contiguous(), w.t().contiguous()
            o1, o2 = torch.empty(m, n, dtype=dt), torch.empty(n, m, dtype=dt)
            t1 = _best(lambda a=a, w=w, o1=o1: torch.mm(a, w, out=o1))
            t2 = _best(lambda a_t=a_t, w_t=w_t, o2=o2: torch.mm(w_t, a_t, out=o2))
            f = 2.0 * m * k * n / 1e9
            print(f"{m:6d} {k:4d} {n:4d} {f / t1:17.1f} {f / t2:14.1f} {t1 / t2:6.2f}")


if __name__ == "__main__":
    main()

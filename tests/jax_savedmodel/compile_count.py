"""How many XLA compilations a 10,000-step MD run costs a JAX `.savedmodel` (run by hand).

A SavedModel compiles once per padded input shape (deepmd_md.backends.jax.savedmodel.BUCKETS),
so the count is the number of distinct (nloc, nghost, nnei) buckets the engine's calls visit.
This script runs a Langevin MD of a simple liquid at water's atom density (0.1 atoms/A^3, 300 K,
LJ sigma 1.9 A, eps 0.02 eV, 6 amu: atoms diffuse ~5x faster than water's, so sizes fluctuate
more than in water) and replays what LAMMPS + the core pass per call:
- ghosts: periodic images (and, on 2 ranks, the other slab's atoms) within rcut + skin of the
  domain, rebuilt every 10 steps (LAMMPS' reneighboring); on 2 ranks atoms change domain then;
- nnei: the widest row of neighbors within rcut (core/src/compute.cc build_nlist);
- typed models: chunks of <= 128 local atoms (core kDefaultChunk), each with its own ghosts (the
  atoms its rows touch); message-passing models: one call over all atoms.

    OMP_NUM_THREADS=1 .venv/bin/python tests/jax_savedmodel/compile_count.py [--steps 10000]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from deepmd_md.backends.jax.savedmodel import bucket  # noqa: E402

KB = 8.617333e-5        # eV/K
ACC = 9.648533e-3       # (eV/A)/amu -> A/fs^2


def lj_forces(x, L, sigma=1.9, eps=0.02, rc=4.75):
    d = x[:, None, :] - x[None, :, :]
    d -= L * np.round(d / L)
    r2 = np.einsum("ijk,ijk->ij", d, d)
    np.fill_diagonal(r2, np.inf)
    inside = r2 < rc * rc
    s6 = np.where(inside, (sigma * sigma / r2) ** 3, 0.0)
    f = np.where(inside, 24 * eps * (2 * s6 * s6 - s6) / r2, 0.0)
    return np.einsum("ij,ijk->ik", f, d)


def domain_atoms(x, L, nranks, rank, cut, owner):
    """(local positions, ghost positions) of `rank`'s slab along x: ghosts are images of every
    atom within `cut` of the slab (its own periodic images included), not the locals themselves."""
    lo, hi = rank * L / nranks, (rank + 1) * L / nranks
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    imgs = (x[None, :, :] + L * shifts[:, None, :]).reshape(-1, 3)
    is_self = np.repeat((shifts == 0).all(1), len(x)) & np.tile(owner == rank, 27)
    inside = ((imgs[:, 0] >= lo - cut) & (imgs[:, 0] < hi + cut)
              & np.all((imgs[:, 1:] >= -cut) & (imgs[:, 1:] < L + cut), axis=1))
    return np.flatnonzero(is_self), np.flatnonzero(inside & ~is_self)


def neighbors(pos_loc, pos_ghost, rcut):
    """[nloc, nall] bool: j within rcut of local i (j != i)."""
    allpos = np.concatenate([pos_loc, pos_ghost])
    d2 = ((pos_loc * pos_loc).sum(1)[:, None] + (allpos * allpos).sum(1)[None, :]
          - 2.0 * pos_loc @ allpos.T)
    nb = d2 < rcut * rcut
    nb[np.arange(len(pos_loc)), np.arange(len(pos_loc))] = False
    return nb


def calls(nb, chunk):
    """[(nloc, nall, nnei)] of the core's backend calls for one domain at one step."""
    nloc = nb.shape[0]
    if chunk == 0:
        return [(nloc, nb.shape[1], int(nb.sum(1).max()))]
    nchunks = math.ceil(nloc / chunk)
    out = []
    for c in range(nchunks):
        s0, s1 = c * nloc // nchunks, (c + 1) * nloc // nchunks
        rows = nb[s0:s1]
        touched = np.flatnonzero(rows.any(0))
        outside = np.setdiff1d(touched, np.arange(s0, s1))
        out.append((s1 - s0, s1 - s0 + len(outside), int(rows.sum(1).max())))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10000, help="MD steps (default 10000)")
    ap.add_argument("--natoms", type=int, default=192, help="atoms (default 192)")
    ap.add_argument("--rcut", type=float, default=6.0, help="model cutoff, A (default 6)")
    ap.add_argument("--skin", type=float, default=2.0, help="neighbor skin, A (default 2)")
    ap.add_argument("--min-nnei", type=int, default=92, help="max(sel) (default 92: water)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    L = (a.natoms / 0.1) ** (1 / 3)
    n = round(a.natoms ** (1 / 3) + 0.5)
    grid = np.array([(i, j, k) for i in range(n) for j in range(n) for k in range(n)])[:a.natoms]
    x = (grid + 0.5) * L / n
    m, T, dt, gamma = 6.0, 300.0, 1.0, 0.01  # amu, K, fs, 1/fs
    v = rng.normal(0, np.sqrt(KB * T / m * ACC), x.shape)
    f = lj_forces(x, L)
    scen = {f"{nr} rank{'s' if nr > 1 else ''}, {'one call' if ch == 0 else 'chunks of 128'}":
            (nr, ch) for nr in (1, 2) for ch in (0, 128)}
    seen = {k: [set() for _ in range(v[0])] for k, v in scen.items()}
    sizes = {k: [] for k in scen}
    doms = None
    for step in range(a.steps):
        if step % 10 == 0:  # reneighbor: ghosts and domain ownership
            xw = x % L
            doms = {}
            for nr in (1, 2):
                owner = np.minimum((xw[:, 0] // (L / nr)).astype(int), nr - 1)
                doms[nr] = [domain_atoms(xw, L, nr, r, a.rcut + a.skin, owner) for r in range(nr)]
            frozen_wrap = xw - x  # the images move with their atoms until the next rebuild
        xi = x + frozen_wrap
        shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
        imgs = (xi[None] + L * shifts[:, None]).reshape(-1, 3)
        for nr in (1, 2):
            for r, (loc, gh) in enumerate(doms[nr]):
                nb = neighbors(imgs[loc], imgs[gh], a.rcut)
                for name in (k for k, (n_r, _) in scen.items() if n_r == nr):
                    for nloc, nall, nnei in calls(nb, scen[name][1]):
                        key = (bucket(nloc), bucket(nall - nloc), bucket(max(nnei, a.min_nnei)))
                        seen[name][r].add(key)
                        sizes[name].append((nloc, nall, nnei))
        # BAOAB-like Langevin step
        v += 0.5 * dt * f / m * ACC
        x += dt * v
        f = lj_forces(x, L)
        v += 0.5 * dt * f / m * ACC
        c = np.exp(-gamma * dt)
        v = c * v + np.sqrt((1 - c * c) * KB * T / m * ACC) * rng.normal(size=v.shape)
    print(f"{a.steps} steps, {a.natoms} atoms, box {L:.2f} A, rcut {a.rcut} + skin {a.skin}")
    print("| run | backend calls | distinct (nloc, nall, nnei) | compiles per rank "
          "(distinct buckets) |")
    print("|---|---|---|---|")
    for name in scen:
        s = np.array(sizes[name])
        print(f"| {name} | {len(s)} | {len(set(map(tuple, s)))} | "
              f"{', '.join(str(len(b)) for b in seen[name])} |")


if __name__ == "__main__":
    main()

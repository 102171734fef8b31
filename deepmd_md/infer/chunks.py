"""Evaluate a frame's local atoms in chunks, as the C++ core does (core/src/compute.cc run_chunk):
memory then grows with the chunk, not with the system.

A chunk of local atoms s0..s1-1 becomes its own small problem: those atoms first (local), then
every atom their neighbor rows touch (ghosts, other local atoms included). Its atom energies are
the chunk's; its extended forces add onto the full extended array, so virials and the fold onto
owners (deep_pot.fold_lower) are unchanged. Not for message-passing models: a ghost's features
there depend on atoms beyond the chunk's rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepmd_md import keys

# lower(ext_coord [1, nall, 3], ext_atype [1, nall], nlist [1, nloc, nnei], mapping [1, nall])
#   -> {atom_energy [1, nloc], extended_force [1, nall, 3]}
Lower = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], dict]


def chunked_lower(lower: Lower, ext, eatype, nlist, mapping, chunk: int) -> dict:
    """forward_lower's outputs for nf frames, local atoms `chunk` at a time (0: all at once).

    ext: [nf, nall, 3]; eatype, mapping: [nf, nall]; nlist: [nf, nloc, nnei] (-1 = empty).
    Returns {atom_energy [nf, nloc], extended_force [nf, nall, 3]}."""
    nf, nloc = nlist.shape[:2]
    if chunk <= 0 or nloc <= chunk:
        out = lower(ext, eatype, nlist, mapping)
        return {k: np.asarray(out[k]) for k in (keys.ATOM_ENERGY, keys.EXT_FORCE)}
    ae = np.zeros((nf, nloc))
    ef = np.zeros(ext.shape)
    nchunks = -(-nloc // chunk)
    for f in range(nf):
        for c in range(nchunks):
            s0, s1 = c * nloc // nchunks, (c + 1) * nloc // nchunks
            rows = nlist[f, s0:s1]
            own = np.arange(s0, s1)
            touched = np.unique(rows[rows >= 0])
            ids = np.concatenate([own, touched[(touched < s0) | (touched >= s1)]])
            remap = np.full(ext.shape[1] + 1, -1, dtype=np.int64)  # slot -1 -> -1
            remap[ids] = np.arange(ids.size)
            sub_nlist = remap[rows][None]
            # mapping is read by message-passing models only (excluded): any owner < n will do
            sub_map = np.arange(ids.size)[None] % (s1 - s0)
            out = lower(ext[f:f + 1, ids], eatype[f:f + 1, ids], sub_nlist, sub_map)
            ae[f, s0:s1] = np.asarray(out[keys.ATOM_ENERGY])[0]
            ef[f, ids] += np.asarray(out[keys.EXT_FORCE])[0]  # ids are distinct
    return {keys.ATOM_ENERGY: ae, keys.EXT_FORCE: ef}

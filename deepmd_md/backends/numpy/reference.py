"""NumPy reference: energy from the shared model code; forces and virial by complex-step
differentiation (dE/dx = Im E(x + ih) / h, exact to rounding, no autodiff framework involved).

Cost: one extra frame per coordinate (3 nat + 9 per frame), evaluated in chunks that bound the
memory: meant for tests and for checking other backends, not for production runs.
"""

from __future__ import annotations

import numpy as np

from deepmd_md import keys
from deepmd_md.model.frames import frame_atom_energy, prepare_frames
from deepmd_md.model.model import sel_of

H = 1e-30  # complex step; any tiny value works since there is no subtractive cancellation
MEM_BUDGET = 2**30  # bytes of embedding arrays per evaluation call (see evaluate)


def _repeat(prep: dict, n: int) -> dict:
    return {k: np.repeat(v, n, axis=0) for k, v in prep.items()}


def _widest(tree) -> int:
    """Largest layer width named anywhere in a descriptor config (sizes the chunks)."""
    if isinstance(tree, dict):
        return max([1, *(_widest(v) for v in tree.values())])
    if isinstance(tree, list):
        return max([1, *(_widest(v) for v in tree)])
    return tree if isinstance(tree, int) and not isinstance(tree, bool) else 1


def evaluate(data: dict, coord, atype, box) -> dict:
    """coord: [nf, nat, 3]; atype: [nf, nat]; box: [nf, 9] | None ->
    energy [nf], atom_energy [nf, nat], force [nf, nat, 3], virial [nf, 9] (all float64)."""
    cfg, params, bufs = data["config"], data["params"], data["buffers"]
    coord = np.asarray(coord, np.float64)
    nf, nat, _ = coord.shape
    out = {k: [] for k in (keys.ENERGY, keys.ATOM_ENERGY, keys.FORCE, keys.VIRIAL)}
    nnei = sum(sel_of(cfg))
    width = _widest(cfg["descriptor"])
    # copies per call: the embedding arrays of one copy are nat x nnei x width complex numbers;
    # all 3 nat + 10 copies at once would need ~25 GB for a 192-atom water frame
    chunk = max(1, MEM_BUDGET // (16 * nat * nnei * width))
    for f in range(nf):  # one frame at a time: each becomes 3 nat + 10 perturbed copies
        b = None if box is None else np.asarray(box)[f : f + 1]
        prep = prepare_frames(cfg, coord[f : f + 1], np.asarray(atype)[f : f + 1], b)
        ncopy = 3 * nat + 9 + 1
        es = []
        for lo in range(0, ncopy, chunk):
            idx = np.arange(lo, min(lo + chunk, ncopy))
            c = np.repeat(coord[f : f + 1], len(idx), axis=0).astype(np.complex128)
            strain = np.zeros((len(idx), 3, 3), np.complex128)
            pos, st = idx < 3 * nat, (idx >= 3 * nat) & (idx < 3 * nat + 9)
            c[pos.nonzero()[0], idx[pos] // 3, idx[pos] % 3] += 1j * H
            strain[st.nonzero()[0], (idx[st] - 3 * nat) // 3, (idx[st] - 3 * nat) % 3] += 1j * H
            ae = frame_atom_energy(cfg, params, bufs, c, strain, _repeat(prep, len(idx)))
            es.append(np.sum(ae, axis=-1))
        e = np.concatenate(es)
        out[keys.ENERGY].append(e[-1].real)
        out[keys.ATOM_ENERGY].append(ae[-1].real)  # the last copy (last chunk) is unperturbed
        out[keys.FORCE].append(-(e[: 3 * nat].imag / H).reshape(nat, 3))
        out[keys.VIRIAL].append(-(e[3 * nat : 3 * nat + 9].imag / H))
    return {k: np.stack(v) for k, v in out.items()}

"""NumPy reference: energy from the shared model code; forces and virial by complex-step
differentiation (dE/dx = Im E(x + ih) / h, exact to rounding, no autodiff framework involved).

Cost: one extra frame per coordinate (3 nat + 9 per frame): meant for tests on small systems.
"""

from __future__ import annotations

import numpy as np

from deepmd_md import keys
from deepmd_md.model.frames import frame_atom_energy, prepare_frames

H = 1e-30  # complex step; any tiny value works since there is no subtractive cancellation


def _repeat(prep: dict, n: int) -> dict:
    return {k: np.repeat(v, n, axis=0) for k, v in prep.items()}


def evaluate(data: dict, coord, atype, box) -> dict:
    """coord: [nf, nat, 3]; atype: [nf, nat]; box: [nf, 9] | None ->
    energy [nf], atom_energy [nf, nat], force [nf, nat, 3], virial [nf, 9] (all float64)."""
    cfg, params, bufs = data["config"], data["params"], data["buffers"]
    coord = np.asarray(coord, np.float64)
    nf, nat, _ = coord.shape
    out = {k: [] for k in (keys.ENERGY, keys.ATOM_ENERGY, keys.FORCE, keys.VIRIAL)}
    for f in range(nf):  # one frame at a time: each becomes 3 nat + 10 perturbed copies
        b = None if box is None else np.asarray(box)[f : f + 1]
        prep = prepare_frames(cfg, coord[f : f + 1], np.asarray(atype)[f : f + 1], b)
        ncopy = 3 * nat + 9 + 1
        c = np.repeat(coord[f : f + 1], ncopy, axis=0).astype(np.complex128)
        strain = np.zeros((ncopy, 3, 3), np.complex128)
        c[np.arange(3 * nat), np.arange(3 * nat) // 3, np.arange(3 * nat) % 3] += 1j * H
        strain[3 * nat + np.arange(9), np.arange(9) // 3, np.arange(9) % 3] += 1j * H
        ae = frame_atom_energy(cfg, params, bufs, c, strain, _repeat(prep, ncopy))
        e = np.sum(ae, axis=-1)
        out[keys.ENERGY].append(e[-1].real)
        out[keys.ATOM_ENERGY].append(ae[-1].real)
        out[keys.FORCE].append(-(e[: 3 * nat].imag / H).reshape(nat, 3))
        out[keys.VIRIAL].append(-(e[3 * nat : 3 * nat + 9].imag / H))
    return {k: np.stack(v) for k, v in out.items()}

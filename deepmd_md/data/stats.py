"""Data statistics: DeePMD's per-type energy bias."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepmd_md.data.system import System
from deepmd_md.errors import DataError

__all__ = ["type_counts", "energy_bias"]


def type_counts(system: System, ntypes: int) -> np.ndarray:
    """[ntypes] number of atoms of each (model) type in one frame of `system`."""
    return np.bincount(system.atype, minlength=ntypes)[:ntypes].astype(np.float64)


def energy_bias(systems: Sequence[System], ntypes: int, rcond: float | None = None) -> np.ndarray:
    """[ntypes] per-type energy bias: least squares of frame energies on per-type atom counts.

    Solves  counts [nframes_total, ntypes] @ bias = energy [nframes_total]  with lstsq, whose
    minimum-norm solution handles a type absent from the data (bias 0) and rank-deficient counts
    (e.g. water, where every frame has O:H = 1:2) the way DeePMD-kit does. Systems without
    energy labels are skipped. Types must already be model indices (see remap_types).
    """
    rows, energies = [], []
    for s in systems:
        if s.energy is None:
            continue
        if s.atype.size and s.atype.max() >= ntypes:
            raise DataError(f"{s.path}: type {int(s.atype.max())} >= ntypes {ntypes}")
        rows.append(np.broadcast_to(type_counts(s, ntypes), (s.nframes, ntypes)))
        energies.append(s.energy)
    if not rows:
        raise DataError("no training system has energy.npy; cannot compute the energy bias")
    counts = np.concatenate(rows)
    energy = np.concatenate(energies)
    bias, *_ = np.linalg.lstsq(counts, energy, rcond=rcond)
    return bias

"""Training drops neighbor-list slots that are empty everywhere and adds their contribution back
in closed form (descriptor.descriptor widths=...): results must equal the full-sel model."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_model, random_frames

from deepmd_md import keys
from deepmd_md.model.frames import frame_atom_energy, prepare_frames, trim_nlist


@pytest.mark.parametrize("desc,one_side", [("se_e2_a", True), ("se_e2_a", False),
                                           ("se_e2_r", True)])
def test_trimmed_nlist_equals_full(desc, one_side):
    over = {"sel": [24, 30]}
    if desc == "se_e2_a":
        over["type_one_side"] = one_side
    data = make_model(desc, **over)
    coord, atype, box = random_frames(12, nf=2, seed=3)
    cfg = data["config"]
    prep = prepare_frames(cfg, coord, atype, box)
    trimmed, widths = trim_nlist(prep[keys.NLIST], cfg["descriptor"]["sel"])
    assert sum(widths) < sum(cfg["descriptor"]["sel"])  # something was actually dropped
    strain = np.zeros((2, 3, 3))
    full = frame_atom_energy(cfg, data["params"], data["buffers"], coord, strain, prep)
    short = frame_atom_energy(cfg, data["params"], data["buffers"], coord, strain,
                              {**prep, keys.NLIST: trimmed, keys.NLIST_WIDTHS: widths})
    assert np.abs(full - short).max() < 1e-12
    assert np.abs(full).max() > 1e-3

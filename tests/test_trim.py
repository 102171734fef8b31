"""Training drops neighbor-list slots that are empty everywhere and adds their contribution back
in closed form (descriptors.se_e2.compute widths=...); the engines' fast path takes per-type blocks
of any width (compute_blocked): results must equal the full-sel model."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_model, random_frames

from deepmd_md import keys
from deepmd_md.model.frames import (
    blocked_inputs,
    extended_coord,
    frame_atom_energy,
    prepare_frames,
    trim_nlist,
)
from deepmd_md.model.model import atomic_outputs, atomic_outputs_blocked


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


def _blocked(cfg, prep, seed):
    """Per-type blocks (rows shuffled, one extra empty slot) and local atoms by type, as the
    C++ core hands them to the engines' fast path."""
    rng = np.random.default_rng(seed)
    nloc = prep[keys.NLIST].shape[1]
    nlists, center = blocked_inputs(prep[keys.NLIST], prep[keys.EXT_ATYPE][:, :nloc],
                                    cfg["descriptor"]["sel"])
    nlists = [rng.permuted(np.concatenate([nl, np.full((1, nloc, 1), -1)], -1), axis=-1)
              for nl in nlists]
    return nlists, center


@pytest.mark.parametrize("desc,one_side", [("se_e2_a", True), ("se_e2_a", False),
                                           ("se_e2_r", True)])
def test_blocked_inputs_equal_full(desc, one_side):
    """atomic_outputs_blocked (per-type neighbor blocks of any width, any order) equals
    atomic_outputs on the full type-blocked list (NumPy reference)."""
    over = {"sel": [24, 30]}
    if desc == "se_e2_a":
        over["type_one_side"] = one_side
    data = make_model(desc, **over)
    cfg = data["config"]
    coord, atype, box = random_frames(12, seed=5)
    prep = prepare_frames(cfg, coord, atype, box)
    ext = extended_coord(coord, np.zeros((1, 3, 3)), prep[keys.MAPPING], prep[keys.SHIFT])
    full = atomic_outputs(cfg, data["params"], data["buffers"], ext, prep[keys.EXT_ATYPE],
                          prep[keys.NLIST])["energy"]
    nlists, center = _blocked(cfg, prep, seed=1)
    assert all(nl.shape[2] < s for nl, s in zip(nlists, cfg["descriptor"]["sel"], strict=True))
    blk = atomic_outputs_blocked(cfg, data["params"], data["buffers"], ext,
                                 prep[keys.EXT_ATYPE], nlists, center)["energy"]
    assert np.abs(full - blk).max() < 1e-12
    assert np.abs(full).max() > 1e-3


def test_frozen_forward_blocked_equals_forward_lower():
    """The .pth's forward_blocked (what the C++ core calls) equals its forward_lower, on two
    different sizes through one traced module (widths and atom counts stay dynamic)."""
    torch = pytest.importorskip("torch")
    from deepmd_md.backends.torch.freeze import build_frozen

    data = make_model()
    cfg = data["config"]
    module = build_frozen(data)
    for nat, seed in ((12, 5), (7, 6)):
        coord, atype, box = random_frames(nat, seed=seed)
        prep = prepare_frames(cfg, coord, atype, box)
        ext = torch.tensor(extended_coord(coord, np.zeros((1, 3, 3)), prep[keys.MAPPING],
                                          prep[keys.SHIFT]))
        eat = torch.tensor(prep[keys.EXT_ATYPE])
        ref = module.forward_lower(ext, eat, torch.tensor(prep[keys.NLIST]), None, None, None,
                                   True)
        nlists, center = _blocked(cfg, prep, seed=seed)
        out = module.forward_blocked(ext, eat, [torch.tensor(x) for x in nlists],
                                     [torch.tensor(x) for x in center], True)
        for k, v in ref.items():
            assert torch.allclose(out[k], v, rtol=0, atol=1e-12), k

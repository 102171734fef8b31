"""From frames (coord, atype, box) to the extended-atom inputs of `forward_lower`, and back.

`prepare_frames` (NumPy, outside any autodiff graph) finds periodic images and the type-blocked
neighbor list once per configuration. `frame_atom_energy` (array API, inside the graph) rebuilds
the extended coordinates from `coord` and a strain, so that -dE/dcoord are the forces folded onto
owners and -dE/dstrain is the virial: no scatter-add, hence one code path for every framework.
"""

from __future__ import annotations

import numpy as np

from deepmd_md import keys
from deepmd_md.model.env import format_nlist, gather_rows
from deepmd_md.model.model import atomic_outputs, mixed_of, rcut_of, sel_key_of, sel_of
from deepmd_md.model.xp import array_namespace


def prepare_frames(config: dict, coord, atype, box, check_sel: bool = True) -> dict:
    """coord: [nf, nat, 3]; atype: [nf, nat]; box: [nf, 9] | None ->
    {mapping [nf, nall], shift [nf, nall, 3], extended_atype [nf, nall], nlist [nf, nat, nnei]}."""
    from deepmd_md.data.neighbor import (
        check_sel as _check,
    )
    from deepmd_md.data.neighbor import (
        count_neighbors,
        extend_coord,
        neighbor_candidates,
    )

    coord = np.asarray(coord, dtype=np.float64)
    atype = np.asarray(atype, dtype=np.int64)
    rcut, sel, mixed = rcut_of(config), sel_of(config), mixed_of(config)
    ext_coord, ext_atype, mapping, shift = extend_coord(coord, atype, box, rcut)
    raw = neighbor_candidates(ext_coord, coord.shape[1], rcut)
    if check_sel:
        key = sel_key_of(config)
        if mixed:  # one count over all types
            _check((raw >= 0).sum(-1)[..., None], sel, config["type_map"], rcut=rcut, key=key,
                   mixed=True)
        else:
            _check(count_neighbors(ext_atype, raw, len(sel)), sel, config["type_map"], rcut=rcut,
                   key=key)
    nlist = np.asarray(format_nlist(ext_coord, ext_atype, raw, rcut, sel, mixed=mixed))
    return {keys.MAPPING: mapping, keys.SHIFT: shift, keys.EXT_ATYPE: ext_atype, keys.NLIST: nlist}


def trim_nlist(nlist, sel: list[int]):
    """Drop the trailing slots of each type block that are empty for every atom and frame.

    nlist: [nf, nloc, sum(sel)] type-blocked -> (trimmed nlist, widths tuple). The model adds the
    dropped slots back in closed form (descriptors.se_e2.compute), so results are unchanged."""
    nlist = np.asarray(nlist)
    blocks, widths, start = [], [], 0
    for n in sel:
        b = nlist[..., start : start + n]
        start += n
        used = (b >= 0).sum(-1).max() if b.size else 0
        widths.append(int(used))
        blocks.append(b[..., : int(used)])
    return np.concatenate(blocks, axis=-1), tuple(widths)


def blocked_inputs(nlist, atype, sel: list[int]):
    """The engines' fast-path inputs (model.atomic_outputs_blocked) from one frame's
    type-blocked nlist [1, nloc, sum(sel)] and local types [1, nloc], as the C++ core builds
    them: (per-type nlists [1, nloc, w_t] trimmed to their widest row, per-type local indices)."""
    trimmed, widths = trim_nlist(nlist, sel)
    bounds = np.cumsum((0, *widths))
    nlists = [trimmed[..., a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    at = np.asarray(atype)[0]
    return nlists, [np.nonzero(at == t)[0] for t in range(len(sel))]


def pad_nlist(nlist, widths, new_widths):
    """A type-blocked nlist [nf, nloc, sum(widths)] widened block by block to new_widths
    (each >= its old width) with empty slots (-1)."""
    nlist = np.asarray(nlist)
    blocks, start = [], 0
    for w, nw in zip(widths, new_widths, strict=True):
        b = nlist[..., start : start + w]
        start += w
        pad = [(0, 0)] * (nlist.ndim - 1) + [(0, nw - w)]
        blocks.append(np.pad(b, pad, constant_values=-1))
    return np.concatenate(blocks, axis=-1)


def extended_coord(coord, strain, mapping, shift):
    """(coord[mapping] + shift)(I + strain): coord [nf, nat, 3], strain [nf, 3, 3] -> [nf, nall, 3]."""
    xp = array_namespace(coord)
    ext = gather_rows(coord, mapping) + shift
    return ext + xp.matmul(ext, strain)


def frame_atom_energy(config, params, buffers, coord, strain, prep: dict):
    """Atomic energies [nf, nat] as a function of coord [nf, nat, 3] and strain [nf, 3, 3]."""
    ext = extended_coord(coord, strain, prep[keys.MAPPING], prep[keys.SHIFT])
    return atomic_outputs(config, params, buffers, ext, prep[keys.EXT_ATYPE], prep[keys.NLIST],
                          type_split=prep.get(keys.TYPE_SPLIT),
                          widths=prep.get(keys.NLIST_WIDTHS),
                          mapping=prep[keys.MAPPING])["energy"]

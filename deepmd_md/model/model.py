"""The model: (descriptor, fitting) -> declared per-atom outputs; pure functions over
`ModelData` = {"config", "params" (trainable), "buffers" (statistics), "format", "version"}.

Backends convert `params`/`buffers` leaves to their arrays and call `atomic_outputs`;
they reduce the declared outputs over atoms and differentiate where declared (see OUTPUTS).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace

from deepmd_md.model import descriptor, fitting
from deepmd_md.model.env import format_nlist

FORMAT = "deepmd_md.model"
VERSION = 1
PRECISIONS = {"float64": np.float64, "float32": np.float32, "default": np.float64}


@dataclass(frozen=True)
class OutputDef:
    """One per-atom output: its per-atom shape and physics.

    reducible: summed over atoms into a frame value; r_differentiable: -d/d(coord) is wanted
    (forces); c_differentiable: -d/d(strain) is wanted (virial)."""

    name: str
    shape: tuple[int, ...]
    reducible: bool
    r_differentiable: bool
    c_differentiable: bool


OUTPUTS = (OutputDef("energy", (1,), True, True, True),)


def model_dtype(config: dict):
    return PRECISIONS[config["descriptor"].get("precision", "float64")]


def sel_of(config: dict) -> list[int]:
    return list(config["descriptor"]["sel"])


def rcut_of(config: dict) -> float:
    return float(config["descriptor"]["rcut"])


def init_model(config: dict, seed: int | None = None) -> dict:
    """Fresh ModelData from a normalised `model` section (type_map, descriptor, fitting_net)."""
    config = copy.deepcopy(config)
    ntypes = len(config["type_map"])
    dcfg, fcfg = config["descriptor"], config["fitting_net"]
    if len(dcfg["sel"]) != ntypes:
        from deepmd_md.errors import ConfigError

        raise ConfigError(
            f"model/descriptor/sel has {len(dcfg['sel'])} entries but type_map has {ntypes}"
        )
    dtype = model_dtype(config)
    rng = np.random.default_rng(seed)
    params = {
        "descriptor": descriptor.init_params(dcfg, ntypes, rng, dtype),
        "fitting": fitting.init_params(fcfg, descriptor.out_dim(dcfg), ntypes, rng, dtype),
    }
    buffers = {**descriptor.init_stats(dcfg, ntypes, dtype), "bias_atom_e": np.zeros(ntypes)}
    buffers["bias_atom_e"] = buffers["bias_atom_e"].astype(dtype)
    return {"format": FORMAT, "version": VERSION, "config": config, "params": params,
            "buffers": buffers}


def atomic_outputs(config: dict, params: dict, buffers: dict, ext_coord, ext_atype, nlist,
                   raw_nlist: bool = False, type_split=None, widths=None) -> dict:
    """Per-atom outputs of OUTPUTS: {"energy": [nf, nloc]}.

    ext_coord: [nf, nall, 3]; ext_atype: [nf, nall]; nlist: [nf, nloc, sum(sel)] type-blocked,
    or any raw list of candidates ([nf, nloc, *], -1 padded) when raw_nlist is True.
    type_split: atoms per type (static tuple) when local atoms are sorted by type.
    widths: slots per type actually present in nlist (static tuple; see descriptor.descriptor).
    """
    xp = array_namespace(ext_coord)
    dcfg = config["descriptor"]
    if raw_nlist:
        nlist = format_nlist(ext_coord, ext_atype, nlist, dcfg["rcut"], dcfg["sel"])
    dtype = buffers["dstd"].dtype
    if not xp.isdtype(ext_coord.dtype, "complex floating"):
        ext_coord = xp.astype(ext_coord, dtype)
    d = descriptor.descriptor(dcfg, params["descriptor"], buffers, ext_coord, ext_atype, nlist,
                              widths)
    atype = ext_atype[:, : nlist.shape[1]]
    e = fitting.atomic_energy(config["fitting_net"], params["fitting"], buffers["bias_atom_e"],
                              d, atype, type_split)
    return {"energy": e}


def atomic_outputs_blocked(config: dict, params: dict, buffers: dict, ext_coord, ext_atype,
                           nlists, center_idx) -> dict:
    """atomic_outputs from pre-sorted neighbors, the engines' fast path (every size dynamic).

    nlists[t]: [1, nloc, w_t] type-t neighbors inside rcut, w_t <= sel[t], -1 padded (the
    nearest sel[t] when there are more); center_idx[t]: [n_t] local indices of type-t atoms,
    each local atom in exactly one. Equals atomic_outputs on the same neighbors."""
    xp = array_namespace(ext_coord)
    dtype = buffers["dstd"].dtype
    if not xp.isdtype(ext_coord.dtype, "complex floating"):
        ext_coord = xp.astype(ext_coord, dtype)
    d = descriptor.descriptor_blocked(config["descriptor"], params["descriptor"], buffers,
                                      ext_coord, ext_atype, nlists)
    atype = ext_atype[:, : nlists[0].shape[1]]
    e = fitting.atomic_energy(config["fitting_net"], params["fitting"], buffers["bias_atom_e"],
                              d, atype, center_idx=center_idx)
    return {"energy": e}

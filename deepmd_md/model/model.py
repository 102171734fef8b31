"""The model: (descriptor, fitting) -> declared per-atom outputs; pure functions over
`ModelData` = {"config", "params" (trainable), "buffers" (statistics), "format", "version"}.

Backends convert `params`/`buffers` leaves to their arrays and call `atomic_outputs`;
they reduce the declared outputs over atoms and differentiate where declared (see OUTPUTS).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from deepmd_md.model import descriptors, fitting
from deepmd_md.model.comm import MappingExchange
from deepmd_md.model.xp import array_namespace

FORMAT = "deepmd_md.model"
VERSION = 2  # 2: descriptor statistics under buffers/descriptor (1: at the top level)
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


def descriptor_kind(config: dict):
    """The registered module of the model's descriptor (model/descriptors)."""
    return descriptors.kind(config["descriptor"])


def sel_of(config: dict) -> list[int]:
    return descriptor_kind(config).sel(config["descriptor"])


def rcut_of(config: dict) -> float:
    return float(descriptor_kind(config).rcut(config["descriptor"]))


def sel_key_of(config: dict) -> str:
    """The input key (under model/descriptor/) that sets the model nlist's width, for advice."""
    kind = descriptor_kind(config)
    return kind.sel_key(config["descriptor"]) if hasattr(kind, "sel_key") else "sel"


def mixed_of(config: dict) -> bool:
    """Whether the model's nlist is one distance-sorted block of any type (else type-blocked)."""
    return bool(descriptor_kind(config).mixed_types(config["descriptor"]))


def message_passing_of(config: dict) -> bool:
    return bool(descriptor_kind(config).message_passing(config["descriptor"]))


def init_model(config: dict, seed: int | None = None) -> dict:
    """Fresh ModelData from a normalised `model` section (type_map, descriptor, fitting_net)."""
    config = copy.deepcopy(config)
    ntypes = len(config["type_map"])
    dcfg, fcfg = config["descriptor"], config["fitting_net"]
    kind = descriptor_kind(config)
    if hasattr(kind, "check"):
        kind.check(dcfg, ntypes)
    dtype = model_dtype(config)
    rng = np.random.default_rng(seed)
    params = {
        "descriptor": kind.init_params(dcfg, ntypes, rng, dtype),
        "fitting": fitting.init_params(fcfg, kind.out_dim(dcfg, ntypes), ntypes, rng, dtype,
                                       mixed=kind.mixed_types(dcfg)),
    }
    buffers = {"descriptor": kind.init_stats(dcfg, ntypes, dtype),
               "bias_atom_e": np.zeros(ntypes, dtype)}
    return {"format": FORMAT, "version": VERSION, "config": config, "params": params,
            "buffers": buffers}


def _as_model_dtype(xp, x, buffers):
    dtype = buffers["bias_atom_e"].dtype
    return x if xp.isdtype(x.dtype, "complex floating") else xp.astype(x, dtype)


def atomic_outputs(config: dict, params: dict, buffers: dict, ext_coord, ext_atype, nlist,
                   raw_nlist: bool = False, type_split=None, widths=None, mapping=None,
                   comm=None) -> dict:
    """Per-atom outputs of OUTPUTS: {"energy": [nf, nloc]}.

    ext_coord: [nf, nall, 3]; ext_atype: [nf, nall]; nlist: [nf, nloc, sum(sel)] formatted for
    the descriptor (descriptors.format_for), or any raw list of candidates ([nf, nloc, *], -1
    padded) when raw_nlist is True.
    type_split: atoms per type (static tuple) when local atoms are sorted by type.
    widths: slots per type actually present in nlist (static tuple; typed descriptors only).
    mapping: [nf, nall] owner of each extended atom; message-passing descriptors exchange
    ghost features through it (model/comm.py) unless an engine passes its own `comm`.
    """
    xp = array_namespace(ext_coord)
    dcfg = config["descriptor"]
    kind = descriptor_kind(config)
    if raw_nlist:
        nlist = descriptors.format_for(dcfg, ext_coord, ext_atype, nlist)
    if comm is None and mapping is not None and kind.message_passing(dcfg):
        comm = MappingExchange(mapping)
    ext_coord = _as_model_dtype(xp, ext_coord, buffers)
    d = kind.compute(dcfg, params["descriptor"], buffers["descriptor"], ext_coord, ext_atype,
                     nlist, comm=comm, widths=widths)
    atype = ext_atype[:, : nlist.shape[1]]
    e = fitting.atomic_energy(config["fitting_net"], params["fitting"], buffers["bias_atom_e"],
                              d, atype, type_split)
    return {"energy": e}


def atomic_outputs_blocked(config: dict, params: dict, buffers: dict, ext_coord, ext_atype,
                           nlists, center_idx) -> dict:
    """atomic_outputs from pre-sorted neighbors, the engines' fast path (every size dynamic;
    typed descriptors without message passing only).

    nlists[t]: [1, nloc, w_t] type-t neighbors inside rcut, w_t <= sel[t], -1 padded (the
    nearest sel[t] when there are more); center_idx[t]: [n_t] local indices of type-t atoms,
    each local atom in exactly one. Equals atomic_outputs on the same neighbors."""
    xp = array_namespace(ext_coord)
    ext_coord = _as_model_dtype(xp, ext_coord, buffers)
    kind = descriptor_kind(config)
    d = kind.compute_blocked(config["descriptor"], params["descriptor"], buffers["descriptor"],
                             ext_coord, ext_atype, nlists)
    atype = ext_atype[:, : nlists[0].shape[1]]
    e = fitting.atomic_energy(config["fitting_net"], params["fitting"], buffers["bias_atom_e"],
                              d, atype, center_idx=center_idx)
    return {"energy": e}


def supports_blocked(config: dict) -> bool:
    return hasattr(descriptor_kind(config), "compute_blocked")

"""What every framework adapter shares, written once against the array API: the energy as a
function of (coord, strain), and forces/virial from its two gradients. Adapters supply `grad`."""

from __future__ import annotations

from deepmd_md import keys
from deepmd_md.model.frames import frame_atom_energy
from deepmd_md.model.xp import array_namespace


def total_energy(config, params, buffers, coord, strain, prep):
    """Scalar sum of all frames' energies and the atomic energies [nf, nat] (as aux)."""
    xp = array_namespace(coord)
    ae = frame_atom_energy(config, params, buffers, coord, strain, prep)
    return xp.sum(ae), ae


def efv_from_grads(ae, g_coord, g_strain) -> dict:
    """energy [nf], atom_energy [nf, nat], force [nf, nat, 3], virial [nf, 9] from dE/dcoord, dE/dstrain."""
    xp = array_namespace(ae)
    nf = ae.shape[0]
    return {
        keys.ENERGY: xp.sum(ae, axis=-1),
        keys.ATOM_ENERGY: ae,
        keys.FORCE: -g_coord,
        keys.VIRIAL: -xp.reshape(g_strain, (nf, 9)),
    }


def frozen_metadata(data: dict, fmt: str, version: int, *, widths: list[int] | None,
                    blocked: bool, receptive_field: bool) -> dict:
    """The metadata JSON every frozen format carries (read by the C++ core and DeepPot): type map,
    cutoff, sel, precision, entry points; `widths` (the ghost-exchange op's columns per call) when the
    frozen graph holds the exchange op,
    `receptive_field` how far features reach (message-passing models)."""
    from deepmd_md.model.model import (
        OUTPUTS,
        descriptor_kind,
        message_passing_of,
        mixed_of,
        model_dtype,
        rcut_of,
        sel_of,
    )

    cfg = data["config"]
    extra = {}
    if widths is not None:
        extra["exchange"] = {"op": "dpmd::ghost_exchange", "widths": widths, "weighted": True}
    if receptive_field:
        extra["receptive_field"] = float(descriptor_kind(cfg).receptive_field(cfg["descriptor"]))
    return extra | {
        "format": fmt, "version": version, "type_map": list(cfg["type_map"]),
        "rcut": rcut_of(cfg), "sel": sel_of(cfg), "nnei": sum(sel_of(cfg)),
        "dim_fparam": 0, "dim_aparam": 0,
        "precision": "float32" if model_dtype(cfg).__name__ == "float32" else "float64",
        "message_passing": message_passing_of(cfg), "blocked": blocked,
        "mixed_types": mixed_of(cfg),
        "outputs": {o.name: {"reducible": o.reducible, "r_differentiable": o.r_differentiable,
                             "c_differentiable": o.c_differentiable} for o in OUTPUTS},
    }

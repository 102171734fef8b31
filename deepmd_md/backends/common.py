"""What every framework adapter shares: energy/force/virial from the strain trick, the training
step (loss + Adam), written once against the array API. An adapter supplies only `grad`."""

from __future__ import annotations

from array_api_compat import array_namespace

from deepmd_md import keys
from deepmd_md.model.frames import frame_atom_energy
from deepmd_md.train.loss import ener_loss
from deepmd_md.train.optim import adam_update

PREP_KEYS = (keys.MAPPING, keys.SHIFT, keys.EXT_ATYPE, keys.NLIST)


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


def loss_of(efv_fn, params, batch, prep, pref):
    """Energy loss of one batch; efv_fn(params, coord, prep) -> predictions (differentiable)."""
    pred = efv_fn(params, batch[keys.COORD], prep)
    return ener_loss(pred, batch, pref)


def apply_adam(params, grads, opt_state, lr):
    return adam_update(params, grads, opt_state, lr)

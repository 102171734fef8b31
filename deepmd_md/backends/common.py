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

"""Energy fitting: one net per center type maps the descriptor to an atomic energy, plus a
fixed per-type bias (least-squares fit of the training energies, see data.stats)."""

from __future__ import annotations

import numpy as np
from array_api_compat import is_jax_namespace

from deepmd_md.model.nn import apply_net, init_net
from deepmd_md.model.xp import array_namespace


def init_params(cfg: dict, dim_in: int, ntypes: int, rng: np.random.Generator, dtype,
                mixed: bool = False) -> dict:
    """One net per center type ("t{t}"), or one net for all ("all") when the descriptor mixes
    types (its D already carries the center's type embedding, as DeePMD-kit's DPA models)."""
    sizes = [dim_in, *cfg["neuron"], 1]
    if mixed:
        return {"all": init_net(rng, sizes, cfg["resnet_dt"], dtype, final_linear=True)}
    return {
        f"t{t}": init_net(rng, sizes, cfg["resnet_dt"], dtype, final_linear=True)
        for t in range(ntypes)
    }


def atomic_energy(cfg: dict, params: dict, bias, desc, atype, type_split=None,
                  center_idx=None):
    """desc: [nf, nloc, d]; atype: [nf, nloc]; bias: [nt] -> atomic energy [nf, nloc].

    type_split: atoms per type when atoms are sorted by type (static); then each type's net
    sees only its own atoms. Otherwise, where shapes may depend on data, each net runs on the
    rows of its type; under jax.jit (static shapes) every net runs on all atoms and a mask
    picks (nt x the work). center_idx ([n_t] local indices of each type's atoms, nf == 1; any
    n_t, dynamic: the engines' fast path) says which rows each net takes.
    """
    xp = array_namespace(desc)
    act = cfg["activation_function"]
    out = xp.take(bias, xp.reshape(atype, (-1,)), axis=0)
    out = xp.reshape(out, atype.shape)
    if "all" in params:  # one net for every type
        return out + apply_net(params["all"], desc, act, embedding=False, final_linear=True)[..., 0]
    if type_split is not None:
        parts, start = [], 0
        for t, n in enumerate(type_split):
            d = desc[:, start : start + n, :]
            start += n
            parts.append(apply_net(params[f"t{t}"], d, act, embedding=False,
                                   final_linear=True)[..., 0])
        return out + xp.concat(parts, axis=1)
    if center_idx is not None:
        return out + _by_type_index(params, desc, center_idx, act)
    if not is_jax_namespace(xp):  # dynamic shapes: each net sees its own atoms
        return out + _by_type_gather(params, desc, atype, act, bias.shape[0])
    for t in range(bias.shape[0]):  # static shapes (jax.jit): every net on all atoms, masked
        e = apply_net(params[f"t{t}"], desc, act, embedding=False, final_linear=True)[..., 0]
        out = out + xp.where(atype == t, e, xp.zeros_like(e))
    return out


def _by_type_gather(params, desc, atype, act, ntypes):
    """Per-type nets on the rows of their type, reassembled in the original order: [nf, nloc]."""
    xp = array_namespace(desc)
    flat = xp.reshape(desc, (-1, desc.shape[-1]))
    ft = xp.reshape(atype, (-1,))
    vals, rows = [], []
    for t in range(ntypes):
        idx = xp.nonzero(ft == t)[0]
        d = xp.take(flat, idx, axis=0)
        vals.append(apply_net(params[f"t{t}"], d, act, embedding=False, final_linear=True)[:, 0])
        rows.append(idx)
    inv = xp.argsort(xp.concat(rows))
    return xp.reshape(xp.take(xp.concat(vals), inv, axis=0), atype.shape)


def _by_type_index(params, desc, center_idx, act):
    """Per-type nets on the rows center_idx[t] of desc [1, nloc, d] -> [1, nloc]."""
    xp = array_namespace(desc)
    vals = [apply_net(params[f"t{t}"], xp.take(desc[0], idx, axis=0), act, embedding=False,
                      final_linear=True)[:, 0] for t, idx in enumerate(center_idx)]
    inv = xp.argsort(xp.concat(list(center_idx)))
    return xp.reshape(xp.take(xp.concat(vals), inv, axis=0), (1, -1))

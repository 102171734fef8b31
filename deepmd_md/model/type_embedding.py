"""Type embedding: a learned vector per atom type (DPA-1/2/3), from the one-hot type code.

Rule (DeePMD-kit's TypeEmbedNet): E = N(I_nt), an embedding net (every layer activated, the
embedding residual rule) on the identity matrix, no bias unless `use_tebd_bias`; one extra zero
row at index nt stands for "no atom", so that padded neighbors (type -1 mapped to nt) embed to 0.

Config (descriptor keys, DeePMD-kit v3 PyTorch names): tebd_dim (int), use_tebd_bias (bool),
activation_function of the type net (`tebd_activation`, default "tanh"), resnet_dt.
"""

from __future__ import annotations

import numpy as np

from deepmd_md.model.nn import apply_net, init_net
from deepmd_md.model.xp import array_namespace


def init_params(tebd_dim: int, ntypes: int, rng: np.random.Generator, dtype,
                use_bias: bool = False, resnet_dt: bool = False, neuron=None) -> dict:
    """Parameters of the type net: one-hot [nt] -> *neuron (default [tebd_dim])."""
    sizes = [ntypes, *(neuron or [tebd_dim])]
    return init_net(rng, sizes, resnet_dt, dtype, embedding=True, bias=use_bias)


def embed_table(params: dict, ntypes: int, activation: str = "tanh"):
    """[nt + 1, tebd_dim]: row t embeds type t, the last row (padding) is 0."""
    w = params["layers"][0]["w"]
    xp = array_namespace(w)
    eye = xp.eye(ntypes, dtype=w.dtype)
    table = apply_net(params, eye, activation, embedding=True)
    return xp.concat([table, xp.zeros((1, table.shape[1]), dtype=table.dtype)], axis=0)


def lookup(table, atype):
    """table [nt + 1, d], atype [...] (int, -1 = no atom) -> [..., d]."""
    xp = array_namespace(table)
    nt = table.shape[0] - 1
    idx = xp.where(atype >= 0, atype, xp.full_like(atype, nt))
    flat = xp.take(table, xp.reshape(idx, (-1,)), axis=0)
    return xp.reshape(flat, (*atype.shape, table.shape[1]))

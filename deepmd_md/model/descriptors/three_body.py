"""The optional three-body block of DPA-2's repinit (DeePMD-kit's se_t_tebd block, "concat").

For a center i with its nnei = three_body_sel nearest neighbors inside three_body_rcut (the
prefix of the repinit list), with R_ij the normalised env rows and r_ij = R_ij[1:4]:

    c_ijk = r_ij . r_ik                                  [nnei, nnei]
    G_ijk = N([c_ijk, A_j, A_k])                         embedding net, A = type embedding
    D_i   = sum_jk c_ijk G_ijk / nnei^2                  [M]

Padded slots have r = 0 (c = 0), so they add nothing; no mask is needed.
"""

from __future__ import annotations

from deepmd_md.model import type_embedding
from deepmd_md.model.env import gather_neighbors
from deepmd_md.model.nn import activate, apply_net, has_residual, init_net
from deepmd_md.model.xp import array_namespace


def init_params(neuron: list[int], tebd_dim: int, resnet_dt: bool, rng, dtype) -> dict:
    return {"embedding": init_net(rng, [1 + 2 * tebd_dim, *neuron], resnet_dt, dtype,
                                  embedding=True)}


def compute(params: dict, rr, table, ext_atype, nlist, activation: str):
    """rr: normalised env rows [nf, nloc, nnei, 4]; table: type embedding [nt + 1, d];
    nlist [nf, nloc, nnei] -> [nf, nloc, M]."""
    xp = array_namespace(rr)
    nf, nloc, nnei = nlist.shape
    r = rr[..., 1:]
    cos = xp.matmul(r, xp.matrix_transpose(r))  # [nf, nloc, nnei, nnei]
    # an empty slot embeds like a neighbor of extended atom 0's type; its c is 0 anyway
    tj = type_embedding.lookup(table, gather_neighbors(ext_atype, nlist))  # [nf, nloc, nnei, d]
    layers = params["embedding"]["layers"]
    first, d = layers[0], tj.shape[-1]
    w = first["w"]
    if has_residual(w.shape[0], w.shape[1], True):  # the input itself is needed: build it
        shape = (nf, nloc, nnei, nnei, d)
        x = xp.concat([cos[..., None], xp.broadcast_to(tj[:, :, :, None, :], shape),
                       xp.broadcast_to(tj[:, :, None, :, :], shape)], axis=-1)
        g = apply_net(params["embedding"], x, activation, embedding=True)
    else:  # first layer on [c, A_j, A_k] as c w_c + A_j W_j + A_k W_k: no [.., nnei^2, 1+2d]
        y = (cos[..., None] * w[0] + xp.matmul(tj, w[1:1 + d])[:, :, :, None, :]
             + xp.matmul(tj, w[1 + d:])[:, :, None, :, :] + first["b"])
        y = activate(y, activation)
        g = y * first["idt"] if "idt" in first else y
        if len(layers) > 1:
            g = apply_net({"layers": layers[1:]}, g, activation, embedding=True)
    # sum_jk c_jk G_jk as one product per center (no weighted copy of G); int: exact when traced
    cw = xp.reshape(cos, (nf, nloc, 1, nnei * nnei)) / (nnei * nnei)
    out = xp.matmul(cw, xp.reshape(g, (nf, nloc, nnei * nnei, g.shape[-1])))
    return xp.reshape(out, (nf, nloc, g.shape[-1]))

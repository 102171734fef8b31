"""Repformer layers of DPA-2 (Zhang et al., npj Comput Mater 2024, "DPA-2"), array API.

Three channels per local center i: g1 [nf, nloc, d1] (atom, invariant), g2 [nf, nloc, nnei, d2]
(pair, invariant) and h2 [nf, nloc, nnei, 3] (pair, equivariant), on the neighbor slots of the
repformer's own (rcut, nsel) list. Initially g1 = act(g1 in), g2 = act(W s + b) from the
normalised s column of the environment matrix and h2 = its normalised (x, y, z) s/r columns
(direct_dist: r / rcut and (x, y, z) / rcut). Each layer reads g1 of local AND ghost atoms
(the descriptor calls `comm` before it) and updates

  g1 <- U(g1, act(M g1), conv, act(L [grrg, drrd]), attn1)     (terms per update_g1_has_*)
  g2 <- U(g2, act(L2 g2), g1g1, LN(V(A g2)))                   (not in the last layer)
  h2 <- U(h2, sum_h c_h A_h h2)                                (update_h2; not in the last layer)

where, with w_j = sw(r_ij) masked (smooth) and 1/N = 1/nsel (smooth) or 1/(count + eps):
  conv  = 1/N sum_j w_j (P g2_ij) * g1_j   (g1_out_conv; else g2_ij * (P g1_j), into the MLP)
  hg(x) = 1/N' sum_j h2_ij (w_j x_j)^T [3, d], N' = sqrt(nsel) or sqrt(count) + eps with
          use_sqrt_nnei, else as N
  grrg  = hg(g2)[:, :a]^T hg(g2) / 3 (flattened [a, d2]); drrd the same with g1_j
  g1g1  = w_j Q (g1_i * g1_j)
  A     = attention weights among a center's neighbors, from the layer's input g2 and h2, per
          head A_jk = softmax_k(q_j . k_k / sqrt(d) [x h2_j . h2_k: attn2_has_gate]) h2_j . h2_k
          / sqrt 3, the smooth form shifting logits as (l + 20) w_j w_k - 20 and weighting the
          softmax by w_j w_k; V maps the heads' A v back to d2 (update_g2_has_attn)
  attn1 = multi-head attention of g1_i over its neighbors' g1_j (same smooth form)
and U is the update rule: res_avg (sum / sqrt(n)), res_incr (u + sum / sqrt(n - 1)) or
res_residual (u + sum_k r_k * u_k, trainable r_k). The terms, their order and normalisation
were matched against DeePMD-kit 3.2 numerically (benchmarks/dp_import/dpa2.py).
"""

from __future__ import annotations

import math

import numpy as np

from deepmd_md.model.env import env_matrix, gather_rows, neighbor_vectors, real, switch
from deepmd_md.model.nn import activate
from deepmd_md.model.xp import array_namespace

EPS = 1e-4  # in the non-smooth neighbor-count normalisations
SHIFT = 20.0  # smooth attention: logits (l + SHIFT) w_j w_k - SHIFT


# -- parameters --------------------------------------------------------------------------------


def _lin(rng, nin: int, nout: int, dtype, bias: bool = True) -> dict:
    p = {"w": rng.normal(0.0, 1.0 / math.sqrt(nin + nout), (nin, nout)).astype(dtype)}
    if bias:
        p["b"] = rng.normal(0.0, 1.0, nout).astype(dtype)
    return p


def _mlp_in_dim(rf: dict) -> int:
    d1, d2, ax = rf["g1_dim"], rf["g2_dim"], rf["axis_neuron"]
    n = 0 if rf["g1_out_mlp"] else d1
    if rf["update_g1_has_conv"] and not rf["g1_out_conv"]:
        n += d2
    if rf["update_g1_has_grrg"]:
        n += d2 * ax
    if rf["update_g1_has_drrd"]:
        n += d1 * ax
    return n


def _n_updates(rf: dict, last: bool) -> tuple[int, int, int]:
    """Number of update terms (besides the old value) of g1, g2, h2 in one layer."""
    n1 = 1 + bool(rf["g1_out_mlp"]) + bool(rf["update_g1_has_attn"])
    n1 += bool(rf["update_g1_has_conv"] and rf["g1_out_conv"])
    n2 = 0 if last else 1 + bool(rf["update_g2_has_g1g1"]) + bool(rf["update_g2_has_attn"])
    nh = int(not last and rf["update_h2"])
    return n1, n2, nh


def _layer_params(rf: dict, last: bool, rng, dtype) -> dict:
    d1, d2 = rf["g1_dim"], rf["g2_dim"]
    p = {"linear1": _lin(rng, _mlp_in_dim(rf), d1, dtype)}
    if rf["update_g1_has_conv"]:
        p["proj_g1g2"] = (_lin(rng, d2, d1, dtype, bias=False) if rf["g1_out_conv"]
                          else _lin(rng, d1, d2, dtype, bias=False))
    if rf["g1_out_mlp"]:
        p["g1_self_mlp"] = _lin(rng, d1, d1, dtype)
    if rf["update_g1_has_attn"]:
        h, nh = rf["attn1_hidden"], rf["attn1_nhead"]
        p["attn1_mapq"] = _lin(rng, d1, h * nh, dtype, bias=False)
        p["attn1_mapkv"] = _lin(rng, d1, (h + d1) * nh, dtype, bias=False)
        p["attn1_head_map"] = _lin(rng, d1 * nh, d1, dtype)
    if not last:
        p["linear2"] = _lin(rng, d2, d2, dtype)
        if rf["update_g2_has_g1g1"]:
            p["proj_g1g1g2"] = _lin(rng, d1, d2, dtype, bias=False)
        h, nh = rf["attn2_hidden"], rf["attn2_nhead"]
        if rf["update_g2_has_attn"] or rf["update_h2"]:
            p["attn2_mapqk"] = _lin(rng, d2, h * 2 * nh, dtype, bias=False)
        if rf["update_g2_has_attn"]:
            p["attn2_mapv"] = _lin(rng, d2, d2 * nh, dtype, bias=False)
            p["attn2_head_map"] = _lin(rng, d2 * nh, d2, dtype)
            if rf["trainable_ln"]:
                p["attn2_lm"] = {"w": np.ones(d2, dtype), "b": np.zeros(d2, dtype)}
        if rf["update_h2"]:
            p["attn2_ev_head_map"] = _lin(rng, nh, 1, dtype, bias=False)
    if rf["update_style"] == "res_residual":
        for name, n, dim in zip(("g1", "g2", "h2"), _n_updates(rf, last), (d1, d2, 1),
                                strict=True):
            if n:
                p[f"{name}_residual"] = [_residual(rf, dim, rng, dtype) for _ in range(n)]
    return p


def _residual(rf: dict, dim: int, rng, dtype) -> np.ndarray:
    scale = rf["update_residual"]
    if rf["update_residual_init"] == "const":
        return np.full(dim, scale, dtype)
    return rng.normal(0.0, scale, dim).astype(dtype)


def init_params(rf: dict, rng, dtype) -> dict:
    n = rf["nlayers"]
    return {"g2_embd": _lin(rng, 1, rf["g2_dim"], dtype),
            "layers": [_layer_params(rf, i == n - 1, rng, dtype) for i in range(n)]}


# -- the layer ---------------------------------------------------------------------------------


def _apply(p: dict, x):
    xp = array_namespace(x)
    w = p["w"]
    y = x * w[0] if w.shape[0] == 1 else xp.matmul(x, w)
    return y + p["b"] if "b" in p else y


def _softmax(x, axis: int = -1):
    """Softmax along axis; the shift is the max of the real part (complex-step safe)."""
    xp = array_namespace(x)
    m = xp.max(real(x), axis=axis, keepdims=True)
    e = xp.exp(x - m)
    return e / xp.sum(e, axis=axis, keepdims=True)


def _layer_norm(p: dict | None, x, eps: float):
    xp = array_namespace(x)
    mu = xp.mean(x, axis=-1, keepdims=True)
    xc = x - mu
    y = xc / xp.sqrt(xp.mean(xc * xc, axis=-1, keepdims=True) + eps)
    return y if p is None else y * p["w"] + p["b"]


def _update(rf: dict, terms: list, residual: list | None):
    style = rf["update_style"]
    if style == "res_avg":
        return sum(terms[1:], terms[0]) / math.sqrt(len(terms))
    if style == "res_incr":
        return terms[0] + sum(terms[2:], terms[1]) / math.sqrt(len(terms) - 1)
    out = terms[0]
    for r, u in zip(residual, terms[1:], strict=True):
        out = out + r * u
    return out


class _Geometry:
    """Per-slot masks and weights shared by the layers: mask [nf, nloc, nnei] (bool), fmask and
    w (the switch, smooth) as floats, inv_n the 1/N of the neighbor sums ([nf, nloc, 1])."""

    def __init__(self, rf: dict, smooth: bool, nlist, sw):
        xp = array_namespace(sw)
        self.smooth = smooth
        self.mask = nlist >= 0
        self.fmask = xp.astype(self.mask, sw.dtype)
        self.sw = sw
        nnei = int(rf["nsel"])  # the list's width; from the config: under torch.jit.trace a
        # Python float made from a traced shape becomes a float32 constant
        cnt = xp.sum(self.fmask, axis=-1, keepdims=True)
        if smooth:
            self.inv_n = 1.0 / nnei
            self.inv_sym = 1.0 / (math.sqrt(nnei) if rf["use_sqrt_nnei"] else nnei)
        else:
            self.inv_n = 1.0 / (cnt + EPS)
            self.inv_sym = 1.0 / ((xp.sqrt(cnt) if rf["use_sqrt_nnei"] else cnt) + EPS)

    def weight(self, x):
        """x [nf, nloc, nnei, d] masked (and switched when smooth)."""
        w = self.sw if self.smooth else self.fmask
        return x * w[..., None]


def _grrg(hw, g, axis: int):
    """Symmetrization: hg[:, :axis]^T hg / 3, [nf, nloc, axis * d], with hg = hw^T g [nf, nloc,
    3, d] and hw = w h2 / N' (sym_weights)."""
    xp = array_namespace(g)
    hg = xp.matmul(xp.matrix_transpose(hw), g)
    out = xp.matmul(xp.matrix_transpose(hg[..., :axis]), hg) / 3.0  # [nf, nloc, axis, d]
    return xp.reshape(out, (*out.shape[:2], out.shape[2] * out.shape[3]))


def _sym_weights(geo: _Geometry, h2):
    """w h2 / N' [nf, nloc, nnei, 3]: the weights and normaliser of both symmetrizations of a
    layer applied once to the 3-wide h2 instead of to each d-wide input."""
    inv = geo.inv_sym if isinstance(geo.inv_sym, float) else geo.inv_sym[..., None]
    return geo.weight(h2) * inv


def _nsum(wrow, x):
    """1/N sum_j w_j x_j over neighbor slots: wrow = w / N as [nf, nloc, 1, nnei] (sum_weights),
    x [nf, nloc, nnei, d] -> [nf, nloc, d] (one product, no weighted copy of x)."""
    xp = array_namespace(x)
    return xp.reshape(xp.matmul(wrow, x), (x.shape[0], x.shape[1], x.shape[-1]))


def _sum_weights(geo: _Geometry):
    xp = array_namespace(geo.sw)
    w = (geo.sw if geo.smooth else geo.fmask) * geo.inv_n
    return xp.reshape(w, (w.shape[0], w.shape[1], 1, w.shape[2]))


def _attn2_weights(rf: dict, p: dict, geo: _Geometry, g2, h2):
    """[nf, nloc, nh, nnei, nnei] gated attention weights among a center's neighbors."""
    xp = array_namespace(g2)
    nf, nloc, nnei = g2.shape[:3]
    hd, nh = rf["attn2_hidden"], rf["attn2_nhead"]
    qk = xp.reshape(_apply(p["attn2_mapqk"], g2), (nf, nloc, nnei, hd, 2, nh))
    qk = xp.permute_dims(qk, (0, 1, 4, 5, 2, 3))  # [nf, nloc, 2, nh, nnei, hd]
    q, k = qk[:, :, 0, ...] / math.sqrt(hd), qk[:, :, 1, ...]
    logits = xp.matmul(q, xp.matrix_transpose(k))  # [nf, nloc, nh, nnei, nnei]
    hh = xp.matmul(h2, xp.matrix_transpose(h2))[:, :, None, ...]  # [nf, nloc, 1, nnei, nnei]
    if rf["attn2_has_gate"]:
        logits = logits * hh
    m = geo.mask
    pair = m[:, :, None, :, None] & m[:, :, None, None, :]
    if geo.smooth:
        w2 = geo.sw[:, :, None, :, None] * geo.sw[:, :, None, None, :]
        a = _softmax((logits + SHIFT) * w2 - SHIFT)
        a = xp.where(pair, a, xp.zeros_like(a)) * w2
    else:
        keys = xp.broadcast_to(m[:, :, None, None, :], logits.shape)
        a = _softmax(xp.where(keys, logits, xp.full_like(logits, -1e30)))
        a = xp.where(pair, a, xp.zeros_like(a))
    return a * hh / math.sqrt(3.0)


def _attn2_g2(rf: dict, p: dict, a, g2):
    """Multi-head application to g2: [nf, nloc, nnei, d2]."""
    xp = array_namespace(g2)
    nf, nloc, nnei, d2 = g2.shape
    nh = rf["attn2_nhead"]
    v = xp.reshape(_apply(p["attn2_mapv"], g2), (nf, nloc, nnei, d2, nh))
    v = xp.permute_dims(v, (0, 1, 4, 2, 3))  # [nf, nloc, nh, nnei, d2]
    r = xp.matmul(a, v)
    r = xp.reshape(xp.permute_dims(r, (0, 1, 3, 4, 2)), (nf, nloc, nnei, d2 * nh))
    return _apply(p["attn2_head_map"], r)


def _attn2_h2(p: dict, a, h2):
    """Equivariant application to h2: sum_h c_h (A_h h2), [nf, nloc, nnei, 3]."""
    xp = array_namespace(h2)
    r = xp.matmul(a, h2[:, :, None, ...])  # [nf, nloc, nh, nnei, 3]
    c = p["attn2_ev_head_map"]["w"][:, 0]  # [nh]
    return xp.sum(r * c[None, None, :, None, None], axis=2)


def _attn1(rf: dict, p: dict, geo: _Geometry, g1, gg1):
    """Local attention of g1_i over its neighbors' g1_j: [nf, nloc, d1]."""
    xp = array_namespace(g1)
    nf, nloc, d1 = g1.shape
    nnei = gg1.shape[2]
    hd, nh = rf["attn1_hidden"], rf["attn1_nhead"]
    q = xp.reshape(_apply(p["attn1_mapq"], g1), (nf, nloc, hd, nh))
    q = xp.permute_dims(q, (0, 1, 3, 2))[:, :, :, None, :]  # [nf, nloc, nh, 1, hd]
    kv = xp.reshape(_apply(p["attn1_mapkv"], gg1), (nf, nloc, nnei, hd + d1, nh))
    kv = xp.permute_dims(kv, (0, 1, 4, 2, 3))  # [nf, nloc, nh, nnei, hd + d1]
    k, v = kv[..., :hd], kv[..., hd:]
    logits = xp.matmul(q, xp.matrix_transpose(k)) / math.sqrt(hd)  # [nf, nloc, nh, 1, nnei]
    m = geo.mask[:, :, None, None, :]
    if geo.smooth:
        w = geo.sw[:, :, None, None, :]
        a = _softmax((logits + SHIFT) * w - SHIFT)
        a = xp.where(m, a, xp.zeros_like(a)) * w
    else:
        mm = xp.broadcast_to(m, logits.shape)
        a = _softmax(xp.where(mm, logits, xp.full_like(logits, -1e30)))
        a = xp.where(mm, a, xp.zeros_like(a))
    r = xp.matmul(a, v)  # [nf, nloc, nh, 1, d1]
    return _apply(p["attn1_head_map"], xp.reshape(r, (nf, nloc, nh * d1)))


def layer(rf: dict, p: dict, geo: _Geometry, g1_ext, g2, h2, nlist, last: bool):
    """One repformer layer: g1_ext [nf, nall, d1] -> (g1 [nf, nloc, d1], g2, h2)."""
    xp = array_namespace(g1_ext)
    act = rf["activation_function"]
    nloc = nlist.shape[1]
    g1 = g1_ext[:, :nloc, :]
    gg1 = gather_rows(g1_ext, nlist)  # [nf, nloc, nnei, d1]
    up1, mlp_in = [g1], ([] if rf["g1_out_mlp"] else [g1])
    if rf["g1_out_mlp"]:
        up1.append(activate(_apply(p["g1_self_mlp"], g1), act))
    up2, uph = [g2], [h2]
    if not last:
        up2.append(activate(_apply(p["linear2"], g2), act))
        if rf["update_g2_has_g1g1"]:
            up2.append(geo.weight(_apply(p["proj_g1g1g2"], g1[:, :, None, :] * gg1)))
        if rf["update_g2_has_attn"] or rf["update_h2"]:
            a = _attn2_weights(rf, p, geo, g2, h2)
            if rf["update_g2_has_attn"]:
                up2.append(_layer_norm(p.get("attn2_lm"), _attn2_g2(rf, p, a, g2),
                                       rf["ln_eps"]))
            if rf["update_h2"]:
                uph.append(_attn2_h2(p, a, h2))
    if rf["update_g1_has_conv"]:
        if rf["g1_out_conv"]:
            up1.append(_nsum(_sum_weights(geo), _apply(p["proj_g1g2"], g2) * gg1))
        else:  # P g1_j: the row-wise map before the gather
            pg1 = gather_rows(_apply(p["proj_g1g2"], g1_ext), nlist)
            mlp_in.append(_nsum(_sum_weights(geo), g2 * pg1))
    if rf["update_g1_has_grrg"] or rf["update_g1_has_drrd"]:
        hw = _sym_weights(geo, h2)
    if rf["update_g1_has_grrg"]:
        mlp_in.append(_grrg(hw, g2, rf["axis_neuron"]))
    if rf["update_g1_has_drrd"]:
        mlp_in.append(_grrg(hw, gg1, rf["axis_neuron"]))
    x = mlp_in[0] if len(mlp_in) == 1 else xp.concat(mlp_in, axis=-1)
    up1.append(activate(_apply(p["linear1"], x), act))
    if rf["update_g1_has_attn"]:
        up1.append(_attn1(rf, p, geo, g1, gg1))
    g1 = _update(rf, up1, p.get("g1_residual"))
    if len(up2) > 1:
        g2 = _update(rf, up2, p.get("g2_residual"))
    if len(uph) > 1:
        h2 = _update(rf, uph, p.get("h2_residual"))
    return g1, g2, h2


# -- the block ---------------------------------------------------------------------------------


def switch_weights(ext_coord, nlist, rcut_smth: float, rcut: float):
    """sw(r_ij) per slot, 0 for empty slots: [nf, nloc, nnei]."""
    xp = array_namespace(ext_coord)
    diff = neighbor_vectors(ext_coord, nlist)
    mask = nlist >= 0
    r2 = xp.sum(diff * diff, axis=-1)
    r = xp.sqrt(xp.where(mask, r2, xp.ones_like(r2)))
    return xp.where(mask, switch(r, rcut_smth, rcut), xp.zeros_like(r))


def normalised_env(stats: dict, ext_coord, ext_atype, nlist, rcut_smth: float, rcut: float):
    """(env - davg[t_i]) / dstd[t_i]: [nf, nloc, nnei, 4]."""
    xp = array_namespace(ext_coord)
    env = env_matrix(ext_coord, nlist, rcut_smth, rcut)
    nf, nloc = nlist.shape[:2]
    flat = xp.reshape(ext_atype[:, :nloc], (-1,))
    avg = xp.reshape(xp.take(stats["davg"], flat, axis=0), (nf, nloc, 1, 4))
    std = xp.reshape(xp.take(stats["dstd"], flat, axis=0), (nf, nloc, 1, 4))
    return (env - avg) / std


def compute(rf: dict, params: dict, stats: dict, ext_coord, ext_atype, nlist, g1, comm,
            smooth: bool = True):
    """The repformer stack: g1 [nf, nloc, d1] of local atoms (repinit's, transformed) ->
    g1 [nf, nloc, d1], after act(g1) and the layers. nlist: the repformer's [nf, nloc, nsel]
    (nearest first, -1 padded); comm(g1 local) -> g1 of local and ghost atoms, called before
    every layer."""
    xp = array_namespace(ext_coord)
    act = rf["activation_function"]
    if rf["direct_dist"]:  # r / rcut and (x, y, z) / rcut, 0 in empty slots
        mask = (nlist >= 0)[..., None]
        diff = xp.where(mask, neighbor_vectors(ext_coord, nlist), xp.zeros_like(ext_coord[:1, :1, None, :]))
        r2 = xp.sum(diff * diff, axis=-1, keepdims=True)
        r = xp.where(mask, xp.sqrt(xp.where(mask, r2, xp.ones_like(r2))), xp.zeros_like(r2))
        g2_in, h2 = r / rf["rcut"], diff / rf["rcut"]
    else:
        env = normalised_env(stats, ext_coord, ext_atype, nlist, rf["rcut_smth"], rf["rcut"])
        g2_in, h2 = env[..., :1], env[..., 1:]
    g2 = activate(_apply(params["g2_embd"], g2_in), act)
    sw = switch_weights(ext_coord, nlist, rf["rcut_smth"], rf["rcut"])
    geo = _Geometry(rf, smooth, nlist, sw)
    g1 = activate(g1, act)  # the incoming g1 passes the activation first
    n = len(params["layers"])
    for i, p in enumerate(params["layers"]):
        g1, g2, h2 = layer(rf, p, geo, comm(g1), g2, h2, nlist, i == n - 1)
    return g1

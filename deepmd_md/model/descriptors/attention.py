"""DPA-1's gated self-attention over the neighbors of each center (array API).

One layer on the pair embeddings G [nf, nloc, nnei, M1] of a center:

    q, k, v = split(G W_in + b_in)                     (hidden width `attn` each)
    q, k, v = q/|q|, k/|k|, v/|v|                      (normalize)
    w_jk = q_j . k_k x scaling                         (scaling = temperature, default
                                                        1 / sqrt(attn x scaling_factor))
    smooth:     w = softmax_k((w_jk + 20) sw_j sw_k - 20) sw_j sw_k   (over all slots)
    not smooth: w = softmax_k(w_jk) over real neighbors k
    w_jk = 0 for an empty slot j;  attn_dotr: w_jk *= r^_j . r^_k
    G <- LayerNorm(G + (w v) W_out + b_out)              (post-norm, as DeePMD-kit's)

(Found as DeePMD-kit's behaviour by black-box probing: the post-norm, the temperature as a
factor, and the smooth softmax over every slot, empty ones at logit -20.)
"""

from __future__ import annotations

import math

import numpy as np

from deepmd_md.model.env import real
from deepmd_md.model.xp import array_namespace

SHIFT = 20.0  # the smooth attention's logit shift
NORM_EPS = 1e-12


def init_layer(ng: int, hidden: int, rng: np.random.Generator, dtype, trainable_ln: bool) -> dict:
    def dense(nin, nout):
        return {"w": rng.normal(0.0, 1.0 / math.sqrt(nin + nout), (nin, nout)).astype(dtype),
                "b": rng.normal(0.0, 1.0, nout).astype(dtype)}

    layer = {"in_proj": dense(ng, 3 * hidden), "out_proj": dense(hidden, ng)}
    if trainable_ln:
        layer["ln"] = {"w": np.ones(ng, dtype), "b": np.zeros(ng, dtype)}
    return layer


def _l2_normalize(x):
    """x / |x| along the last axis (0 stays 0); analytic in x (complex step)."""
    xp = array_namespace(x)
    n2 = xp.sum(x * x, axis=-1, keepdims=True)
    ok = real(n2) > NORM_EPS * NORM_EPS
    n = xp.sqrt(xp.where(ok, n2, xp.ones_like(n2)))
    return xp.where(ok, x / n, x / NORM_EPS)


def _masked_softmax(w, mask_k):
    """softmax over the last axis among entries with mask_k true; 0 where none is."""
    xp = array_namespace(w)
    wr = real(w)
    low = xp.min(wr, axis=-1, keepdims=True)
    m = xp.max(xp.where(mask_k, wr, low), axis=-1, keepdims=True)
    e = xp.where(mask_k, xp.exp(xp.where(mask_k, w - m, xp.zeros_like(w))), xp.zeros_like(w))
    s = xp.sum(e, axis=-1, keepdims=True)
    return e / xp.where(real(s) > 0, s, xp.ones_like(s))


def _softmax(w):
    xp = array_namespace(w)
    e = xp.exp(w - xp.max(real(w), axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _layer_norm(x, ln, eps: float):
    xp = array_namespace(x)
    mu = xp.mean(x, axis=-1, keepdims=True)
    c = x - mu
    var = xp.mean(c * c, axis=-1, keepdims=True)
    y = c / xp.sqrt(var + eps)
    if ln is not None:
        y = y * ln["w"] + ln["b"]
    return y


def apply(cfg: dict, layers: list, gg, rr, mask, sw, smooth: bool):
    """attn_layer layers on G [nf, nloc, nnei, M1]; rr: normalised env rows [..., 4];
    mask [nf, nloc, nnei] real neighbors; sw their switch (0 when empty)."""
    xp = array_namespace(gg)
    hidden = cfg["attn"]
    temp = cfg.get("temperature")
    scale = temp if temp is not None else 1.0 / math.sqrt(hidden * cfg.get("scaling_factor", 1.0))
    eps = cfg.get("ln_eps")
    eps = 1e-5 if eps is None else float(eps)
    mask_k = mask[..., None, :]
    row = xp.astype(mask, gg.dtype)[..., None]  # empty slots j attend to nothing
    sw2 = sw[..., :, None] * sw[..., None, :]
    gate = None
    if cfg.get("attn_dotr", True):
        rhat = _l2_normalize(rr[..., 1:4])
        gate = xp.matmul(rhat, xp.matrix_transpose(rhat))
    gate = row if gate is None else gate * row
    for layer in layers:
        qkv = xp.matmul(gg, layer["in_proj"]["w"]) + layer["in_proj"]["b"]
        q, k, v = qkv[..., :hidden], qkv[..., hidden : 2 * hidden], qkv[..., 2 * hidden :]
        if cfg.get("normalize", True):
            q, k, v = _l2_normalize(q), _l2_normalize(k), _l2_normalize(v)
        w = xp.matmul(q * scale, xp.matrix_transpose(k))  # [nf, nloc, nnei, nnei]
        if smooth:
            w = _softmax((w + SHIFT) * sw2 - SHIFT) * sw2
        else:
            w = _masked_softmax(w, mask_k)
        o = xp.matmul(xp.matmul(w * gate, v), layer["out_proj"]["w"]) + layer["out_proj"]["b"]
        gg = _layer_norm(gg + o, layer.get("ln"), eps)
    return gg

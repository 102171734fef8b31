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
MAX_FREE_SCALE = 30.0  # |scale| up to which the smooth softmax skips the max


def init_layer(ng: int, hidden: int, rng: np.random.Generator, dtype, trainable_ln: bool) -> dict:
    def dense(nin, nout):
        return {"w": rng.normal(0.0, 1.0 / math.sqrt(nin + nout), (nin, nout)).astype(dtype),
                "b": rng.normal(0.0, 1.0, nout).astype(dtype)}

    layer = {"in_proj": dense(ng, 3 * hidden), "out_proj": dense(hidden, ng)}
    if trainable_ln:
        layer["ln"] = {"w": np.ones(ng, dtype), "b": np.zeros(ng, dtype)}
    return layer


def _rsqrt(a):
    """1 / sqrt(a), elementwise, written sqrt(a) / a: Paddle 3.3's double backward segfaults
    on c / a with a constant c when a does not depend on the parameters (its
    DivideDoubleGradKernel; the pair gate's r^ depends on coordinates only)."""
    xp = array_namespace(a)
    return xp.sqrt(a) / a


def _inv_norm(x, scale: float = 1.0):
    """scale / |x| along the last axis, [..., 1] (scale / NORM_EPS where |x| <= NORM_EPS):
    x times it is x normalised (0 stays 0) with one full-size multiply, where x / |x| with the
    guard as a where costs two divisions, a select and their derivatives (analytic in x:
    complex step)."""
    xp = array_namespace(x)
    n2 = xp.sum(x * x, axis=-1, keepdims=True)
    ok = real(n2) > NORM_EPS * NORM_EPS
    inv = _rsqrt(xp.where(ok, n2, xp.ones_like(n2)))
    return xp.where(ok, inv * scale if scale != 1.0 else inv,
                    xp.full_like(n2, scale / NORM_EPS))


def _masked_softmax(w, mask_k):
    """softmax over the last axis among entries with mask_k true; 0 where none is."""
    xp = array_namespace(w)
    wr = real(w)
    low = xp.min(wr, axis=-1, keepdims=True)
    m = xp.max(xp.where(mask_k, wr, low), axis=-1, keepdims=True)
    e = xp.where(mask_k, xp.exp(xp.where(mask_k, w - m, xp.zeros_like(w))), xp.zeros_like(w))
    s = xp.sum(e, axis=-1, keepdims=True)
    return e / xp.where(real(s) > 0, s, xp.ones_like(s))


def _layer_norm(x, ln, eps: float):
    xp = array_namespace(x)
    mu = xp.mean(x, axis=-1, keepdims=True)
    c = x - mu
    var = xp.mean(c * c, axis=-1, keepdims=True)
    y = c * _rsqrt(var + eps)  # one full-size multiply, not a division
    if ln is not None:
        y = y * ln["w"] + ln["b"]
    return y


def apply(cfg: dict, layers: list, gg, rr, mask, sw, smooth: bool):
    """attn_layer layers on G [nf, nloc, nnei, M1]; rr: normalised env rows [..., 4];
    mask [nf, nloc, nnei] real neighbors; sw their switch (0 when empty).

    Written for speed (training differentiates all of it twice), the same math as the module
    docstring: what does not depend on the layer (angle gate, logit shift) is built once; q, k,
    v come from three products (slices of one [., 3 attn] product cost a zero-filled full-size
    tensor each in the backward); the normalisation, the logit scale and the smooth form's
    switches are one multiply by a [..., 1] factor (q_j sw_j . k_k sw_k = w_jk sw_j sw_k; the
    weights' sw_k goes on v W, their sw_j on output row j, so no [nnei, nnei] product but the
    angle gate's); v's normalisation and out_proj go before the [nnei, nnei] product
    ((w v) W = w (v W), attn -> M1 columns); the smooth softmax's normaliser divides the
    [nnei, M1] result instead of the weights, and with unit q, k (|logit| <= 20 + |scale|)
    it needs no max subtraction."""
    xp = array_namespace(gg)
    hidden = cfg["attn"]
    temp = cfg.get("temperature")
    scale = temp if temp is not None else 1.0 / math.sqrt(hidden * cfg.get("scaling_factor", 1.0))
    eps = cfg.get("ln_eps")
    eps = 1e-5 if eps is None else float(eps)
    normalize = cfg.get("normalize", True)
    gate = None  # the [nnei, nnei] factor on the weights, layer-invariant
    if cfg.get("attn_dotr", True):
        rhat = _l2_unit(rr[..., 1:4])
        gate = xp.matmul(rhat, xp.matrix_transpose(rhat))
    if smooth:
        # sw_j sw_k on the logits and on the weights as [..., 1] factors of q, k and v W (row
        # j's output times sw_j): no [nnei, nnei] product; sw_j = 0 already empties slot j
        swc = sw[..., None]
        shift = SHIFT * (swc * sw[..., None, :]) - SHIFT  # (w + 20) sw2 - 20 = w sw2 + shift
        # unit q and k bound the logits to [-20 - |scale|, |scale|]: exp cannot overflow
        bounded = normalize and abs(scale) <= MAX_FREE_SCALE
    else:
        row = xp.astype(mask, gg.dtype)[..., None]  # empty slots j attend to nothing
        gate = row if gate is None else gate * row
        mask_k = mask[..., None, :]
    for layer in layers:
        w_in, b_in = layer["in_proj"]["w"], layer["in_proj"]["b"]
        q, k, v = (xp.matmul(gg, w_in[:, i * hidden:(i + 1) * hidden])
                   + b_in[i * hidden:(i + 1) * hidden] for i in range(3))
        vw = xp.matmul(v, layer["out_proj"]["w"])  # [..., nnei, M1]
        fq = _inv_norm(q, scale) if normalize else scale
        fk = _inv_norm(k) if normalize else None
        fv = _inv_norm(v) if normalize else None
        if smooth:
            fq, fk, fv = (swc if f is None else f * swc for f in (fq, fk, fv))
        q = q * fq
        k = k if fk is None else k * fk
        vw = vw if fv is None else vw * fv
        w = xp.matmul(q, xp.matrix_transpose(k))  # [nf, nloc, nnei, nnei]
        if smooth:
            w = w + shift
            if not bounded:
                w = w - xp.max(real(w), axis=-1, keepdims=True)
            e = xp.exp(w)
            o = xp.matmul(e if gate is None else e * gate, vw)
            o = o * (swc / xp.sum(e, axis=-1, keepdims=True))
        else:
            o = xp.matmul(_masked_softmax(w, mask_k) * gate, vw)
        gg = _layer_norm(gg + o + layer["out_proj"]["b"], layer.get("ln"), eps)
    return gg


def _l2_unit(x):
    """x / |x| along the last axis (0 stays 0)."""
    return x * _inv_norm(x)

"""Dense networks as pure functions of a parameter dict (array API).

A network's parameters are {"layers": [{"w": [nin, nout], "b": [nout], "idt": [nout]?}, ...]}.
Layer rule (DeePMD convention): y = act(x @ w + b) * idt; embedding nets add the input back when
nout == nin or nout == 2 nin (the input concatenated with itself), fitting nets when nout == nin.
With resnet_dt, only layers with such a residual get a timestep `idt` (as DeePMD-kit's models:
its first fitting layer, descriptor -> n1, has none); a layer that has one always applies it.
"""

from __future__ import annotations

import math

import numpy as np

from deepmd_md.model.env import real
from deepmd_md.model.xp import array_namespace

ACTIVATIONS = ("tanh", "relu", "relu6", "softplus", "sigmoid", "gelu", "gelu_tf", "linear", "none",
               "silu", "silut", "custom_silu")  # silut / custom_silu take ":threshold" (default 3)


def _silu(x):
    """x sigmoid(x) with sigmoid(x) = (1 + tanh(x/2)) / 2: no overflow for any x, analytic
    (complex-step safe), one saved tanh for autograd (the angle tensors of DPA-3 make
    activation memory matter)."""
    xp = array_namespace(x)
    return 0.5 * x * (1.0 + xp.tanh(0.5 * x))


def _silut(x, threshold: float):
    """DeePMD-kit's "silut:t" ("custom_silu:t"): silu(x) below t, above it
    tanh(silu'(t) (x - t)) + silu(t) (C1 at t: equal value and slope)."""
    xp = array_namespace(x)
    sig_t = 1.0 / (1.0 + math.exp(-threshold))
    slope = sig_t + threshold * sig_t * (1.0 - sig_t)
    # both branches are finite everywhere (tanh saturates), so no clamping is needed
    return xp.where(real(x) < threshold, _silu(x),
                    xp.tanh(slope * (x - threshold)) + threshold * sig_t)


def activate(x, name: str):
    """Elementwise activation; all are analytic except relu/relu6 (complex-step safe: tanh, gelu,
    silu; silut is analytic on each side of its threshold, compared on the real part)."""
    xp = array_namespace(x)
    if name == "tanh":
        return xp.tanh(x)
    if name in ("gelu", "gelu_tf"):  # tanh approximation, as DeePMD-kit
        return 0.5 * x * (1.0 + xp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))
    if name == "relu":
        return xp.where(x > 0, x, xp.zeros_like(x))
    if name == "relu6":
        return xp.clip(x, 0.0, 6.0)
    if name == "softplus":
        return xp.log(1.0 + xp.exp(-xp.abs(x))) + xp.where(x > 0, x, xp.zeros_like(x))
    if name == "sigmoid":
        return 1.0 / (1.0 + xp.exp(-x))
    if name in ("linear", "none"):
        return x
    if name == "silu":
        return _silu(x)
    base, _, arg = name.partition(":")
    if base in ("silut", "custom_silu"):
        return _silut(x, float(arg) if arg else 3.0)
    raise ValueError(f"unknown activation {name!r}")


def has_residual(nin: int, nout: int, embedding: bool) -> bool:
    return nout == nin or (embedding and nout == 2 * nin)


def init_net(rng: np.random.Generator, sizes: list[int], resnet_dt: bool, dtype, final_linear=False,
             embedding: bool = False, bias: bool = True):
    """Random parameters of a net with layer widths `sizes` = [nin, n1, n2, ...] (NumPy arrays).
    bias=False: layers without "b" (y = act(x @ w))."""
    layers = []
    for i, (nin, nout) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = final_linear and i == len(sizes) - 2
        layer = {
            "w": rng.normal(0.0, 1.0 / math.sqrt(nin + nout), (nin, nout)).astype(dtype),
            # every bias ~ N(0, 1), the last fitting layer's too, as DeePMD-kit draws them
            "b": rng.normal(0.0, 1.0, nout).astype(dtype),
        }
        if not bias:
            del layer["b"]
        if resnet_dt and not last and has_residual(nin, nout, embedding):
            layer["idt"] = rng.normal(0.1, 0.001, nout).astype(dtype)
        layers.append(layer)
    return {"layers": layers}


def apply_net(params: dict, x, activation: str, embedding: bool, final_linear: bool = False):
    """Apply a net to x: [..., nin] -> [..., nout]. See module docstring for the residual rule."""
    xp = array_namespace(x)
    layers = params["layers"]
    for i, layer in enumerate(layers):
        w = layer["w"]
        nin, nout = w.shape
        # one input (the embedding's s): an outer product, exact as a broadcast multiply, which
        # fuses with bias and activation, where a K=1 GEMM is memory-bound BLAS work
        y = x * w[0] if nin == 1 else xp.matmul(x, w)
        if "b" in layer:
            y = y + layer["b"]
        if final_linear and i == len(layers) - 1:
            x = y
            continue
        y = activate(y, activation)
        if "idt" in layer:
            y = y * layer["idt"]
        if nout == nin:
            y = y + x
        elif has_residual(nin, nout, embedding):  # y + [x, x], as a broadcast: no copy of x
            shape = y.shape
            y = xp.reshape(xp.reshape(y, (*shape[:-1], 2, nin)) + x[..., None, :], shape)
        x = y
    return x


def apply_embedding_fm(params: dict, x, activation: str):
    """An embedding net on feature-major input: x [nin, P] -> [nout, P], apply_net's layer
    rule transposed (y = w^T x + b). Why: BLAS runs the embedding's long, thin products
    (P pairs by 25-100 features) 1.2-1.4x faster with the pairs as the fast axis
    (benchmarks/gemm_layout.py)."""
    xp = array_namespace(x)
    for layer in params["layers"]:
        w, b = layer["w"], layer["b"]
        nin, nout = w.shape
        y = (w[0][:, None] * x if nin == 1 else xp.matmul(xp.matrix_transpose(w), x)) + b[:, None]
        y = activate(y, activation)
        if "idt" in layer:
            y = y * layer["idt"][:, None]
        if nout == nin:
            y = y + x
        elif has_residual(nin, nout, True):  # y + [x; x] along the feature axis
            npair = x.shape[1]  # not -1: a reshape cannot infer it when there are no pairs
            y = xp.reshape(xp.reshape(y, (2, nin, npair)) + x[None, ...], (nout, npair))
        x = y
    return x

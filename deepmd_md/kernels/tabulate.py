"""Tabulated embedding nets: the reference (oracle) of kernels/tabulate.cc and the entry points
the model math calls.

A 1-input embedding net N: s -> R^M becomes piecewise quintic polynomials: on interval l,
u = (s - x_l) / h_l, G_m(s) = sum_k coef[l, k, m] u^k, matching N, N' and N'' at both knots
(so G is C2). Two uniform tables as DeePMD-kit's `dp compress`: [lo, up) with stride h1 =
`step`, [up, hi) with stride h2 = 10 h1, hi = extrapolate x up; outside [lo, hi) the net itself.

A table `tab` is {"coef": [n1 + n2, 6, M] (model dtype), "grid": [8] f64 (lo, up, hi, h1, h2,
n1, n2, check_frequency), "net": flat f64 (pack_net)}, stored in the descriptor's statistics.
`tabulate` and `fusion` dispatch through KERNELS: the first entry whose framework is imported
and whose predicate accepts the array runs (PyTorch tensors: the C++ ops dpmd::tabulate*,
TensorFlow arrays: DpmdTabulate* of libdpmd_tf_ops.so, Paddle tensors and traced programs:
dpmd_tabulate* of libdpmd_paddle_ops.so, each the kernel of kernels/tabulate.cc);
any other array (NumPy, complex-step included; JAX) runs the array-API reference below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deepmd_md.kernels import first_kernel
from deepmd_md.model.env import real
from deepmd_md.model.nn import apply_embedding_fm
from deepmd_md.model.xp import array_namespace

ACT_CODES = {"linear": 0, "none": 0, "tanh": 1, "relu": 2, "relu6": 3, "softplus": 4,
             "sigmoid": 5, "gelu": 6, "gelu_tf": 6, "silu": 7, "silut": 8, "custom_silu": 8}


def act_code(name: str) -> tuple[int, float]:
    """(code, parameter) of an activation name ("silut:2.5" -> (8, 2.5)); KeyError if unknown."""
    base, _, arg = name.partition(":")
    code = ACT_CODES[base]
    return code, (float(arg) if arg else 3.0) if code == 8 else 0.0


def pack_net(net: dict, activation: str) -> np.ndarray:
    """The flat f64 net of kernels/tabulate.h: [1, act, act_param, nlayers, (nin, nout, has_idt)
    per layer, then w, b(, idt) per layer]."""
    layers = net["layers"]
    code, param = act_code(activation)
    head = [1.0, code, param, len(layers)]
    body = []
    for layer in layers:
        w = np.asarray(layer["w"], np.float64)
        head += [w.shape[0], w.shape[1], 1.0 if "idt" in layer else 0.0]
        body += [w.ravel(), np.asarray(layer["b"], np.float64)]
        if "idt" in layer:
            body.append(np.asarray(layer["idt"], np.float64))
    return np.concatenate([np.asarray(head, np.float64), *body])


def make_grid(lower: float, upper: float, step: float, extrapolate: float,
              check_frequency: int = -1) -> np.ndarray:
    """grid [8] of a table covering [lower, upper] with stride `step` and [upper, extrapolate x
    upper] with 10 x step (upper rounded up to a whole number of strides)."""
    n1 = max(1, math.ceil((upper - lower) / step - 1e-9))
    up = lower + n1 * step
    h2 = 10.0 * step
    n2 = max(0, math.ceil((extrapolate * upper - up) / h2 - 1e-9)) if extrapolate > 1 else 0
    return np.array([lower, up, up + n2 * h2, step, h2, n1, n2, check_frequency], np.float64)


def knots(grid) -> np.ndarray:
    lo, up, _, h1, h2, n1, n2, _ = (float(v) for v in grid)
    n1, n2 = int(n1), int(n2)
    return np.concatenate([lo + h1 * np.arange(n1), up + h2 * np.arange(n2 + 1)])


# -- jets of the net (value, first and second derivative) ------------------------------------------


def _act_jet(name: str, z):
    """f(z), f'(z), f''(z) elementwise."""
    code, p = act_code(name)
    if code == 0:
        return z, np.ones_like(z), np.zeros_like(z)
    if code == 1:
        t = np.tanh(z)
        return t, 1 - t * t, -2 * t * (1 - t * t)
    if code == 2:
        pos = z > 0
        return np.where(pos, z, 0.0), pos * 1.0, np.zeros_like(z)
    if code == 3:
        inside = (z > 0) & (z < 6)
        return np.clip(z, 0.0, 6.0), inside * 1.0, np.zeros_like(z)
    if code in (4, 5):
        sg = 1 / (1 + np.exp(-z))
        if code == 4:
            return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0), sg, sg * (1 - sg)
        return sg, sg * (1 - sg), sg * (1 - sg) * (1 - 2 * sg)
    if code == 6:
        k, c = math.sqrt(2 / math.pi), 0.044715
        g, g1, g2 = k * (z + c * z ** 3), k * (1 + 3 * c * z * z), 6 * k * c * z
        t = np.tanh(g)
        dt = 1 - t * t
        return (0.5 * z * (1 + t), 0.5 * (1 + t) + 0.5 * z * dt * g1,
                dt * g1 + 0.5 * z * dt * (g2 - 2 * t * g1 * g1))
    sg = 0.5 * (1 + np.tanh(0.5 * z))
    ds = sg * (1 - sg)
    silu = (z * sg, sg + z * ds, 2 * ds + z * ds * (1 - 2 * sg))
    if code == 7:
        return silu
    st = 1 / (1 + math.exp(-p))
    slope = st + p * st * (1 - st)
    t = np.tanh(slope * (z - p))
    above = (t + p * st, slope * (1 - t * t), -2 * slope * slope * t * (1 - t * t))
    return tuple(np.where(z < p, a, b) for a, b in zip(silu, above, strict=True))


def net_jet(net: dict, activation: str, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, N', N'') of an embedding net at s [n]: each [n, M] (f64, forward-mode)."""
    x = np.asarray(s, np.float64)[:, None]
    x1, x2 = np.ones_like(x), np.zeros_like(x)
    for layer in net["layers"]:
        w = np.asarray(layer["w"], np.float64)
        nin, nout = w.shape
        a, a1, a2 = x @ w + np.asarray(layer["b"], np.float64), x1 @ w, x2 @ w
        f, f1, f2 = _act_jet(activation, a)
        y, y1, y2 = f, f1 * a1, f2 * a1 * a1 + f1 * a2
        if "idt" in layer:
            idt = np.asarray(layer["idt"], np.float64)
            y, y1, y2 = y * idt, y1 * idt, y2 * idt
        if nout in (nin, 2 * nin):
            rep = nout // nin
            y, y1, y2 = y + np.tile(x, rep), y1 + np.tile(x1, rep), y2 + np.tile(x2, rep)
        x, x1, x2 = y, y1, y2
    return x, x1, x2


def build_table(net: dict, activation: str, grid) -> np.ndarray:
    """coef [n1 + n2, 6, M] f64: quintic Hermite interpolation of the net's jets at the knots
    (the powers outer: the C++ loops over the M outputs vectorize)."""
    xk = knots(grid)
    y, y1, y2 = net_jet(net, activation, xk)
    h = np.diff(xk)[:, None]
    c0, c1, c2 = y[:-1], h * y1[:-1], 0.5 * h * h * y2[:-1]
    a = y[1:] - (c0 + c1 + c2)
    b = h * y1[1:] - (c1 + 2 * c2)
    c = h * h * y2[1:] - 2 * c2
    return np.stack([c0, c1, c2, 10 * a - 4 * b + 0.5 * c, -15 * a + 7 * b - c,
                     6 * a - 3 * b + 0.5 * c], axis=1)


def build(net: dict, activation: str, grid, dtype) -> dict:
    """The table dict of one net: coef by the C++ kernel when the torch ops are loaded (else
    this reference; tests/compress check they agree), in the model dtype."""
    coef = None
    try:
        import torch

        from deepmd_md.backends.torch.ops import load_ops

        load_ops(required=False)
        if hasattr(torch.ops.dpmd, "tabulate_build"):
            coef = torch.ops.dpmd.tabulate_build(torch.as_tensor(pack_net(net, activation)),
                                                 torch.as_tensor(np.asarray(grid))).numpy()
    except ImportError:
        pass
    if coef is None:
        coef = build_table(net, activation, grid)
    return {"coef": coef.astype(dtype), "grid": np.asarray(grid, np.float64),
            "net": pack_net(net, activation)}


# -- evaluation (array API): the reference of the C++ ops -------------------------------------------


def _reference_values(tab: dict, net: dict, activation: str, s):
    """G [n, M] at s [n] (any array namespace; complex s for the complex-step reference):
    the table inside [lo, hi), the net outside."""
    xp = array_namespace(s)
    coef, g = tab["coef"], tab["grid"]
    lo, up, hi, h1, h2 = (xp.astype(g[i], s.dtype) for i in range(5))
    n1, n2 = xp.astype(g[5], xp.int64), xp.astype(g[6], xp.int64)
    sr = real(s)
    in1 = sr < real(up)
    x = xp.where(in1, (s - lo) / h1, (s - up) / h2)
    base = xp.floor(real(x))
    inside = (sr >= real(lo)) & (sr < real(hi))
    base = xp.where(inside, base, xp.zeros_like(base))
    k = xp.astype(base, xp.int64)
    k = xp.where(in1, xp.minimum(k, n1 - 1), xp.minimum(k, xp.maximum(n2 - 1, 0 * n2)))
    idx = xp.where(inside, xp.where(in1, k, k + n1), xp.zeros_like(k))
    u = x - xp.astype(k, x.dtype)
    c = xp.take(coef, idx, axis=0)  # [n, 6, M]
    u = u[:, None]
    val = c[:, 0] + u * (c[:, 1] + u * (c[:, 2] + u * (c[:, 3] + u * (c[:, 4] + u * c[:, 5]))))
    if not _maybe_any(xp, ~inside):
        return val
    exact = xp.matrix_transpose(apply_embedding_fm(net, s[None, :], activation))
    return xp.where(inside[:, None], val, exact)


def _maybe_any(xp, mask) -> bool:
    """any(mask), True when it cannot be known while tracing (JAX): the reference then
    evaluates the net everywhere and keeps it where needed."""
    try:
        return bool(xp.any(mask))
    except Exception:  # a tracer (jax.errors.TracerBoolConversionError) has no concrete value
        return True


# -- dispatch: framework kernels ---------------------------------------------------------------------


@dataclass(frozen=True)
class Kernels:
    """The compiled ops of one framework. Every field but `framework` is "module:function",
    imported on first use; an entry is asked only once `framework` is imported (an array of it
    cannot exist before), so dispatching never imports a framework.

    accepts(x) -> bool: x (s) is this framework's array and its ops are available.
    tabulate(tab, net, activation, s) / fusion(tab, net, activation, s, em): as below."""

    framework: str
    accepts: str
    tabulate: str
    fusion: str


KERNELS: list[Kernels] = []


def register(kernels: Kernels) -> None:
    """Add a framework's ops (before the reference; later entries are asked later)."""
    KERNELS.append(kernels)


def _kernel(kind: str, s):
    """The registered function `kind` ("tabulate" or "fusion") for array s, or None."""
    return first_kernel(KERNELS, s, kind)


register(Kernels("torch", "array_api_compat:is_torch_array",
                 "deepmd_md.kernels.tabulate:_torch_tabulate",
                 "deepmd_md.kernels.tabulate:_torch_fusion"))
register(Kernels("tensorflow", "deepmd_md.backends.tensorflow.ops:accepts_tabulate",
                 "deepmd_md.backends.tensorflow.ops:tabulate",
                 "deepmd_md.backends.tensorflow.ops:fusion"))
register(Kernels("paddle", "deepmd_md.backends.paddle.ops:accepts_tabulate",
                 "deepmd_md.backends.paddle.ops:tabulate", "deepmd_md.backends.paddle.ops:fusion"))


def tabulate(tab: dict, net: dict, activation: str, s):
    """G [*, M] at s [*] (dpmd::tabulate)."""
    fn = _kernel("tabulate", s)
    if fn is not None:
        return fn(tab, net, activation, s)
    xp = array_namespace(s)
    flat = xp.reshape(s, (-1,))
    g = _reference_values(tab, net, activation, flat)
    return xp.reshape(g, (*s.shape, g.shape[-1]))


def fusion(tab: dict, net: dict, activation: str, s, em):
    """sum_j G(s[b, j])^T em[b, j] : [B, M, C] for s [B, J], em [B, J, C]
    (dpmd::tabulate_fusion)."""
    fn = _kernel("fusion", s)
    if fn is not None:
        return fn(tab, net, activation, s, em)
    xp = array_namespace(s)
    nb, nj = s.shape
    g = _reference_values(tab, net, activation, xp.reshape(s, (-1,)))
    g = xp.reshape(g, (nb, nj, g.shape[-1]))
    return xp.matmul(xp.matrix_transpose(g), em)


def _torch_tabulate(tab: dict, net: dict, activation: str, s):
    import torch

    _torch_ops()
    return torch.ops.dpmd.tabulate(tab["coef"], tab["grid"], tab["net"], s)


def _torch_fusion(tab: dict, net: dict, activation: str, s, em):
    import torch

    _torch_ops()
    return torch.ops.dpmd.tabulate_fusion(tab["coef"], tab["grid"], tab["net"], s, em)


def _torch_ops() -> None:
    import torch

    from deepmd_md.backends.torch.ops import OPS_LIB, load_ops

    load_ops()
    if not hasattr(torch.ops.dpmd, "tabulate_fusion"):
        raise RuntimeError(f"{OPS_LIB} has no dpmd::tabulate ops (built before compressed models): "
                           "reinstall deepmd_md with its C++ parts (`make install`)")

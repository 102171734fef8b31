"""kernels/tabulate.cc (through the torch ops) against the NumPy reference, and the reference
against the net itself: jets, tables, C2 continuity at knots, the fused kernel and its
backward, the net beyond the tables, the overflow report, no silent second derivative."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_model

from deepmd_md.kernels import tabulate as T
from deepmd_md.model.nn import apply_embedding_fm

SMOOTH = ("tanh", "gelu", "silu", "sigmoid", "softplus")
ALL = (*SMOOTH, "silut:2.0", "relu", "linear")


def _net(act: str = "tanh", neuron=(4, 8, 16), seed: int = 1):
    """A 1 -> 4 -> 8 -> 16 embedding net with resnet timesteps (both residual kinds: [x, x])."""
    return make_model(neuron=neuron, resnet_dt=True, activation=act, seed=seed)[
        "params"]["descriptor"]["t0"]


def _net_values(net, act, s):
    return apply_embedding_fm(net, np.asarray(s)[None, :], act).T


@pytest.mark.parametrize("act", ALL)
def test_jets_are_the_nets_derivatives(act):
    """N from the jet = the model's own net; N' = central difference of N; N'' = central
    difference of N' (h = 1e-6 relative error ~1e-9 on these O(1) nets)."""
    net = _net(act)
    s = np.random.default_rng(0).uniform(-2, 12, 300)
    y, y1, y2 = T.net_jet(net, act, s)
    np.testing.assert_allclose(y, _net_values(net, act, s), rtol=0, atol=1e-13)
    h = 1e-6
    fd1 = (_net_values(net, act, s + h) - _net_values(net, act, s - h)) / (2 * h)
    fd2 = (T.net_jet(net, act, s + h)[1] - T.net_jet(net, act, s - h)[1]) / (2 * h)
    kink = act in ("relu", "silut:2.0")  # a kink within h of a sample changes the difference
    ok = np.abs(y1 - fd1) < 1e-7 * (1 + np.abs(y1))
    assert ok.all() if not kink else ok.mean() > 0.98
    ok2 = np.abs(y2 - fd2) < 1e-6 * (1 + np.abs(y2))
    assert ok2.all() if not kink else ok2.mean() > 0.98


@pytest.mark.parametrize("act", ALL)
def test_cpp_table_equals_reference(ops, act):
    import torch

    net = _net(act)
    grid = T.make_grid(-1.1, 7.3, 0.02, 5)
    ref = T.build_table(net, act, grid)
    got = ops.tabulate_build(torch.as_tensor(T.pack_net(net, act)), torch.as_tensor(grid)).numpy()
    assert got.shape == ref.shape == (int(grid[5] + grid[6]), 6, 16)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def _poly(coef, u, h):
    """value, d/ds, d2/ds2 of the interval polynomials at u: coef [L, 6, M], h [L]."""
    coef = np.moveaxis(coef, 1, -1)
    k = np.arange(6)
    v = np.sum(coef * u ** k, -1)
    d1 = np.sum(coef[..., 1:] * k[1:] * u ** (k[1:] - 1), -1) / h[:, None]
    d2 = np.sum(coef[..., 2:] * k[2:] * (k[2:] - 1) * u ** (k[2:] - 2), -1) / h[:, None] ** 2
    return v, d1, d2


@pytest.mark.parametrize("act", SMOOTH)
def test_table_is_c2_at_knots(act):
    """Left and right polynomials agree in value, slope and curvature at every inner knot,
    the joint of the two tables included, and equal the net's jets there."""
    net = _net(act)
    grid = T.make_grid(-1.0, 6.0, 0.05, 3)
    coef = T.build_table(net, act, grid)
    h = np.diff(T.knots(grid))
    left = _poly(coef[:-1], 1.0, h[:-1])
    right = _poly(coef[1:], 0.0, h[1:])
    jets = T.net_jet(net, act, T.knots(grid)[1:-1])
    for a, b, j, what in zip(left, right, jets, ("value", "slope", "curvature"), strict=True):
        scale = 1 + np.abs(j)
        assert np.max(np.abs(a - b) / scale) < 1e-9, what
        assert np.max(np.abs(a - j) / scale) < 1e-9, what
    n1 = int(grid[5])
    assert np.isclose(T.knots(grid)[n1], grid[1]) and np.isclose(h[n1], 10 * h[n1 - 1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ops_equal_reference_with_gradients(ops, dtype):
    """dpmd::tabulate and dpmd::tabulate_fusion, forward and backward, against the array-API
    reference run by torch autograd; s inside table 1, table 2, below lo and beyond hi (the
    net)."""
    import torch

    act = "tanh"
    net = _net(act)
    grid = T.make_grid(-1.0, 4.0, 0.01, 3)
    tab = {k: torch.as_tensor(v) for k, v in T.build(net, act, grid, dtype).items()}
    rng = np.random.default_rng(1)
    s_np = np.concatenate([rng.uniform(-1, 4, 40), rng.uniform(4, 12, 20), [-3.0, 20.0, 55.0,
                                                                             -1.0, 12.0]])
    s_np = s_np.reshape(13, 5).astype(dtype)
    em_np = rng.normal(size=(13, 5, 4)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-5

    def inputs():
        return (torch.tensor(s_np, requires_grad=True), torch.tensor(em_np, requires_grad=True))

    s, em = inputs()
    out = T.fusion(tab, net, act, s, em)  # the C++ op
    gs, gem = torch.autograd.grad((out * out).sum(), [s, em])
    rs, rem = inputs()
    tnet = {"layers": [{k: torch.as_tensor(v, dtype=s.dtype) for k, v in layer.items()}
                       for layer in net["layers"]]}
    g = T._reference_values(tab, tnet, act, rs.reshape(-1)).reshape(13, 5, 16)
    ref = torch.matmul(g.transpose(1, 2), rem)
    rgs, rgem = torch.autograd.grad((ref * ref).sum(), [rs, rem])
    for a, b in ((out, ref), (gs, rgs), (gem, rgem)):
        a, b = a.detach(), b.detach()
        assert float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))
    # the plain table lookup (se_atten strip)
    s1 = torch.tensor(s_np, requires_grad=True)
    v = T.tabulate(tab, net, act, s1)
    (d,) = torch.autograd.grad(v.sum(), [s1])
    s2 = torch.tensor(s_np, requires_grad=True)
    v2 = T._reference_values(tab, tnet, act, s2.reshape(-1)).reshape(13, 5, 16)
    (d2,) = torch.autograd.grad(v2.sum(), [s2])
    v, v2 = v.detach(), v2.detach()
    assert float((v - v2).abs().max()) <= tol * max(1.0, float(v2.abs().max()))
    assert float((d - d2).abs().max()) <= tol * max(1.0, float(d2.abs().max()))
    # outside [lo, hi): the net's values exactly (no clamp)
    exact = _net_values(net, act, s_np.ravel()[-5:].astype(np.float64))
    np.testing.assert_allclose(v.detach().numpy().reshape(-1, 16)[-5:], exact, rtol=0,
                               atol=tol * 10)


def test_second_derivative_is_an_error(ops):
    """First-order only, and said so: a create_graph backward then a second one raises."""
    import torch

    net = _net()
    tab = {k: torch.as_tensor(v) for k, v in
           T.build(net, "tanh", T.make_grid(-1.0, 4.0, 0.01, 3), np.float64).items()}
    s = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    em = torch.rand(3, 5, 4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(T.fusion(tab, net, "tanh", s, em).pow(2).sum(), [s],
                               create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives are not implemented"):
        torch.autograd.grad(g.sum(), [s])


def test_overflow_report(ops, capfd):
    """check_frequency 2: every second call reports the pairs beyond the data's table."""
    import torch

    net = _net()
    tab = {k: torch.as_tensor(v) for k, v in
           T.build(net, "tanh", T.make_grid(-1.0, 4.0, 0.01, 3, check_frequency=2),
                   np.float64).items()}
    s = torch.tensor([[0.5, 5.0, 30.0]], dtype=torch.float64)  # in, table 2, beyond both
    em = torch.ones(1, 3, 4, dtype=torch.float64)
    flush = {k: torch.as_tensor(v) for k, v in T.build(
        net, "tanh", T.make_grid(-1.0, 4.0, 0.01, 3, check_frequency=1), np.float64).items()}
    T.fusion(flush, net, "tanh", s[:, :1], em[:, :1])  # reports (and clears) earlier counts
    capfd.readouterr()
    for _ in range(2):
        T.fusion(tab, net, "tanh", s, em)
    err = capfd.readouterr().err
    assert ("4 neighbor(s) beyond the training-data range of the tabulated embedding in the "
            "last 2 evaluations (2 beyond the extrapolated table" in err), err


def test_bad_table_inputs(ops):
    import torch

    net = _net()
    good = T.build(net, "tanh", T.make_grid(-1.0, 4.0, 0.1, 3), np.float64)
    t = {k: torch.as_tensor(v) for k, v in good.items()}
    s, em = torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="does not match its grid"):
        ops.tabulate_fusion(t["coef"][:-1], t["grid"], t["net"], s, em)
    with pytest.raises(RuntimeError, match="dtypes differ"):
        ops.tabulate_fusion(t["coef"], t["grid"], t["net"], s.float(), em)
    with pytest.raises(RuntimeError, match="tabulated net"):
        ops.tabulate_fusion(t["coef"], t["grid"], t["net"][:-2], s, em)

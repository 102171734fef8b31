"""dpmd::env_mat and dpmd::se_a_tab (kernels/env_mat.cc), the fused environment matrix and
compressed se_e2_a block: env_mat equal to the array-API env_matrix + normalisation (values and
gradients) on water frames with empty slots and neighbors beyond rcut; gradient = central
differences; index errors; first order only; se_a_tab = env_mat then tabulate_fusion; compressed
models call them, uncompressed ones do not. Whole models (compressed = uncompressed, forces =
-dE/dx, LAMMPS = DeepPot) are checked by the other files of tests/compress."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import WATER, make_model

from deepmd_md.kernels.env_mat import kernel_for, normalised, reference

RS, RC = 0.5, 4.0


@pytest.fixture(scope="module")
def env_ops(ops):
    if not hasattr(ops, "env_mat"):
        pytest.skip("libdpmd_torch_ops.so has no dpmd::env_mat: rebuild (pip install -e .)")
    return ops


def _water_inputs():
    """Two water frames (192 atoms): extended coords, types and a type-blocked list built with
    a cutoff 1 A beyond RC (so it holds neighbors beyond rcut) and wide blocks (empty slots)."""
    import torch

    from deepmd_md.data.neighbor import extend_coord, neighbor_candidates
    from deepmd_md.model.env import format_nlist

    d = WATER / "data_0"
    coord = np.load(d / "set.000" / "coord.npy")[:2].reshape(2, -1, 3).astype(np.float64)
    box = np.load(d / "set.000" / "box.npy")[:2].astype(np.float64)
    atype = np.broadcast_to(np.loadtxt(d / "type.raw", dtype=np.int64), coord.shape[:2])
    ext, eat, _, _ = extend_coord(coord, atype, box, RC + 1.0)
    raw = neighbor_candidates(ext, coord.shape[1], RC + 1.0)
    nlist = np.asarray(format_nlist(ext, eat, raw, RC + 1.0, [30, 60]))
    dist = np.linalg.norm(ext[0][np.maximum(nlist[0], 0)] - ext[0, :192, None], axis=-1)
    assert (nlist < 0).any() and ((nlist[0] >= 0) & (dist > RC)).any()
    return torch.tensor(ext), torch.tensor(eat), torch.tensor(nlist)


def _stats(ncol: int, dtype):
    import torch

    rng = np.random.default_rng(5)
    return (torch.tensor(rng.normal(0, 0.1, (2, ncol)), dtype=dtype),
            torch.tensor(rng.uniform(0.3, 2.0, (2, ncol)), dtype=dtype))


@pytest.mark.parametrize("ncol", [4, 1])
def test_equals_array_api(env_ops, ncol):
    """fp64: rows and d(sum w . rows)/dx of the kernel = the array-API graph's, <= 1e-12."""
    import torch

    ext, eat, nlist = _water_inputs()
    davg, dstd = _stats(ncol, torch.float64)
    x1, x2 = ext.clone().requires_grad_(True), ext.clone().requires_grad_(True)
    assert kernel_for(x1) is not None
    a = normalised(x1, eat, nlist, davg, dstd, RS, RC, fused=True)
    b = reference(x2, eat, nlist, davg, dstd, RS, RC)
    assert a.shape == b.shape == (*nlist.shape, ncol)
    assert (a - b).abs().max().item() <= 1e-12
    w = torch.tensor(np.random.default_rng(1).normal(size=a.shape))
    ga, = torch.autograd.grad((a * w).sum(), x1)
    gb, = torch.autograd.grad((b * w).sum(), x2)
    assert gb.abs().max().item() > 1.0
    assert (ga - gb).abs().max().item() <= 1e-12


def test_float32(env_ops):
    """A float32 model's coordinates: float32 rows at float32 round-off of the fp64 ones."""
    import torch

    ext, eat, nlist = _water_inputs()
    davg, dstd = _stats(4, torch.float32)
    a = normalised(ext.float(), eat, nlist, davg, dstd, RS, RC, fused=True)
    b = reference(ext, eat, nlist, davg.double(), dstd.double(), RS, RC)
    assert a.dtype == torch.float32
    assert (a.double() - b).abs().max().item() < 1e-5


def test_gradient_is_central_difference(env_ops):
    """d(sum w . rows)/dx of the kernel = central differences of its own forward."""
    import torch

    ext, eat, nlist = _water_inputs()
    davg, dstd = _stats(4, torch.float64)
    w = torch.tensor(np.random.default_rng(2).normal(size=(*nlist.shape, 4)))

    def f(x):
        return (env_ops.env_mat(x, nlist, eat, davg, dstd, RS, RC) * w).sum()

    x = ext.clone().requires_grad_(True)
    g, = torch.autograd.grad(f(x), x)
    h = 1e-5
    for fr, i, c in [(0, 0, 0), (0, 7, 2), (1, 100, 1), (0, 250, 0)]:  # 250: a ghost
        xp, xm = ext.clone(), ext.clone()
        xp[fr, i, c] += h
        xm[fr, i, c] -= h
        fd = (f(xp) - f(xm)).item() / (2 * h)
        assert abs(fd - g[fr, i, c].item()) <= 1e-6 * max(1.0, abs(fd))


def test_bad_input_and_second_order(env_ops):
    import torch

    ext, eat, nlist = _water_inputs()
    davg, dstd = _stats(4, torch.float64)
    bad = nlist.clone()
    bad[0, 3, 0] = ext.shape[1]
    with pytest.raises(RuntimeError, match="neighbor index"):
        env_ops.env_mat(ext, bad, eat, davg, dstd, RS, RC)
    x = ext.clone().requires_grad_(True)
    g, = torch.autograd.grad(env_ops.env_mat(x, nlist, eat, davg, dstd, RS, RC).sum(), x,
                             create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives"):
        g.sum().backward()


def _table(m1: int = 24):
    """A tabulated random embedding net (1 -> 8 -> m1, tanh) as torch tensors."""
    import torch

    from deepmd_md.kernels.tabulate import build, make_grid
    from deepmd_md.model.nn import init_net

    net = init_net(np.random.default_rng(4), [1, 8, m1], False, np.float64, embedding=True)
    tab = build(net, "tanh", make_grid(-0.5, 3.0, 0.01, 5.0), np.float64)
    return {k: torch.as_tensor(v) for k, v in tab.items()}


@pytest.mark.parametrize("skip_empty", [True, False])
def test_se_a_block_equals_env_then_fusion(env_ops, skip_empty):
    """dpmd::se_a_tab = tabulate_fusion(rows[..., 0], rows (masked when skip_empty)) on the
    kernel's rows, values and coordinate gradients <= 1e-12."""
    import torch

    ext, eat, nlist = _water_inputs()
    davg, dstd = _stats(4, torch.float64)
    tab = _table()
    x1, x2 = ext.clone().requires_grad_(True), ext.clone().requires_grad_(True)
    a = env_ops.se_a_tab(tab["coef"], tab["grid"], tab["net"], x1, nlist, eat, davg, dstd, RS, RC,
                         skip_empty)
    rows = env_ops.env_mat(x2, nlist, eat, davg, dstd, RS, RC)
    em = rows * (nlist >= 0)[..., None] if skip_empty else rows
    nf, nloc, nnei = nlist.shape
    b = env_ops.tabulate_fusion(tab["coef"], tab["grid"], tab["net"],
                                rows[..., 0].reshape(nf * nloc, nnei),
                                em.reshape(nf * nloc, nnei, 4)).reshape(nf, nloc, -1, 4)
    assert a.shape == b.shape == (nf, nloc, 24, 4)
    assert (a - b).abs().max().item() <= 1e-12 * b.abs().max().item()
    w = torch.tensor(np.random.default_rng(3).normal(size=a.shape))
    ga, = torch.autograd.grad((a * w).sum(), x1)
    gb, = torch.autograd.grad((b * w).sum(), x2)
    assert (ga - gb).abs().max().item() <= 1e-12 * gb.abs().max().item()


def test_compressed_model_calls_kernel(env_ops, tmp_path):
    """The frozen compressed se_e2_a .pth calls dpmd::se_a_tab (env rows and tables in one op),
    a compressed se_e2_r dpmd::env_mat; the uncompressed one keeps the array graph (training
    and second derivatives need it)."""
    import torch

    from deepmd_md.compress import compress
    from deepmd_md.formats import write_model

    data = make_model()
    write_model(data, tmp_path / "p.pth")
    write_model(compress(data, 0.9), tmp_path / "c.pth")
    write_model(compress(make_model(descriptor="se_e2_r"), 0.9), tmp_path / "r.pth")

    def code(p):
        m = torch.jit.load(str(p))
        return m.atom_energy.code_with_constants[0] + m.atom_energy.blocked.code

    assert "se_a_tab" in code(tmp_path / "c.pth")
    assert "env_mat" in code(tmp_path / "r.pth")
    assert "env_mat" not in code(tmp_path / "p.pth") and "se_a_tab" not in code(tmp_path / "p.pth")


def test_tensorflow_op_equals_torch_op(env_ops):
    """DpmdSeATab (libdpmd_tf_ops.so) = dpmd::se_a_tab: values and coordinate gradients
    (through the registered gradient), float64, masked and not."""
    tf = pytest.importorskip("tensorflow")
    import torch

    from deepmd_md.backends.tensorflow.ops import load_ops
    from deepmd_md.kernels.env_mat import _tf_register_gradients

    ops = load_ops()
    if ops is None or not hasattr(ops, "dpmd_se_a_tab"):
        pytest.skip("libdpmd_tf_ops.so without DpmdSeATab: rebuild (make install)")
    _tf_register_gradients()
    ext, eat, nlist = _water_inputs()
    davg, dstd = _stats(4, torch.float64)
    tab = _table()
    w = np.random.default_rng(6).normal(size=(*nlist.shape[:2], 24, 4))
    for skip in (True, False):
        x = ext.clone().requires_grad_(True)
        a = env_ops.se_a_tab(tab["coef"], tab["grid"], tab["net"], x, nlist, eat, davg, dstd, RS,
                             RC, skip)
        ga, = torch.autograd.grad((a * torch.tensor(w)).sum(), x)
        xt = tf.constant(ext.numpy())
        with tf.GradientTape() as tape:
            tape.watch(xt)
            b = ops.dpmd_se_a_tab(*(tf.constant(tab[k].numpy()) for k in ("coef", "grid", "net")),
                                  xt, tf.constant(nlist.numpy()), tf.constant(eat.numpy()),
                                  tf.constant(davg.numpy()), tf.constant(dstd.numpy()),
                                  tf.constant([RS, RC, float(skip)], tf.float64))
            loss = tf.reduce_sum(b * w)
        gb = tape.gradient(loss, xt)
        np.testing.assert_allclose(b.numpy(), a.detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(gb.numpy(), ga.numpy(), rtol=0, atol=1e-12)

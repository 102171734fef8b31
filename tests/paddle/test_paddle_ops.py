"""deepmd_md's Paddle operators (libdpmd_paddle_ops.so, deepmd_md/backends/paddle/ops.py):

- dpmd_ghost_exchange with handle 0 as the message-passing seam of the eager Paddle model
  (DPA-2, DPA-3) = the NumPy reference (1e-10); the op and its grad op = gather / scatter-add
  by mapping, in fp64 and fp32;
- dpmd_tabulate[_fusion] and their grad ops = PyTorch's dpmd::tabulate* (the same kernel);
- frozen .json: a message-passing program holds the exchange (metadata exchange.widths, inputs
  comm and atom_weight, atom_weight weighs the energy); compressed se_e2_a and DPA-2 .json
  call the kernels and equal the compressed .pth (1e-10).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_model, model_config, random_stats, tiny_descriptors
from mixins import BackendMixin

from deepmd_md import keys
from deepmd_md.model.frames import prepare_frames

pytest.importorskip("paddle")

MP_VARIANTS = ("dpa2:small", "dpa3:default")
RMIN = 0.892451513761333  # examples/water/data/data_0 (dpmd neighbor-stat)


@pytest.fixture(scope="module", autouse=True)
def ops():
    from deepmd_md.backends.paddle.ops import load_ops

    try:
        load_ops()
    except RuntimeError as e:
        pytest.skip(str(e))


def _lower_with_op(data, ext_coord, ext_atype, nlist, mapping) -> dict:
    """forward_lower on eager Paddle with dpmd_ghost_exchange (handle 0) as the exchange."""
    from deepmd_md.backends.paddle import adapter as ad
    from deepmd_md.backends.paddle.ops import OpExchange
    from deepmd_md.model.model import atomic_outputs

    paddle = ad.paddle
    params, buffers = ad.asarray(data["params"]), ad.asarray(data["buffers"])
    ext = paddle.to_tensor(ext_coord)
    ext.stop_gradient = False
    m = paddle.to_tensor(mapping)
    comm = OpExchange(m, paddle.zeros([1], "int64"))
    ae = atomic_outputs(data["config"], params, buffers, ext, paddle.to_tensor(ext_atype),
                        paddle.to_tensor(nlist), mapping=m, comm=comm)["energy"]
    assert comm.widths, "the model did not call the exchange op"
    (g,) = paddle.grad([paddle.sum(ae)], [ext])
    return {keys.ATOM_ENERGY: ae.numpy(), keys.EXT_FORCE: -g.numpy()}


class TestAdapterWithExchangeOp(BackendMixin):
    """The eager Paddle model with the op as its exchange (one process: handle 0)."""

    variants = MP_VARIANTS

    @pytest.mark.parametrize("variant", MP_VARIANTS)
    def test_matches_reference(self, variant):
        super().test_matches_reference(variant)

    @pytest.mark.parametrize("variant", MP_VARIANTS)
    def test_forward_lower_folds_to_forward(self, variant):
        super().test_forward_lower_folds_to_forward(variant)

    def test_float32_model(self):
        pytest.skip("se_e2_a passes no messages (fp32 exchange: test_exchange_op_and_grad)")

    def evaluate(self, data, coord, atype, box):
        from deepmd_md.infer.deep_pot import fold_lower

        prep = prepare_frames(data["config"], coord, atype, box)
        mapping = prep[keys.MAPPING]
        ext = np.take_along_axis(coord, mapping[..., None], axis=1) + prep[keys.SHIFT]
        lo = _lower_with_op(data, ext, prep[keys.EXT_ATYPE], prep[keys.NLIST], mapping)
        ef = lo[keys.EXT_FORCE]
        lo[keys.EXT_VIRIAL] = (ext[..., :, None] * ef[..., None, :]).reshape(*ef.shape[:2], 9)
        return fold_lower(lo, ext, mapping, coord.shape[1])

    def evaluate_lower(self, data, ext_coord, ext_atype, nlist, raw_nlist, mapping):
        return _lower_with_op(data, ext_coord, ext_atype, nlist, mapping)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exchange_op_and_grad(dtype):
    """Forward = gather by mapping, gradient = scatter-add onto the owners, [nf, nloc, a, b]."""
    import paddle

    from deepmd_md.backends.paddle.ops import OpExchange

    rng = np.random.default_rng(0)
    nf, nloc, nall = 2, 4, 9
    g = rng.normal(size=(nf, nloc, 3, 2)).astype(dtype)
    mapping = rng.integers(0, nloc, size=(nf, nall))
    mapping[:, :nloc] = np.arange(nloc)
    w = rng.normal(size=(nf, nall, 3, 2)).astype(dtype)
    x = paddle.to_tensor(g)
    x.stop_gradient = False
    y = OpExchange(paddle.to_tensor(mapping), paddle.zeros([1], "int64"))(x)
    assert y.dtype == x.dtype and tuple(y.shape) == (nf, nall, 3, 2)
    np.testing.assert_array_equal(y.numpy(), np.take_along_axis(g, mapping[..., None, None], 1))
    (dx,) = paddle.grad([paddle.sum(y * paddle.to_tensor(w))], [x])
    ref = np.zeros_like(g)
    for f in range(nf):
        np.add.at(ref[f], mapping[f], w[f])
    np.testing.assert_allclose(dx.numpy(), ref, rtol=1e-6 if dtype == "float32" else 1e-14)


def test_tabulate_ops_equal_torch():
    """dpmd_tabulate / dpmd_tabulate_fusion and their gradients = dpmd::tabulate* (PyTorch),
    with pairs inside both tables and beyond them (the net)."""
    import paddle

    torch = pytest.importorskip("torch")
    from deepmd_md.backends.paddle import ops
    from deepmd_md.backends.torch.ops import load_ops as load_torch_ops
    from deepmd_md.kernels import tabulate as tab

    load_torch_ops()
    rng = np.random.default_rng(1)
    net = {"layers": [{"w": rng.normal(size=(1, 4)), "b": rng.normal(size=4)},
                      {"w": rng.normal(size=(4, 8)) / 2, "b": rng.normal(size=8)}]}
    table = tab.build(net, "tanh", tab.make_grid(-0.2, 1.0, 0.01, 3.0), np.float64)
    s = rng.uniform(-0.5, 4.0, size=(5, 7))
    em = rng.normal(size=(5, 7, 4))
    dout_t, dout_f = rng.normal(size=(5, 7, 8)), rng.normal(size=(5, 8, 4))

    def run(to, grad, fn, *args, dout):
        xs = [to(a) for a in args]
        out = fn(xs)
        return [out.detach().numpy()] + grad(out, xs, dout)

    def pd_grad(out, xs, dout):
        return [g.numpy() for g in paddle.grad([paddle.sum(out * paddle.to_tensor(dout))], xs)]

    def pt_grad(out, xs, dout):
        return [g.numpy() for g in torch.autograd.grad((out * torch.tensor(dout)).sum(), xs)]

    def pd(a):
        t = paddle.to_tensor(a)
        t.stop_gradient = False
        return t

    def pt(a):
        return torch.tensor(a, requires_grad=True)

    tp = {k: paddle.to_tensor(v) for k, v in table.items()}
    tt = {k: torch.tensor(v) for k, v in table.items()}
    for args, dout, fn_pd, fn_pt in (
            ((s,), dout_t, lambda x: ops.tabulate(tp, net, "tanh", *x),
             lambda x: tab.tabulate(tt, net, "tanh", *x)),
            ((s, em), dout_f, lambda x: ops.fusion(tp, net, "tanh", *x),
             lambda x: tab.fusion(tt, net, "tanh", *x))):
        a = run(pd, pd_grad, fn_pd, *args, dout=dout)
        b = run(pt, pt_grad, fn_pt, *args, dout=dout)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-13)
    # the registry sends Paddle tensors to the op
    assert tab._kernel("fusion", tp["coef"]) is ops.fusion


def _frame(nall=14, nloc=6, seed=1):
    rng = np.random.default_rng(seed)
    coord = rng.random((1, nall, 3)) * 4.0
    atype = (np.arange(nall) % 2)[None]
    mapping = (np.arange(nall) % nloc)[None]
    nlist = np.array([[[j for j in range(nall) if j != i] for i in range(nloc)]])
    return coord, atype, nlist, mapping


def test_frozen_program_holds_exchange(tmp_path):
    """A DPA-2 .json: metadata exchange.widths = the model's exchanges, the program's inputs
    include comm and atom_weight, the ops are in the program, and atom_weight weighs the
    energy (zero weights: the weighted atoms' energies and forces drop out)."""
    from deepmd_md.backends.paddle.freeze import Predictor, freeze_paddle, read_metadata

    data = make_model(desc=tiny_descriptors()["dpa2:small"])
    path = tmp_path / "m.json"
    freeze_paddle(data, str(path))
    meta = read_metadata(str(path))
    assert meta["exchange"]["op"] == "dpmd::ghost_exchange" and meta["exchange"]["weighted"]
    assert meta["exchange"]["widths"] and meta["receptive_field"] > meta["rcut"]
    assert meta["inputs"][-2:] == ["comm", "atom_weight"]
    assert ".dpmd_ghost_exchange_grad\"" in path.read_text()
    coord, atype, nlist, mapping = _frame()
    pred = Predictor(str(path))
    full = pred.lower(coord, atype, nlist, mapping)
    h = pred._pred.get_input_handle("atom_weight")
    w = np.ones((1, nlist.shape[1]))
    w[0, 2:] = 0.0
    pred.lower(coord, atype, nlist, mapping)  # fills the inputs; then reweigh and run again
    h.reshape([1, nlist.shape[1]])
    h.copy_from_cpu(w)
    pred._pred.run()
    e = pred._pred.get_output_handle(pred._pred.get_output_names()[1]).copy_to_cpu()
    assert abs(e[0] - full["atom_energy"][0, :2].sum()) <= 1e-12


def _compressed_files(data, root):
    """(.pth, .json) of compress(data) in root."""
    from deepmd_md.compress import compress
    from deepmd_md.formats import write_model

    comp = compress(data, RMIN)
    out = []
    for suffix in (".pth", ".json"):
        write_model(comp, root / f"comp{suffix}")
        out.append(root / f"comp{suffix}")
    return out


def _pth_lower(pth, coord, atype, nlist, mapping) -> dict:
    import torch

    from deepmd_md.backends.torch.ops import load_ops as load_torch_ops

    load_torch_ops()
    ref = torch.jit.load(str(pth)).forward_lower(
        *(torch.tensor(a) for a in (coord, atype, nlist, mapping)))
    return {k: v.detach().numpy() for k, v in ref.items()}


@pytest.mark.parametrize("name", ["se_e2_a", "dpa2:switched"])
def test_compressed_json_calls_kernels_and_equals_pth(name, tmp_path):
    """A compressed .json calls the C++ kernel, not the array-API table: se_e2_a
    dpmd_tabulate_fusion, DPA-2 (tabulated repinit, strip mode) dpmd_tabulate beside the
    exchange; atom energies, forces and virial = the compressed .pth's (1e-10) on a raw list."""
    pytest.importorskip("torch")
    from deepmd_md.backends.paddle.freeze import Predictor
    from deepmd_md.model.model import init_model

    if name == "se_e2_a":
        cfg = model_config(rcut=6.0, rcut_smth=0.5, sel=[46, 92], neuron=(8, 16),
                           fitting=(16, 16))
        data, ops = random_stats(init_model(cfg, 3), 3), ("dpmd_tabulate_fusion",)
    else:
        data, ops = make_model(desc=tiny_descriptors()[name]), ("dpmd_tabulate",
                                                              "dpmd_ghost_exchange")
    pth, js = _compressed_files(data, tmp_path)
    text = js.read_text()
    for op in ops:
        assert f'.{op}"' in text and f'.{op}_grad"' in text, op
    coord, atype, nlist, mapping = _frame(nall=40, nloc=12, seed=2)
    coord = coord * 2.0  # neighbors from ~0.9 A out past rcut
    out = Predictor(str(js)).lower(coord, atype, nlist, mapping)
    ref = _pth_lower(pth, coord, atype, nlist, mapping)
    assert np.abs(ref["extended_force"]).max() > 1e-3
    for k in ("atom_energy", "extended_force", "virial"):
        np.testing.assert_allclose(out[k], ref[k], rtol=0, atol=1e-10, err_msg=k)

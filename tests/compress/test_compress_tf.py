"""Compressed models in TensorFlow: the frozen `.pb` calls DpmdTabulate / DpmdTabulateFusion
(or DpmdSeATab for se_e2_a where the library has it) (libdpmd_tf_ops.so, the C++ kernels of the
PyTorch ops): its values equal the compressed `.pth`
and the NumPy reference, forces are -dE/dx (central differences of the graph's energy), LAMMPS
on 1 and 2 ranks equals DeepPot, and a second derivative raises."""

from __future__ import annotations

import numpy as np
import pytest
from lammps_helpers import run_driver
from test_compress import RMIN, _water, _water_model
from test_lammps_compress import VOIGT, _deeppot, _lines

from deepmd_md import keys
from deepmd_md.compress import compress
from deepmd_md.formats import write_model
from deepmd_md.model.frames import prepare_frames

pytest.importorskip("tensorflow")
KEYS = ["se_e2_a", "se_atten_v2", "dpa2-strip"]
OP = {"se_e2_a": "DpmdTabulateFusion", "se_atten_v2": "DpmdTabulate", "dpa2-strip": "DpmdTabulate"}


def se_a_op() -> str:
    """The op of a compressed se_e2_a .pb: DpmdSeATab (env rows and tables in one op,
    deepmd_md/kernels/env_mat.py) when the library has it, else DpmdTabulateFusion."""
    from deepmd_md.backends.tensorflow.ops import load_ops

    return "DpmdSeATab" if hasattr(load_ops(), "dpmd_se_a_tab") else "DpmdTabulateFusion"


@pytest.fixture(scope="module")
def tf_ops():
    from deepmd_md.backends.tensorflow.ops import has_tabulate, load_ops

    if load_ops() is None or not has_tabulate():
        pytest.skip("libdpmd_tf_ops.so without the DpmdTabulate ops: rebuild (make install)")
    return load_ops()


@pytest.fixture(scope="module", params=KEYS)
def frozen(request, tmp_path_factory, tf_ops, ops):
    """(key, compressed ModelData, .pth, .pb, the .pb's graph run by load_pb)."""
    from deepmd_md.backends.tensorflow.freeze import load_pb

    key = request.param
    root = tmp_path_factory.mktemp(key)
    data = compress(_water_model(key), RMIN)
    pth, pb = root / "c.pth", root / "c.pb"
    write_model(data, pth)
    write_model(data, pb)
    return key, data, pth, pb, load_pb(str(pb))


def _frame(data, coord, box, atype):
    """Extended inputs of one frame: ext [1, nall, 3], atype, nlist, mapping."""
    c = coord.reshape(1, -1, 3)
    prep = prepare_frames(data["config"], c, atype.reshape(1, -1), box.reshape(1, 9))
    mapping = prep[keys.MAPPING]
    ext = np.take_along_axis(c, mapping[..., None], axis=1) + prep[keys.SHIFT]
    return ext, prep[keys.EXT_ATYPE], prep[keys.NLIST], mapping


def _run_pb(run, data, coord, box, atype):
    """(energy, forces [nat, 3], virial [9], atom energies [nat]) of the frozen graph."""
    ext, eatype, nlist, mapping = _frame(data, coord, box, atype)
    out = run(ext, eatype, nlist, mapping)
    force = np.zeros((len(atype), 3))
    np.add.at(force, mapping[0], out["extended_force"][0])
    return float(out["energy"][0]), force, out["virial"][0], out["atom_energy"][0]


def test_graph_holds_the_ops(frozen):
    """The GraphDef calls the C++ op and its gradient op (forces), not the reference."""
    from deepmd_md.backends.tensorflow.freeze import _graph_def

    key, _, _, pb, _ = frozen
    ops = {n.op for n in _graph_def(str(pb)).node}
    op = se_a_op() if key == "se_e2_a" else OP[key]
    assert {op, op + "Grad"} <= ops
    assert "Floor" not in ops  # the reference's interval search


def test_pb_equals_pth_and_reference(frozen):
    """A 192-atom water frame: .pb (TF op) = .pth (torch op) <= 1e-10 (energy, forces, virial);
    atomic energies = the NumPy reference (array-API tables) on the same extended inputs."""
    from deepmd_md.infer.deep_pot import DeepPot
    from deepmd_md.model.model import atomic_outputs

    key, data, pth, _, run = frozen
    coord, box, atype = _water(1)
    e, f, v, ae = _run_pb(run, data, coord[0], box[0], atype)
    e0, f0, v0 = DeepPot(str(pth)).eval(coord[:1], box[:1], atype)
    e0, f0, v0 = float(e0[0, 0]), f0.reshape(-1, 3), v0.reshape(3, 3)
    assert abs(e - e0) <= 1e-10 * max(1.0, abs(e0))
    assert np.max(np.abs(f - f0)) <= 1e-10
    assert np.max(np.abs(v.reshape(3, 3) - v0)) <= 1e-10 * max(1.0, np.abs(v0).max())
    ext, eatype, nlist, mapping = _frame(data, coord[0], box[0], atype)
    ref = atomic_outputs(data["config"], data["params"], data["buffers"], ext, eatype, nlist,
                         mapping=mapping)["energy"][0]
    assert np.max(np.abs(ae - ref)) <= 1e-10


def test_forces_are_minus_gradient(frozen):
    """Central differences of the graph's energy (h = 1e-5) = its forces, on 4 coordinates of
    the water frame (the table's derivative inside the op's gradient, by tf.gradients)."""
    _, data, _, _, run = frozen
    coord, box, atype = _water(1)
    x = coord[0].reshape(-1, 3)
    _, f, _, _ = _run_pb(run, data, x, box[0], atype)
    h = 1e-5
    for atom, axis in ((0, 0), (1, 2), (57, 1), (150, 0)):
        xp, xm = x.copy(), x.copy()
        xp[atom, axis] += h
        xm[atom, axis] -= h
        ep = _run_pb(run, data, xp, box[0], atype)[0]
        em = _run_pb(run, data, xm, box[0], atype)[0]
        assert abs(-(ep - em) / (2 * h) - f[atom, axis]) <= 1e-7, (atom, axis)


def test_op_equals_torch_op(tf_ops, ops):
    """The TF ops = the PyTorch ops (one kernel) inside both tables, below and beyond them
    (the net), float64 and float32, forward and backward."""
    import tensorflow as tf
    import torch

    from deepmd_md.kernels.tabulate import build_table, make_grid, pack_net

    rng = np.random.default_rng(3)
    net = {"layers": [{"w": rng.normal(size=(1, 4)), "b": rng.normal(size=4)},
                      {"w": rng.normal(size=(4, 8)), "b": rng.normal(size=8)}]}
    grid = make_grid(-1.0, 3.0, 0.01, 5.0)
    s = rng.uniform(-1.5, 16.5, (6, 9))  # below lo, both tables, beyond hi
    em = rng.normal(size=(6, 9, 4))
    dy = rng.normal(size=(6, 8, 4))
    for dt, tol in ((np.float64, 1e-14), (np.float32, 1e-5)):
        tab = (build_table(net, "tanh", grid).astype(dt), grid, pack_net(net, "tanh"))
        tt = [tf.constant(a) for a in tab]
        st, et = tf.constant(s.astype(dt)), tf.constant(em.astype(dt))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([st, et])
            y = tf_ops.dpmd_tabulate_fusion(*tt, st, et)
            g = tf_ops.dpmd_tabulate(*tt, st)
            ly = tf.reduce_sum(y * dy.astype(dt))
            lg = tf.reduce_sum(g * g)
        ds, dem = tape.gradient(ly, [st, et])
        dsg = tape.gradient(lg, st)
        pt = [torch.tensor(a) for a in tab]
        sp = torch.tensor(s.astype(dt), requires_grad=True)
        ep = torch.tensor(em.astype(dt), requires_grad=True)
        yp = torch.ops.dpmd.tabulate_fusion(*pt, sp, ep)
        (yp * torch.tensor(dy.astype(dt))).sum().backward()
        assert y.shape == (6, 8, 4) and g.shape == (6, 9, 8)
        for a, b in ((y, yp), (ds, sp.grad), (dem, ep.grad)):
            np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=0, atol=tol)
        sp.grad = None
        gp = torch.ops.dpmd.tabulate(*pt, sp)
        (gp * gp).sum().backward()
        np.testing.assert_allclose(g.numpy(), gp.detach().numpy(), rtol=0, atol=tol)
        np.testing.assert_allclose(dsg.numpy(), sp.grad.numpy(), rtol=0, atol=tol * 10)


@pytest.mark.parametrize("which", ["tabulate", "fusion"])
def test_second_derivative_raises(tf_ops, which):
    """A gradient of the gradient ops is an error (never zeros)."""
    import tensorflow as tf

    from deepmd_md.kernels.tabulate import build_table, make_grid, pack_net

    rng = np.random.default_rng(0)
    net = {"layers": [{"w": rng.normal(size=(1, 4)), "b": rng.normal(size=4)}]}
    grid = make_grid(0.0, 1.0, 0.1, 2.0)
    tt = [tf.constant(a) for a in (build_table(net, "tanh", grid), grid, pack_net(net, "tanh"))]
    s, em = tf.constant(rng.uniform(0, 1, (3, 5))), tf.constant(rng.normal(size=(3, 5, 4)))
    with tf.GradientTape() as outer:
        outer.watch(s)
        with tf.GradientTape() as inner:
            inner.watch(s)
            y = tf_ops.dpmd_tabulate(*tt, s) if which == "tabulate" else \
                tf_ops.dpmd_tabulate_fusion(*tt, s, em)
            e = tf.reduce_sum(y * y)
        ds = inner.gradient(e, s)
        ls = tf.reduce_sum(ds)
    with pytest.raises(RuntimeError, match="second derivatives are not implemented"):
        outer.gradient(ls, s)


def test_lammps_pb_equals_deeppot(water_models, lmp_env, tmp_path):
    """`dpmd freeze -c comp.pth -o comp.pb` holds the op; that .pb in LAMMPS (the core's
    TensorFlow backend) on 1 and 2 ranks = DeepPot on it and on the compressed .pth (the
    triclinic 192-atom box of test_lammps_compress)."""
    from helpers import run_dpmd

    from deepmd_md.backends.tensorflow.freeze import _graph_def

    _, comp = water_models
    pb = tmp_path / "comp.pb"
    p = run_dpmd("freeze", "-c", str(comp), "-o", str(pb), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert se_a_op() in {n.op for n in _graph_def(str(pb)).node}
    for nranks in (1, 2):
        res = run_driver({"commands": _lines(pb)}, tmp_path / f"r{nranks}", lmp_env, np_=nranks)
        for model in (pb, comp):
            e, f, v = _deeppot(model, res)
            assert abs(res["pe"] - e) < 1e-9 * max(1.0, abs(e))
            np.testing.assert_allclose(np.array(res["f"]), f, rtol=0, atol=1e-10)
            np.testing.assert_allclose(res["virial"], v[VOIGT], rtol=0, atol=1e-9)


def test_lammps_dpa2_pb_two_ranks(lmp_env, tmp_path):
    """DPA-2 (repinit tabulated, the repformer's messages through the engine's exchange op) as
    a compressed .pb on 2 ranks = DeepPot on the compressed .pth."""
    data = compress(_water_model("dpa2-strip"), RMIN)
    pb, pth = tmp_path / "c.pb", tmp_path / "c.pth"
    write_model(data, pb)
    write_model(data, pth)
    res = run_driver({"commands": _lines(pb)}, tmp_path / "r2", lmp_env, np_=2)
    e, f, v = _deeppot(pth, res)
    assert abs(res["pe"] - e) < 1e-9 * max(1.0, abs(e))
    np.testing.assert_allclose(np.array(res["f"]), f, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["virial"], v[VOIGT], rtol=0, atol=1e-9)

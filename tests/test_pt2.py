"""`.pt2` (AOTInductor) freeze: one package serves any nall, nloc, per-type neighbor widths
(0 included) and atoms per type (0 included), and matches the NumPy reference; its metadata is
readable (contract in docs/lammps.md). Models without the per-type fast path (a hybrid of typed
descriptors, a message-passing GNN) get forward_lower's inputs (raw list, mapping) instead."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from helpers import (
    ORTHO_BOX,
    PT2_MESSAGE_PASSING,
    assert_close,
    make_model,
    random_frames,
    run_dpmd,
    tiny_descriptors,
)

from deepmd_md.backends.numpy import reference
from deepmd_md.data.neighbor import extend_coord, neighbor_candidates
from deepmd_md.model.env import format_nlist
from deepmd_md.model.frames import blocked_inputs
from deepmd_md.model.model import message_passing_of, mixed_of, rcut_of, sel_of

torch = pytest.importorskip("torch")

TOL = 1e-10
META_KEY = "deepmd_md.metadata"
PATHS: dict = {}  # kind -> the .pt2 file a fixture compiled


def _aoti_unavailable() -> str | None:
    """Why AOTInductor cannot compile here (None if it can)."""
    try:
        import torch._inductor
        from torch._inductor.cpp_builder import get_cpp_compiler

        torch._inductor.aoti_compile_and_package  # noqa: B018
        torch._inductor.aoti_load_package  # noqa: B018
        cxx = get_cpp_compiler()
    except Exception as e:  # noqa: BLE001 - any failure means no AOTInductor build here
        return f"AOTInductor unavailable in torch {torch.__version__}: {e!r}"
    if shutil.which(cxx) is None and not os.path.exists(cxx):
        return f"AOTInductor's C++ compiler {cxx!r} is not installed"
    return None


_WHY_NOT = _aoti_unavailable()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=str(_WHY_NOT))


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """(model data, loaded package): frozen once for the module (compilation takes ~1 min)
    through the CLI, `dpmd freeze -c model.ckpt.dp -o model.pt2` (freeze_pt2), end to end."""
    from deepmd_md.serialize import save_dp

    data = make_model()
    tmp = tmp_path_factory.mktemp("pt2")
    save_dp(data, str(tmp / "model.ckpt.dp"))
    r = run_dpmd("freeze", "-c", "model.ckpt.dp", "-o", "model.pt2", cwd=tmp, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in tmp.iterdir()) == ["model.ckpt.dp", "model.pt2"]
    PATHS["typed"] = tmp / "model.pt2"
    return data, torch._inductor.aoti_load_package(str(tmp / "model.pt2"))


def _shuffled(nlist, seed, extra=0):
    """The same candidates in a random order per atom, with `extra` -1 slots mixed in."""
    rng = np.random.default_rng(seed)
    nf, nloc, w = nlist.shape
    out = np.concatenate([nlist, np.full((nf, nloc, extra), -1, nlist.dtype)], axis=-1)
    for f in range(nf):
        for i in range(nloc):
            out[f, i] = rng.permutation(out[f, i])
    return out


def _run(pkg, data, ext, eatype, nlist, seed):
    """The package on the blocked inputs the C++ core builds from a raw list: per-type
    blocks (here in a random order with extra empty slots) and local atoms by type."""
    cfg = data["config"]
    typed = format_nlist(ext, eatype, nlist, rcut_of(cfg), sel_of(cfg))
    nlists, center = blocked_inputs(typed, eatype[:, : nlist.shape[1]], sel_of(cfg))
    nlists = [_shuffled(nl, seed + t, extra=t) for t, nl in enumerate(nlists)]
    args = [ext, eatype, *nlists, *center]
    outs = pkg(*[torch.tensor(np.ascontiguousarray(a)) for a in args])
    return [o.detach().numpy() for o in outs]


# nat, box, how the raw list is laid out; the first has fewer candidates per atom than max(sel)
CASES = [
    (12, np.diag([8.0, 8.5, 9.0]).ravel(), "nearest-first"),
    (20, ORTHO_BOX, "shuffled+padded"),
    (1, None, "isolated"),  # one atom: every block 0 wide, no atom of the other type
]


@pytest.mark.parametrize("nat,box,layout", CASES, ids=[c[2] for c in CASES])
def test_pt2_matches_reference(frozen, nat, box, layout):
    data, pkg = frozen
    rcut = rcut_of(data["config"])
    coord, atype, boxes = random_frames(nat, box, seed=nat)
    ext, eatype, mapping, _ = extend_coord(coord, atype, boxes, rcut)
    nlist = neighbor_candidates(ext, nat, rcut)
    if layout == "shuffled+padded":
        nlist = _shuffled(nlist, seed=nat, extra=7)
    elif layout == "isolated":
        nlist = np.full((1, 1, 1), -1, np.int64)
    else:
        assert nlist.shape[2] < max(sel_of(data["config"])), "case meant to be narrow"
    ae, e, ext_force, virial, ext_virial = _run(pkg, data, ext, eatype, nlist, seed=nat)
    nall = ext.shape[1]
    assert (ae.shape, e.shape, ext_force.shape, virial.shape, ext_virial.shape) == (
        (1, nat), (1,), (1, nall, 3), (1, 9), (1, nall, 9))
    ref = reference.evaluate(data, coord, atype, boxes)
    force = np.zeros((1, nat, 3))
    np.add.at(force[0], mapping[0], ext_force[0])
    assert_close(ae, ref["atom_energy"], TOL, "atom_energy")
    assert_close(e, ref["energy"], TOL, "energy")
    assert_close(force, ref["force"], TOL, "force")
    assert_close(virial, ref["virial"], TOL, "virial")
    assert_close(ext_virial.sum(1), virial, TOL, "extended_virial sums to virial")


def test_pt2_metadata(frozen):
    data, pkg = frozen
    meta = json.loads(pkg.get_metadata()[META_KEY])
    cfg = data["config"]
    assert meta["format"] == "deepmd_md.pt2" and meta["blocked"] is True
    assert meta["type_map"] == cfg["type_map"]
    assert meta["rcut"] == rcut_of(cfg)
    assert meta["sel"] == sel_of(cfg) and meta["nnei"] == sum(sel_of(cfg))
    assert meta["precision"] == "float64"
    assert meta["outputs"]["energy"] == {"reducible": True, "r_differentiable": True,
                                         "c_differentiable": True}


# -- models without the blocked entry point: forward_lower's inputs --------------------------

HYBRID = "hybrid:se_a+se_r"  # typed members, no blocked entry (the per-type fitting nets)


def _mp_name():
    return PT2_MESSAGE_PASSING


@pytest.fixture(scope="module")
def frozen_lower(tmp_path_factory):
    """kind -> (model data, loaded package), frozen on first use (a minute or two each)."""
    from deepmd_md.backends.torch.aoti import freeze_pt2

    cache = {}

    def get(kind):
        if kind not in cache:
            name = HYBRID if kind == "hybrid" else _mp_name()
            data = make_model(desc=tiny_descriptors()[name])
            path = tmp_path_factory.mktemp("pt2_lower") / "model.pt2"
            freeze_pt2(data, str(path))
            PATHS[kind] = path
            cache[kind] = data, torch._inductor.aoti_load_package(str(path))
        return cache[kind]

    return get


def _run_lower(pkg, ext, eatype, nlist, mapping, comm=False):
    """The package on forward_lower's inputs; comm (message-passing packages): handle 0, the
    in-process exchange by mapping, and unit atom weights."""
    args = [torch.tensor(np.ascontiguousarray(a)) for a in (ext, eatype, nlist, mapping)]
    if comm:
        args += [torch.zeros(1, dtype=torch.int64), torch.ones(1, nlist.shape[1], dtype=torch.float64)]
    return [o.detach().numpy() for o in pkg(*args)]


@pytest.mark.parametrize("kind", ["hybrid", "message_passing"])
@pytest.mark.parametrize("nat,box,layout", CASES, ids=[c[2] for c in CASES])
def test_pt2_lower_matches_reference(frozen_lower, kind, nat, box, layout):
    """Raw candidates in any order, -1 padded, as wide as the core's rows (0 wide for one
    atom), and the owner of every image: the reference's energy, forces and virial."""
    data, pkg = frozen_lower(kind)
    assert message_passing_of(data["config"]) == (kind == "message_passing")
    rcut = rcut_of(data["config"])
    coord, atype, boxes = random_frames(nat, box, seed=nat)
    ext, eatype, mapping, _ = extend_coord(coord, atype, boxes, rcut)
    nlist = neighbor_candidates(ext, nat, rcut)
    if layout == "shuffled+padded":
        nlist = _shuffled(nlist, seed=nat, extra=7)
    elif layout == "isolated":
        nlist = np.full((1, 1, 0), -1, np.int64)
    ae, e, ext_force, virial, ext_virial = _run_lower(pkg, ext, eatype, nlist, mapping,
                                                      kind == "message_passing")
    nall = ext.shape[1]
    assert (ae.shape, e.shape, ext_force.shape, virial.shape, ext_virial.shape) == (
        (1, nat), (1,), (1, nall, 3), (1, 9), (1, nall, 9))
    ref = reference.evaluate(data, coord, atype, boxes)
    force = np.zeros((1, nat, 3))
    np.add.at(force[0], mapping[0], ext_force[0])
    assert_close(ae, ref["atom_energy"], TOL, "atom_energy")
    assert_close(e, ref["energy"], TOL, "energy")
    assert_close(force, ref["force"], TOL, "force")
    assert_close(virial, ref["virial"], TOL, "virial")
    assert_close(ext_virial.sum(1), virial, TOL, "extended_virial sums to virial")


def test_pt2_lower_uses_mapping(frozen_lower):
    """A message-passing package reads `mapping`: ghosts given other owners change the
    energy (a hybrid's does not: it passes no messages)."""
    for kind, moves in (("hybrid", False), ("message_passing", True)):
        data, pkg = frozen_lower(kind)
        coord, atype, boxes = random_frames(12, ORTHO_BOX, seed=5)
        ext, eatype, mapping, _ = extend_coord(coord, atype, boxes, rcut_of(data["config"]))
        nlist = neighbor_candidates(ext, 12, rcut_of(data["config"]))
        wrong = mapping.copy()
        wrong[:, 12:] = (wrong[:, 12:] + 1) % 12
        e0 = _run_lower(pkg, ext, eatype, nlist, mapping, moves)[1]
        e1 = _run_lower(pkg, ext, eatype, nlist, wrong, moves)[1]
        # (far above rounding; random tiny models can depend weakly on ghost features)
        assert (abs(e1 - e0).max() > 1e-9 * max(1.0, abs(e0).max())) == moves, (kind, e0, e1)


def test_pt2_lower_metadata(frozen_lower):
    for kind in ("hybrid", "message_passing"):
        data, pkg = frozen_lower(kind)
        meta = json.loads(pkg.get_metadata()[META_KEY])
        cfg = data["config"]
        assert meta["format"] == "deepmd_md.pt2" and meta["blocked"] is False
        assert meta["message_passing"] is (kind == "message_passing")
        assert meta["mixed_types"] is mixed_of(cfg)
        assert meta["sel"] == sel_of(cfg) and meta["rcut"] == rcut_of(cfg)


def test_fast_tanh_rewrite():
    """The freeze's tanh rewrite (fast_tanh): no aten.tanh left in the graph, values within
    4e-16 of torch.tanh from 0 to overflow (and +-1 exactly there, NaN kept), and the traced
    derivative still 1 - y^2 of the rewritten y."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from deepmd_md.backends.torch.fx_rewrite import fast_tanh

    def fn(x):
        x = x.detach().requires_grad_(True)
        y = torch.tanh(x * 1.5)
        (g,) = torch.autograd.grad((y * y).sum(), [x])
        return y, g

    x = torch.tensor([0.0, 1e-300, -1e-12, 1e-6, -0.3, 0.5, 2.0, -7.0, 19.0, 400.0, -400.0,
                      float("nan")], dtype=torch.float64)
    x = torch.cat([x, torch.linspace(-25.0, 25.0, 5001, dtype=torch.float64)])
    gm = make_fx(fn)(x)
    assert fast_tanh(gm) == 1
    assert torch.ops.aten.tanh.default not in {n.target for n in gm.graph.nodes}
    y, g = gm(x)
    y0, g0 = fn(x)
    assert torch.isnan(y[11]) and torch.isnan(g[11])
    ok = ~torch.isnan(x)
    assert (y - y0)[ok].abs().max() <= 4e-16
    assert y[9] == 1.0 and y[10] == -1.0
    yy = y.detach()
    torch.testing.assert_close(g[ok], (2 * yy * (1 - yy * yy) * 1.5)[ok], rtol=0, atol=1e-15)
    assert (g - g0)[ok].abs().max() <= 4e-15


@pytest.mark.parametrize("kind", ["typed", "hybrid", "message_passing"])
def test_deeppot_ase_and_dpmd_read_pt2(frozen, frozen_lower, kind, tmp_path):
    """Every tool reads the .pt2 an engine runs: DeepPot (and so ASE and `dpmd test`) runs the
    compiled package on its own neighbor list (blocked or forward_lower inputs, by the
    package's metadata) = the reference; `dpmd show` prints its config."""
    from deepmd_md.infer import DeepPot

    data = frozen[0] if kind == "typed" else frozen_lower(kind)[0]
    path = PATHS[kind]
    coord, atype, box = random_frames(12, ORTHO_BOX, nf=2, seed=9)
    ref = reference.evaluate(data, coord, atype, box)
    e, f, v = DeepPot(str(path)).eval(coord.reshape(2, -1), box, atype[0])
    assert_close(e.ravel(), ref["energy"], TOL, "energy")
    assert_close(f, ref["force"], TOL, "force")
    assert_close(v, ref["virial"], TOL, "virial")
    r = run_dpmd("show", str(path), cwd=tmp_path)
    assert r.returncode == 0 and f"rcut: {rcut_of(data['config'])}" in r.stdout, r.stderr


def test_pt2_carries_its_model(frozen, tmp_path):
    """A .pt2 holds the whole model (.dp record): load_model_data gives the exact weights, so
    `dpmd freeze` re-freezes it, other backends and ASE evaluate it, `dpmd show` counts its
    parameters and `dpmd train --init-model` starts from it."""
    from ase import Atoms
    from helpers import teacher_system

    from deepmd_md.calculators.ase import DP
    from deepmd_md.infer import DeepPot
    from deepmd_md.infer.deep_pot import load_model_data
    from deepmd_md.serialize import load_dp
    from deepmd_md.tree import flatten

    data, path = frozen[0], PATHS["typed"]
    got = load_model_data(str(path))
    assert got["config"] == data["config"]
    want = flatten(data["params"]) | flatten(data["buffers"])
    have = flatten(got["params"]) | flatten(got["buffers"])
    assert want.keys() == have.keys()
    assert all(np.array_equal(np.asarray(want[k]), have[k]) for k in want)

    r = run_dpmd("freeze", "-c", str(path), "-o", "again.dp", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert flatten(load_dp(str(tmp_path / "again.dp"))["params"]).keys() == \
        flatten(data["params"]).keys()
    sysdir = teacher_system(tmp_path / "sys", nf=2)
    r = run_dpmd("test", "-m", str(path), "-s", str(sysdir), "--json", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["systems"][0]["nframes"] == 2, r.stderr
    r = run_dpmd("show", str(path), cwd=tmp_path)
    nparam = sum(np.asarray(v).size for v in flatten(data["params"]).values())
    assert r.returncode == 0 and f"parameters: {nparam}" in r.stdout, r.stdout + r.stderr

    coord, atype, box = random_frames(12, ORTHO_BOX, nf=1, seed=4)
    ref = reference.evaluate(data, coord, atype, box)
    e, f, _ = DeepPot(str(path), "jax").eval(coord.reshape(1, -1), box, atype[0])
    assert_close(e.ravel(), ref["energy"], TOL, "energy (jax on the .pt2's weights)")
    assert_close(f, ref["force"], TOL, "force (jax on the .pt2's weights)")
    names = [data["config"]["type_map"][t] for t in atype[0]]
    atoms = Atoms(symbols=["O" if n == "O" else "H" for n in names], positions=coord[0],
                  cell=box[0].reshape(3, 3), pbc=True)
    atoms.calc = DP(str(path), type_map={n: i for i, n in enumerate(data["config"]["type_map"])})
    assert abs(atoms.get_potential_energy() - ref["energy"][0]) <= TOL * abs(ref["energy"][0])
    assert_close(atoms.get_forces(), ref["force"][0], TOL, "ASE forces on the .pt2")


def test_init_model_from_pt2(frozen, tmp_path):
    """`dpmd train --init-model model.pt2` starts from the package's weights: after one step at
    a learning rate of 1e-30 the checkpoint holds them to rounding."""
    from helpers import teacher_system, train_input

    from deepmd_md.serialize import load_dp

    sysdir = teacher_system(tmp_path / "sys", nf=2)
    inp = train_input([sysdir], tmp_path, numb_steps=1, model=frozen[0]["config"])
    inp["learning_rate"] = {"type": "exp", "start_lr": 1e-30, "stop_lr": 1e-30, "decay_steps": 1}
    (tmp_path / "input.json").write_text(json.dumps(inp))
    r = run_dpmd("train", "input.json", "--init-model", str(PATHS["typed"]), "--no-progress",
                 cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    from deepmd_md.tree import flatten

    trained = load_dp(str(tmp_path / (tmp_path / "checkpoint").read_text().strip()))
    a, b = flatten(trained["params"]), flatten(frozen[0]["params"])
    # one step at lr 1e-30: the weights are the package's to rounding
    assert max(float(np.abs(a[k] - np.asarray(b[k])).max()) for k in b) <= 1e-12

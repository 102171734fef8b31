"""DeepPot (Python inference) on .pth, .dp and checkpoints, and the ASE calculator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import ORTHO_BOX, TRICLINIC_BOX, assert_close, make_model, random_frames

from deepmd_md import keys
from deepmd_md.backends.numpy import reference
from deepmd_md.errors import DataError, NeighborError
from deepmd_md.serialize import save_dp

torch = pytest.importorskip("torch")

from deepmd_md.backends.torch.freeze import freeze_pth  # noqa: E402
from deepmd_md.infer import DeepPot  # noqa: E402

TOL = 1e-10
NAT, NF = 10, 2


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """One model as .pth, .dp and a training checkpoint."""
    from deepmd_md.backends.torch import adapter
    from deepmd_md.train.optim import adam_init
    from deepmd_md.train.trainer import save_checkpoint

    d = tmp_path_factory.mktemp("models")
    data = make_model(type_one_side=False)
    freeze_pth(data, str(d / "m.pth"))
    save_dp(data, str(d / "m.dp"))
    opt = adam_init(adapter.asarray(data["params"]))
    rngs = {"train": np.random.default_rng(0), "val": np.random.default_rng(1)}
    ckpt = save_checkpoint(str(d / "model.ckpt"), data, opt, 7, rngs, 5, adapter)
    return data, {"pth": d / "m.pth", "dp": d / "m.dp", "ckpt": Path(ckpt)}


@pytest.fixture(scope="module")
def frames():
    coord, atype, boxes = random_frames(NAT, TRICLINIC_BOX, NF, seed=21, min_dist=0.95)
    return coord, atype, boxes


# (file kind, backend) pairs that DeepPot supports
FLAVOURS = [("pth", None), ("dp", "torch"), ("dp", "jax"), ("dp", "numpy"), ("ckpt", None)]
IDS = [f"{k}-{b or 'default'}" for k, b in FLAVOURS]


def _deeppot(model_files, kind, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    return DeepPot(str(model_files[1][kind]), backend=backend)


@pytest.mark.parametrize("kind,backend", FLAVOURS, ids=IDS)
def test_eval_equals_reference(model_files, frames, kind, backend):
    data, _ = model_files
    coord, atype, boxes = frames
    dp = _deeppot(model_files, kind, backend)
    e, f, v = dp.eval(coord.reshape(NF, -1), boxes, atype[0])
    ref = reference.evaluate(data, coord, atype, boxes)
    assert_close(np.reshape(e, NF), ref[keys.ENERGY], TOL, "energy")
    assert_close(np.reshape(f, (NF, NAT, 3)), ref[keys.FORCE], TOL, "force (atom-major)")
    assert_close(np.reshape(v, (NF, 9)), ref[keys.VIRIAL], TOL, "virial")
    assert dp.get_type_map() == ["O", "H"] and dp.get_rcut() == 3.5


def test_eval_shapes_are_deepmd_kit_shapes(model_files, frames):
    coord, atype, boxes = frames
    e, f, v, ae, av = DeepPot(str(model_files[1]["pth"])).eval(coord.reshape(NF, -1), boxes,
                                                                atype[0], atomic=True)
    assert e.shape == (NF, 1) and v.shape == (NF, 9) and ae.shape == (NF, NAT, 1)
    assert f.shape == (NF, NAT, 3)
    assert av.shape == (NF, NAT, 9)


@pytest.mark.parametrize("kind,backend", [("pth", None), ("dp", "torch"), ("dp", "jax")],
                         ids=["pth", "dp-torch", "dp-jax"])
def test_atomic_outputs_sum_to_totals(model_files, frames, kind, backend):
    coord, atype, boxes = frames
    dp = _deeppot(model_files, kind, backend)
    e, f, v, ae, av = dp.eval(coord.reshape(NF, -1), boxes, atype[0], atomic=True)
    assert e.shape == (NF, 1) and v.shape == (NF, 9) and ae.shape == (NF, NAT, 1)
    assert np.size(f) == NF * NAT * 3 and np.size(av) == NF * NAT * 9
    ae, av = np.reshape(ae, (NF, NAT)), np.reshape(av, (NF, NAT, 9))
    assert_close(ae.sum(1), e[:, 0], TOL, "sum of atom energies")
    assert_close(av.sum(1), v, TOL, "sum of atom virials")
    assert np.ptp(ae) > 1e-4 and np.abs(av).max() > 1e-4  # not all the same / all zero


@pytest.mark.parametrize("kind,backend", [("pth", None), ("dp", "torch"), ("dp", "jax")],
                         ids=["pth", "dp-torch", "dp-jax"])
def test_chunks_of_local_atoms_equal_one_call(model_files, frames, kind, backend, monkeypatch):
    """A frame larger than CHUNK_ATOMS is evaluated in chunks of local atoms (bounded memory,
    as the C++ core does): the same energies, forces, virials and atomic outputs as one call."""
    import deepmd_md.infer.deep_pot as deep_pot

    coord, atype, boxes = frames
    dp = _deeppot(model_files, kind, backend)
    monkeypatch.setattr(deep_pot, "CHUNK_ATOMS", 0)
    whole = dp.eval(coord.reshape(NF, -1), boxes, atype[0], atomic=True)
    monkeypatch.setattr(deep_pot, "CHUNK_ATOMS", 3)  # 10 atoms: chunks of 3, 3 and 4
    chunked = dp.eval(coord.reshape(NF, -1), boxes, atype[0], atomic=True)
    for name, a, b in zip(("energy", "force", "virial", "atom energy", "atom virial"), whole,
                          chunked, strict=True):
        assert_close(b, a, TOL, f"{name} (chunked vs one call)")


def test_atype_per_frame(model_files):
    """atype [nat] and [nf, nat] agree; per-frame types are honoured (frame 1 differs)."""
    data, files = model_files
    coord, atype, boxes = random_frames(NAT, ORTHO_BOX, NF, seed=22, min_dist=0.95)
    dp = DeepPot(str(files["pth"]))
    e1, f1, v1 = dp.eval(coord.reshape(NF, -1), boxes, atype[0])
    e2, f2, v2 = dp.eval(coord.reshape(NF, -1), boxes, np.tile(atype[0], (NF, 1)))
    for x, y in ((e1, e2), (f1, f2), (v1, v2)):
        assert_close(x, y, 1e-13, "atype [nat] vs [nf, nat]")
    mixed = atype.copy()
    mixed[1] = 1 - mixed[1]
    e3, f3, _ = dp.eval(coord.reshape(NF, -1), boxes, mixed)
    ref = reference.evaluate(data, coord, mixed, boxes)
    assert_close(np.reshape(e3, NF), ref[keys.ENERGY], TOL, "energy, per-frame types")
    assert_close(np.reshape(f3, (NF, NAT, 3)), ref[keys.FORCE], TOL, "force, per-frame types")
    assert abs(e3[1, 0] - e1[1, 0]) > 1e-4


def test_coord_shapes_and_nopbc(model_files):
    data, files = model_files
    coord, atype, _ = random_frames(6, None, 1, seed=23, min_dist=0.95, extent=3.0)
    dp = DeepPot(str(files["pth"]))
    a = dp.eval(coord.reshape(1, -1), None, atype[0])
    b = dp.eval(coord, None, list(atype[0]))
    for x, y in zip(a, b, strict=True):
        assert_close(x, y, 1e-13, "same input")
    ref = reference.evaluate(data, coord, atype, None)
    assert_close(np.reshape(a[0], 1), ref[keys.ENERGY], TOL, "energy")
    assert_close(np.reshape(a[1], (1, 6, 3)), ref[keys.FORCE], TOL, "force")


def test_bad_input_raises_clear_errors(model_files, frames):
    _, files = model_files
    coord, atype, boxes = frames
    dp = DeepPot(str(files["dp"]), backend="numpy")
    bad = coord.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(DataError, match="frame 1"):
        dp.eval(bad.reshape(NF, -1), boxes, atype[0])
    wrong = atype[0].copy()
    wrong[2] = 2
    with pytest.raises(DataError, match="type 2"):
        dp.eval(coord.reshape(NF, -1), boxes, wrong)
    crowd, ctype, _ = random_frames(40, None, 1, seed=3, min_dist=0.5, extent=3.0)
    with pytest.raises(NeighborError, match="sel"):
        dp.eval(crowd.reshape(1, -1), None, ctype[0])


# -- ASE ---------------------------------------------------------------------------------------

ASE_CALC = Path(__file__).resolve().parents[1] / "deepmd_md" / "calculators" / "ase.py"


@pytest.fixture
def ase_atoms(model_files):
    if not ASE_CALC.exists():
        pytest.skip("deepmd_md/calculators/ase.py not written yet")
    ase = pytest.importorskip("ase")
    from deepmd_md.calculators.ase import DP

    coord, atype, boxes = random_frames(NAT, TRICLINIC_BOX, 1, seed=24, min_dist=0.95)
    atoms = ase.Atoms(symbols=["O" if t == 0 else "H" for t in atype[0]], positions=coord[0],
                      cell=boxes[0].reshape(3, 3), pbc=True)
    atoms.calc = DP(str(model_files[1]["pth"]))
    return atoms, (coord, atype, boxes)


def test_ase_energy_forces(model_files, ase_atoms):
    atoms, (coord, atype, boxes) = ase_atoms
    ref = reference.evaluate(model_files[0], coord, atype, boxes)
    assert atoms.get_potential_energy() == pytest.approx(ref[keys.ENERGY][0], abs=1e-10)
    assert_close(atoms.get_forces(), ref[keys.FORCE][0], TOL, "forces")
    assert_close(atoms.get_potential_energies(), ref[keys.ATOM_ENERGY][0], TOL, "energies")


def test_ase_stress_is_numerical_stress(ase_atoms):
    """ASE's own finite-difference stress (deforming the cell) equals the calculator's."""
    atoms, _ = ase_atoms
    stress = atoms.get_stress()
    numerical = atoms.calc.calculate_numerical_stress(atoms, d=1e-5)
    assert np.abs(stress).max() > 1e-4
    np.testing.assert_allclose(stress, numerical, rtol=0, atol=1e-7)


def test_ase_forces_are_numerical_forces(ase_atoms):
    atoms, _ = ase_atoms
    fd = atoms.calc.calculate_numerical_forces(atoms, d=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), fd, rtol=0, atol=1e-7)


def test_numpy_reference_says_it_is_slow(model_files, frames, capfd, monkeypatch):
    """The complex-step reference takes minutes per real frame: DeepPot says so once and
    reports each frame, so `dpmd test -b numpy` never looks hung."""
    monkeypatch.setattr(DeepPot, "_reference_noted", False)
    coord, atype, boxes = frames
    dp = DeepPot(str(model_files[1]["dp"]), backend="numpy")
    dp.eval(coord.reshape(NF, -1), boxes, atype[0])
    dp.eval(coord.reshape(NF, -1), boxes, atype[0])
    err = capfd.readouterr().err
    assert err.count("complex-step reference") == 1
    assert err.count(f"frame {NF}/{NF} ({NAT} atoms)") == 2


def test_jax_pads_ghosts_to_buckets(tmp_path):
    """JAX compiles per shape and the ghost count changes every frame: the model's lower entry
    gets the ghosts padded to size buckets. Frames with different ghost counts (a
    message-passing model: its mapping is padded too) equal the reference, and share one
    compiled shape (without the padding: one per ghost count, which made `dpmd test -b jax`
    of DPA-2 take minutes)."""
    pytest.importorskip("jax")
    from helpers import tiny_descriptors

    from deepmd_md.backends.jax import adapter as jax_adapter

    data = make_model(desc=tiny_descriptors()["dpa2:small"])
    save_dp(data, str(tmp_path / "m.dp"))
    coord, atype, boxes = random_frames(NAT, ORTHO_BOX, 1, seed=5, min_dist=0.95)
    coord, boxes = np.repeat(coord, 3, axis=0), np.repeat(boxes, 3, axis=0)
    coord[1, 0] -= 0.2  # one atom moved: 70 ghosts instead of 66 (both padded to 80)
    atype = np.repeat(atype, 3, axis=0)
    dp = DeepPot(str(tmp_path / "m.dp"), backend="jax")
    out = [dp.eval(coord[i:i + 1].reshape(1, -1), boxes[i:i + 1], atype[0]) for i in range(3)]
    e, f = (np.concatenate([o[k] for o in out]) for k in (0, 1))
    ref = reference.evaluate(data, coord, atype, boxes)
    assert_close(np.reshape(e, 3), ref[keys.ENERGY], TOL, "energy")
    assert_close(np.reshape(f, (3, NAT, 3)), ref[keys.FORCE], TOL, "force")
    from deepmd_md.model.frames import prepare_frames

    ghosts = set()
    for i in range(3):
        prep = prepare_frames(data["config"], coord[i:i + 1], atype[i:i + 1], boxes[i:i + 1])
        ghosts.add(prep[keys.MAPPING].shape[1] - NAT)
    fn = next(iter(jax_adapter._LOWER_CACHE.values()))
    assert len(ghosts) == 2 and fn._cache_size() == 1, (ghosts, fn._cache_size())

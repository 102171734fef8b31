"""Round trips: `.dp` (backend-neutral HDF5) and `.pth` (TorchScript + metadata for C++)."""

from __future__ import annotations

import json
import zipfile

import h5py
import numpy as np
import pytest
from helpers import (
    ORTHO_BOX,
    TRICLINIC_BOX,
    as_float32,
    assert_close,
    make_model,
    random_frames,
)
from mixins import fold, raw_neighbor_list

from deepmd_md import keys
from deepmd_md.backends.numpy import reference
from deepmd_md.data.neighbor import extend_coord
from deepmd_md.errors import ModelFileError
from deepmd_md.serialize import load_dp, save_dp
from deepmd_md.tree import flatten

torch = pytest.importorskip("torch")

from deepmd_md.backends.torch.freeze import freeze_pth  # noqa: E402
from deepmd_md.infer import DeepPot  # noqa: E402
from deepmd_md.infer.deep_pot import load_model_data  # noqa: E402

TOL = 1e-10


def assert_same_model(a: dict, b: dict):
    """Identical config and identical arrays (values, dtypes, shapes) in every tree."""
    assert json.loads(json.dumps(a["config"])) == json.loads(json.dumps(b["config"]))
    for tree in ("params", "buffers"):
        fa, fb = flatten(a[tree]), flatten(b[tree])
        assert list(fa) == list(fb) or sorted(fa) == sorted(fb), tree
        for k in fa:
            x, y = np.asarray(fa[k]), np.asarray(fb[k])
            assert x.dtype == y.dtype and x.shape == y.shape, f"{tree}/{k}"
            assert np.array_equal(x, y), f"{tree}/{k} differs"


# -- .dp ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("descriptor", ["se_e2_a", "se_e2_r"])
def test_dp_round_trip(tmp_path, descriptor, precision):
    data = make_model(descriptor, type_one_side=False, resnet_dt=True)
    if precision == "float32":
        data = as_float32(data)
    path = tmp_path / "model.dp"
    save_dp(data, str(path))
    back = load_dp(str(path))
    assert_same_model(data, back)
    coord, atype, boxes = random_frames(10, ORTHO_BOX, 2, seed=1, min_dist=0.95)
    e0 = reference.evaluate(data, coord, atype, boxes)
    e1 = reference.evaluate(back, coord, atype, boxes)
    for k in (keys.ENERGY, keys.FORCE, keys.VIRIAL):
        assert np.array_equal(e0[k], e1[k]), k
    assert not list(tmp_path.glob(".tmp-*")), "temporary file left behind"


def test_dp_file_is_versioned_hdf5(tmp_path):
    """The documented layout: attrs format/version/config; groups params and buffers."""
    data = make_model()
    path = tmp_path / "model.dp"
    save_dp(data, str(path))
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "deepmd_md.model"
        assert int(f.attrs["version"]) >= 1
        assert json.loads(f.attrs["config"])["descriptor"]["sel"] == data["config"][
            "descriptor"]["sel"]
        w = f["params/descriptor/t0/layers/0/w"][()]
    assert np.array_equal(w, data["params"]["descriptor"]["t0"]["layers"][0]["w"])


def test_dp_newer_version_and_foreign_hdf5_are_refused(tmp_path):
    data = make_model()
    newer = tmp_path / "newer.dp"
    save_dp(data, str(newer))
    with h5py.File(newer, "a") as f:
        f.attrs["version"] = 999
    with pytest.raises(ModelFileError, match="version 999"):
        load_dp(str(newer))
    foreign = tmp_path / "foreign.dp"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ModelFileError):
        load_dp(str(foreign))


# -- .pth --------------------------------------------------------------------------------------


def pth_metadata(path) -> dict:
    """metadata.json read straight from the TorchScript zip (as a C++ loader would)."""
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/extra/metadata.json"))
        return json.loads(z.read(name))


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    data = make_model(type_one_side=False, sel=(14, 18))
    path = tmp_path_factory.mktemp("pth") / "model.pth"
    freeze_pth(data, str(path))
    return data, path


def test_pth_metadata(frozen):
    data, path = frozen
    meta = pth_metadata(path)
    assert meta["type_map"] == ["O", "H"]
    assert meta["rcut"] == pytest.approx(3.5)
    assert meta["sel"] == [14, 18] and meta["nnei"] == 32
    assert meta["precision"] == "float64"
    assert meta["outputs"]["energy"]["reducible"] is True
    assert meta["outputs"]["energy"]["r_differentiable"] is True


def test_pth_metadata_float32(tmp_path):
    path = tmp_path / "m32.pth"
    freeze_pth(as_float32(make_model("se_e2_r")), str(path))
    meta = pth_metadata(path)
    assert meta["precision"] == "float32" and meta["sel"] == [16, 16] and meta["nnei"] == 32


def test_pth_carries_the_model(frozen):
    data, path = frozen
    assert_same_model(data, load_model_data(str(path)))


@pytest.mark.parametrize("nat,box", [(20, TRICLINIC_BOX), (2, None), (7, None)],
                         ids=["20-atoms-triclinic", "2-atoms-nopbc", "7-atoms-nopbc"])
def test_pth_equals_in_memory_model(frozen, nat, box):
    """DeepPot on the .pth == the reference on the in-memory model, at atom counts other than
    the trace example's (3 local, 6 extended atoms)."""
    data, path = frozen
    coord, atype, boxes = random_frames(nat, box, 2, seed=nat, min_dist=0.95, extent=2.5)
    if nat == 2:  # a close dimer
        coord = np.array([[[0.0, 0.0, 0.0], [1.1, 0.5, -0.3]], [[0.2, 0.1, 0.0], [0.0, 1.3, 0.2]]])
    ref = reference.evaluate(data, coord, atype, boxes)
    e, f, v = DeepPot(str(path)).eval(coord.reshape(2, -1), boxes, atype[0])
    assert_close(e.reshape(2), ref[keys.ENERGY], TOL, "energy")
    assert_close(np.reshape(f, (2, nat, 3)), ref[keys.FORCE], TOL, "force")
    assert_close(np.reshape(v, (2, 9)), ref[keys.VIRIAL], TOL, "virial")
    assert np.abs(ref[keys.FORCE]).max() > 1e-3  # interacting


def test_pth_forward_lower_raw_nlist(frozen):
    """forward_lower with a raw neighbor list (unsorted, every extended atom as a candidate,
    most beyond rcut, -1 holes) == forward and the reference."""
    data, path = frozen
    module = torch.jit.load(str(path))
    coord, atype, boxes = random_frames(9, ORTHO_BOX, 1, seed=4, min_dist=0.95)
    ext, ext_atype, mapping, _ = extend_coord(coord, atype, boxes, 3.5)
    nlist = raw_neighbor_list(ext, 9, seed=2, extra=7)
    assert nlist.shape[2] > 32  # longer than nnei
    lo = module.forward_lower(torch.tensor(ext), torch.tensor(ext_atype), torch.tensor(nlist),
                              torch.tensor(mapping), None, None, True)
    fwd = module.forward(torch.tensor(coord), torch.tensor(atype), torch.tensor(boxes), None,
                         None, True)
    ref = reference.evaluate(data, coord, atype, boxes)
    ef = lo["extended_force"].numpy()
    assert_close(lo["energy"].numpy(), ref[keys.ENERGY], TOL, "lower energy")
    assert_close(lo["atom_energy"].numpy(), ref[keys.ATOM_ENERGY], TOL, "lower atom energy")
    assert_close(fold(ef, mapping, 9), ref[keys.FORCE], TOL, "lower force folded")
    assert_close(lo["virial"].numpy(), ref[keys.VIRIAL], TOL, "lower virial")
    assert_close(fwd["force"].numpy(), ref[keys.FORCE], TOL, "forward force")
    # per-atom virials folded onto owners sum to the virial
    av = lo["extended_virial"].numpy()
    assert_close(av.sum(1), ref[keys.VIRIAL], TOL, "extended atom virial sum")
    assert_close(fwd["atom_virial"].numpy().sum(1), ref[keys.VIRIAL], TOL, "atom virial sum")


def test_pth_forward_lower_short_nlist(frozen):
    """A raw list narrower than max(sel) (3 atoms, 2 candidates each) is accepted."""
    data, path = frozen
    module = torch.jit.load(str(path))
    coord = np.array([[[0.0, 0.0, 0.0], [1.0, 0.2, 0.0], [-0.3, 1.1, 0.4]]])
    atype = np.array([[0, 1, 1]])
    nlist = np.array([[[2, 1], [0, 2], [1, 0]]])
    lo = module.forward_lower(torch.tensor(coord), torch.tensor(atype), torch.tensor(nlist),
                              None, None, None, False)
    ref = reference.evaluate(data, coord, atype, None)
    assert_close(lo["energy"].numpy(), ref[keys.ENERGY], TOL, "energy")
    assert_close(lo["extended_force"].numpy(), ref[keys.FORCE], TOL, "force")


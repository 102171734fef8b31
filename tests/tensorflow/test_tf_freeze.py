"""The frozen `.pb` (freeze_pb) run as a plain TF1 graph: the shared BackendMixin for every
descriptor (forward by folding forward_lower's ghost forces), its metadata and .dp round trip,
and clear errors for files that are not a deepmd_md .pb."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_model
from mixins import FAMILY_VARIANTS, BackendMixin, raw_neighbor_list

from deepmd_md import keys
from deepmd_md.errors import ModelFileError
from deepmd_md.model.frames import prepare_frames
from deepmd_md.tree import flatten

pytest.importorskip("tensorflow")


_GRAPHS: dict = {}  # model content -> the loaded .pb (the mixin's tests share a variant's model)


def _key(data) -> str:
    flat = flatten({"p": data["params"], "b": data["buffers"]})
    return json.dumps(data["config"], sort_keys=True) + "".join(
        f"{k}{np.asarray(v).dtype}{np.asarray(v).tobytes().hex()[:64]}{float(np.sum(v))!r}"
        for k, v in flat.items())


class TestFrozenPb(BackendMixin):
    variants = FAMILY_VARIANTS  # the adapter's tests run them all
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def graph(self, data):
        from deepmd_md.backends.tensorflow.freeze import freeze_pb, load_pb

        key = _key(data)
        if key not in _GRAPHS:
            path = self.tmp / "m.pb"
            freeze_pb(data, str(path))
            _GRAPHS[key] = load_pb(str(path))
        return _GRAPHS[key]

    def evaluate(self, data, coord, atype, box):
        prep = prepare_frames(data["config"], coord, atype, box)
        mapping = prep[keys.MAPPING]
        ext = np.take_along_axis(coord, mapping[..., None], axis=1) + prep[keys.SHIFT]
        nat = coord.shape[1]
        out = self.graph(data)(ext, prep[keys.EXT_ATYPE], raw_neighbor_list(ext, nat), mapping)
        force = np.zeros_like(coord)
        for f in range(coord.shape[0]):
            np.add.at(force[f], mapping[f], out["extended_force"][f])
        return {keys.ENERGY: out["energy"], keys.ATOM_ENERGY: out["atom_energy"],
                keys.FORCE: force, keys.VIRIAL: out["virial"]}

    def evaluate_lower(self, data, ext_coord, ext_atype, nlist, raw_nlist, mapping):
        return self.graph(data)(ext_coord, ext_atype, raw_nlist, mapping)


def test_pb_round_trip_and_metadata(tmp_path):
    from deepmd_md.backends.tensorflow.freeze import read_metadata
    from deepmd_md.formats import read_model, write_model

    data = make_model()
    path = str(tmp_path / "model.pb")
    write_model(data, path)
    back = read_model(path)
    assert back["config"] == data["config"]
    a, b = flatten(data["params"]), flatten(back["params"])
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    meta = read_metadata(path)
    assert meta["type_map"] == ["O", "H"] and meta["rcut"] == 3.5 and meta["blocked"] is False
    assert meta["format"] == "deepmd_md.pb"


def test_bad_pb_files_say_so(tmp_path):
    from deepmd_md.backends.tensorflow.freeze import freeze_pb, read_pb

    good = tmp_path / "good.pb"
    freeze_pb(make_model(), str(good))
    trunc = tmp_path / "trunc.pb"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\xff" * 64)
    for p in (trunc, junk):
        with pytest.raises(ModelFileError, match="cannot read|without the"):
            read_pb(str(p))
    with pytest.raises(ModelFileError, match="not found"):
        read_pb(str(tmp_path / "none.pb"))


@pytest.mark.parametrize("desc", [None, "dpa3:default"])
def test_one_pb_serves_any_atom_count(tmp_path, desc):
    """Every size is dynamic: one graph, systems of 9 and 14 atoms (and chunks of local atoms
    with fewer candidates than sel), = the NumPy reference."""
    from helpers import ORTHO_BOX, random_frames, tiny_descriptors

    from deepmd_md.backends.numpy import reference
    from deepmd_md.backends.tensorflow.freeze import freeze_pb, load_pb

    data = make_model() if desc is None else make_model(desc=tiny_descriptors()[desc])
    path = str(tmp_path / "m.pb")
    freeze_pb(data, path)
    run = load_pb(path)
    for nat in (9, 14):
        coord, atype, boxes = random_frames(nat, ORTHO_BOX, 1, seed=nat, min_dist=0.95)
        ref = reference.evaluate(data, coord, atype, boxes)
        prep = prepare_frames(data["config"], coord, atype, boxes)
        mapping = prep[keys.MAPPING]
        ext = np.take_along_axis(coord, mapping[..., None], axis=1) + prep[keys.SHIFT]
        out = run(ext, prep[keys.EXT_ATYPE], prep[keys.NLIST][..., :3], mapping)  # 3 < sel
        assert out["atom_energy"].shape == (1, nat)
        full = run(ext, prep[keys.EXT_ATYPE], raw_neighbor_list(ext, nat), mapping)
        assert np.abs(full["energy"] - ref[keys.ENERGY]).max() < 1e-10
        force = np.zeros_like(coord)
        np.add.at(force[0], mapping[0], full["extended_force"][0])
        assert np.abs(force - ref[keys.FORCE]).max() < 1e-10
        assert np.abs(full["virial"] - ref[keys.VIRIAL]).max() < 1e-10


def test_deeppot_on_pb_with_tensorflow(tmp_path):
    """DeepPot("model.pb", backend="tensorflow"): the .pb's weights through the TF adapter,
    with per-atom virials, = the NumPy reference."""
    from helpers import TRICLINIC_BOX, random_frames

    from deepmd_md.backends.numpy import reference
    from deepmd_md.backends.tensorflow.freeze import freeze_pb
    from deepmd_md.infer.deep_pot import DeepPot

    data = make_model()
    path = str(tmp_path / "m.pb")
    freeze_pb(data, path)
    coord, atype, boxes = random_frames(10, TRICLINIC_BOX, 2, seed=5, min_dist=0.95)
    ref = reference.evaluate(data, coord, atype, boxes)
    e, f, v, ae, av = DeepPot(path, backend="tensorflow").eval(
        coord.reshape(2, -1), boxes, atype[0], atomic=True)
    assert np.abs(e[:, 0] - ref[keys.ENERGY]).max() < 1e-10
    assert np.abs(f - ref[keys.FORCE]).max() < 1e-10
    assert np.abs(v - ref[keys.VIRIAL]).max() < 1e-10
    assert np.abs(av.sum(1) - ref[keys.VIRIAL]).max() < 1e-10

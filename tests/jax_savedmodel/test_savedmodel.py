"""JAX `.savedmodel` (jax2tf): written by freeze_savedmodel, run by TensorFlow in another process.

The BackendMixin checks (NumPy reference, <= 1e-10 fp64) on the SavedModel's `forward_lower`
signature for se_e2_a, se_atten, DPA-2 and DPA-3 tiny models; size buckets (padding changes no
number, and an MD-like sequence of sizes compiles once per bucket); `dpmd freeze -o
NAME.savedmodel` from a checkpoint; read back (identical weights); bad input.
TensorFlow never enters this process (tf_worker.py runs it), so Paddle tests may share it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import TRICLINIC_BOX, make_model, run_dpmd
from mixins import VARIANTS, BackendMixin, _system, fold, raw_neighbor_list

from deepmd_md import keys
from deepmd_md.backends.numpy import reference
from deepmd_md.errors import ModelFileError
from deepmd_md.model.frames import prepare_frames
from deepmd_md.tree import flatten

pytest.importorskip("jax")
if importlib.util.find_spec("tensorflow") is None:  # found, never imported here
    pytest.skip("tensorflow is not installed (pip install 'deepmd-md[tensorflow]')",
                allow_module_level=True)

from deepmd_md.backends.jax.savedmodel import (  # noqa: E402
    BUCKETS,
    bucket,
    freeze_savedmodel,
    read_savedmodel,
)

HERE = Path(__file__).resolve().parent
# one typed, one attention, two message-passing models; each variant is one export and one
# compile (~10 s); DPMD_SAVEDMODEL_ALL=1 runs every variant of the mixin (~5 min)
SM_VARIANTS = (list(VARIANTS) if os.environ.get("DPMD_SAVEDMODEL_ALL")
               or os.environ.get("DPMD_MD_FULL_TESTS") else
               ["triclinic", "se_atten:v2", "dpa2:small", "dpa3:default"])


class Worker:
    """tf_worker.py, kept alive for the module; counts TensorFlow's XLA compilations."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.log = open(tmp / "tf_worker.log", "w+")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="device_compiler=1",
                   OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "tf_worker.py")], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        self.n = 0

    def call(self, path, coord, atype, nlist, mapping) -> dict:
        self.n += 1
        inp, out = self.tmp / f"in{self.n}.npz", self.tmp / f"out{self.n}.npz"
        np.savez(inp, path=str(path), extended_coord=np.asarray(coord, np.float64),
                 extended_atype=np.asarray(atype, np.int64), nlist=np.asarray(nlist, np.int64),
                 mapping=np.asarray(mapping, np.int64))
        self.proc.stdin.write(f"{inp} {out}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer == "ok", answer or self._tail()
        return dict(np.load(out))

    def strings(self, path) -> dict:
        """The string outputs of the `metadata` and `model_dp` signatures."""
        self.n += 1
        inp, out = self.tmp / f"in{self.n}.npz", self.tmp / f"out{self.n}.npz"
        np.savez(inp, path=str(path), strings=True)
        self.proc.stdin.write(f"{inp} {out}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer == "ok", answer or self._tail()
        return {k: v.tobytes() for k, v in np.load(out).items()}

    def compiles(self) -> int:
        self.log.flush()
        return len(re.findall(r"Compilation of XLA executable", Path(self.log.name).read_text()))

    def _tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-2000:]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    w = Worker(tmp_path_factory.mktemp("tf_worker"))
    yield w
    w.close()


@pytest.fixture(scope="module", autouse=True)
def _export_at_once(tmp_path_factory):
    """The module's models exported by one child process (the same code freeze_savedmodel
    runs, once per model): one TensorFlow + JAX start instead of five."""
    from helpers import as_float32

    from deepmd_md.serialize import save_dp

    root = tmp_path_factory.getbasetemp()
    models = [make_model(**VARIANTS[v][0]) for v in SM_VARIANTS] + [as_float32(make_model())]
    argv = []
    for data in models:
        d = Path(tempfile.mkdtemp(dir=root))
        save_dp(data, str(d / "model.dp"))
        argv += [str(d / "model.dp"), str(d / "model.savedmodel")]
        _FROZEN[_key(data)] = d / "model.savedmodel"
    r = subprocess.run([sys.executable, "-m", "deepmd_md.backends.jax.savedmodel", *argv],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


_FROZEN: dict = {}


def _key(data: dict) -> str:
    h = hashlib.sha1(json.dumps(data["config"], sort_keys=True).encode())
    for tree in ("params", "buffers"):
        for k, v in sorted(flatten(data[tree]).items()):
            h.update(k.encode() + np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def frozen(data: dict, root: Path) -> Path:
    """The SavedModel of `data` (one export per distinct model in this module)."""
    if _key(data) not in _FROZEN:
        path = Path(tempfile.mkdtemp(dir=root)) / "model.savedmodel"
        freeze_savedmodel(data, str(path))
        _FROZEN[_key(data)] = path
    return _FROZEN[_key(data)]


def extended(data, coord, atype, boxes):
    """(ext_coord, ext_atype, mapping, raw nlist) of frames, as an engine would pass them."""
    prep = prepare_frames(data["config"], coord, atype, boxes)
    mapping = prep[keys.MAPPING]
    ext = np.take_along_axis(coord, mapping[..., None], axis=1) + prep[keys.SHIFT]
    return ext, prep[keys.EXT_ATYPE], mapping, raw_neighbor_list(ext, coord.shape[1])


class TestSavedModel(BackendMixin):
    """`forward_lower` of the SavedModel; `evaluate` (forward) = forward_lower on the periodic
    images of prepare_frames with an unsorted raw list, ghost forces folded onto owners."""

    fp32_rtol = 1e-4

    @pytest.fixture(autouse=True)
    def _setup(self, worker, tmp_path_factory):
        self.worker = worker
        self.root = tmp_path_factory.getbasetemp()

    def evaluate(self, data, coord, atype, box):
        ext, ext_atype, mapping, nlist = extended(data, coord, atype, box)
        out = self.worker.call(frozen(data, self.root), ext, ext_atype, nlist, mapping)
        nat = coord.shape[1]
        return {keys.ENERGY: out["energy"], keys.ATOM_ENERGY: out["atom_energy"],
                keys.FORCE: fold(out["extended_force"], mapping, nat), keys.VIRIAL: out["virial"]}

    def evaluate_lower(self, data, ext_coord, ext_atype, nlist, raw_nlist, mapping):
        out = self.worker.call(frozen(data, self.root), ext_coord, ext_atype, raw_nlist, mapping)
        return {keys.ATOM_ENERGY: out["atom_energy"], keys.EXT_FORCE: out["extended_force"]}

    # the mixin's checks, on the variants exported here (each export ~10 s; the JAX adapter's
    # own tests run every variant on the same function)
    @pytest.mark.parametrize("variant", SM_VARIANTS)
    def test_matches_reference(self, variant):
        super().test_matches_reference(variant)

    @pytest.mark.parametrize("variant", SM_VARIANTS)
    def test_forward_lower_folds_to_forward(self, variant):
        super().test_forward_lower_folds_to_forward(variant)

    def test_virials_and_signatures(self):
        """virial = sum r x F over every row; the per-atom virials sum to it (DPA-2: a
        message-passing model); the metadata and model_dp signatures hold the assets."""
        data = make_model(**VARIANTS["dpa2:small"][0])
        coord, atype, boxes = _system(12, TRICLINIC_BOX, 1)
        ext, ext_atype, mapping, nlist = extended(data, coord, atype, boxes)
        path = frozen(data, self.root)
        out = self.worker.call(path, ext, ext_atype, nlist, mapping)
        ref = reference.evaluate(data, coord, atype, boxes)
        assert abs(out["energy"][0] - ref[keys.ENERGY][0]) < 1e-10
        strings = self.worker.strings(path)
        assert strings["metadata"] == (path / "assets" / "metadata.json").read_bytes()
        assert strings["model_dp"] == (path / "assets" / "model.dp").read_bytes()
        assert np.allclose(out["virial"], np.einsum("fja,fjb->fab", ext,
                                                    out["extended_force"]).reshape(1, 9),
                           atol=1e-10)
        assert np.allclose(out["extended_virial"].sum(1), out["virial"], atol=1e-10)


def test_buckets_pad_exactly_and_bound_compiles(worker, tmp_path_factory):
    """Sizes inside one bucket (more ghosts that nobody lists, wider neighbor rows) give the
    same numbers and share one compilation; a size past the bucket compiles once more."""
    data = make_model(**VARIANTS["se_atten:v2"][0])
    path = frozen(data, tmp_path_factory.getbasetemp())
    coord, atype, boxes = _system(12, TRICLINIC_BOX, 1)
    ext, ext_atype, mapping, nlist = extended(data, coord, atype, boxes)
    nloc, nall, nnei = nlist.shape[1], ext.shape[1], nlist.shape[2]

    def grown(extra_ghosts, extra_cols):
        far = np.full((1, extra_ghosts, 3), 1.0e3)  # listed by nobody: must change nothing
        return (np.concatenate([ext, far], 1),
                np.concatenate([ext_atype, np.zeros((1, extra_ghosts), np.int64)], 1),
                np.concatenate([nlist, np.full((1, nloc, extra_cols), -1)], 2),
                np.concatenate([mapping, np.zeros((1, extra_ghosts), np.int64)], 1))

    base = worker.call(path, ext, ext_atype, nlist, mapping)
    n0 = worker.compiles()
    room_g = bucket(nall - nloc) - (nall - nloc)
    room_n = bucket(nnei) - nnei
    assert room_g > 0 and room_n > 0, "the test system sits on a bucket edge"
    for g, c in [(1, 0), (room_g, 1), (0, room_n), (room_g // 2, room_n)]:
        out = worker.call(path, *grown(g, c))
        assert np.abs(out["atom_energy"] - base["atom_energy"]).max() < 1e-12
        assert np.abs(out["extended_force"][:, :nall] - base["extended_force"]).max() < 1e-12
        assert np.abs(out["extended_force"][:, nall:]).max(initial=0.0) == 0.0
    assert worker.compiles() == n0, "a size inside the bucket compiled again"
    worker.call(path, *grown(room_g + 1, 0))
    assert worker.compiles() == n0 + 1


def test_bucket_sizes():
    assert [bucket(n) for n in (1, 3, 64, 65, 81, 1000)] == [1, 4, 64, 80, 104, 1096]
    steps = BUCKETS[7:40] / BUCKETS[6:39]
    assert steps.max() < 1.31 and steps.min() >= 1.25  # ~25% steps beyond 64 (multiples of 8)


def test_freeze_cli_and_read_back(tmp_path):
    """`dpmd freeze -c CKPT -o m.savedmodel`: a folder with metadata (the torch freezer's keys)
    and the model's .dp; read_model gives the same weights; writing again replaces it."""
    from deepmd_md.formats import read_model
    from deepmd_md.serialize import save_dp

    data = make_model(**VARIANTS["dpa3:default"][0])
    save_dp(data, str(tmp_path / "model.ckpt"))
    r = run_dpmd("freeze", "-c", "model.ckpt", "-o", "m.savedmodel", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    sm = tmp_path / "m.savedmodel"
    assert (sm / "saved_model.pb").is_file()
    meta = json.loads((sm / "assets" / "metadata.json").read_text())
    for k in ("type_map", "rcut", "sel", "nnei", "dim_fparam", "dim_aparam", "precision",
              "message_passing", "blocked", "mixed_types", "outputs", "receptive_field"):
        assert k in meta, k
    assert meta["message_passing"] is True and meta["type_map"] == ["O", "H"]
    back = read_model(str(sm))
    assert back["config"] == data["config"]
    a, b = flatten(data["params"]), flatten(back["params"])
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert sorted(os.listdir(tmp_path)) == ["m.savedmodel", "model.ckpt"]  # no temp left


def test_bad_input(tmp_path):
    (tmp_path / "empty.savedmodel").mkdir()
    with pytest.raises(ModelFileError, match="not a SavedModel"):
        read_savedmodel(str(tmp_path / "empty.savedmodel"))
    (tmp_path / "file.savedmodel").write_text("x")
    with pytest.raises(ModelFileError, match="not a SavedModel"):
        read_savedmodel(str(tmp_path / "file.savedmodel"))
    r = run_dpmd("freeze", "-c", "nothing.ckpt", "-o", "m.savedmodel", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("dpmd: error:")
    assert not (tmp_path / "m.savedmodel").exists()

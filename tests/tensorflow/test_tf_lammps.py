"""The .pb in the real LAMMPS (pair_style deepmd over the core's TensorFlow backend): the same
thermo as the .pth of the same model on 1 and 2 ranks over 10 MD steps, per-atom energies and
forces too; message-passing .pb (DPA-2, DPA-3) likewise through the exchange op.
Also the core on a TensorFlow-native SavedModel folder (the .savedmodel contract)."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ORTHO_BOX, make_model, random_frames, tiny_descriptors

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lammps"))
from lammps_helpers import (  # noqa: E402
    assert_same_run,
    lammps_env,
    run_driver,
    water_nve,
    water_nve_lines,
)

pytest.importorskip("tensorflow")
STEPS = 10


@pytest.fixture(scope="module")
def lmp_env():
    return lammps_env("libdpmd_backend_tensorflow.so")


def frozen(tmp_path, data):
    """The same ModelData as .pth and .pb."""
    pytest.importorskip("torch")
    from deepmd_md.backends.tensorflow.freeze import freeze_pb
    from deepmd_md.backends.torch.freeze import freeze_pth

    pth, pb = tmp_path / "m.pth", tmp_path / "m.pb"
    freeze_pth(data, str(pth))
    freeze_pb(data, str(pb))
    return pth, pb


def md(model, tmp, env, np_):
    return water_nve(model, tmp, env, np_, steps=STEPS)


def test_pb_same_thermo_as_pth_on_1_and_2_ranks(tmp_path, lmp_env):
    pth, pb = frozen(tmp_path, make_model())
    ref = md(pth, tmp_path / "pth1", lmp_env, 1)
    assert len(ref["pe_steps"]) == STEPS + 1
    for np_ in (1, 2):
        assert_same_run(md(pb, tmp_path / f"pb{np_}", lmp_env, np_), ref, what=f"{np_} ranks")


@pytest.mark.parametrize("desc", ["dpa2:small", "dpa3:default"])
def test_message_passing_pb_same_thermo_on_1_and_2_ranks(tmp_path, lmp_env, desc):
    """DPA-2/DPA-3 .pb: the graph's DpmdGhostExchange op takes LAMMPS' exchange across ranks."""
    from deepmd_md.backends.tensorflow.freeze import read_metadata

    pth, pb = frozen(tmp_path, make_model(desc=tiny_descriptors()[desc]))
    if "exchange" not in read_metadata(str(pb)):
        pytest.skip("libdpmd_tf_ops.so is not built: the .pb has no exchange op")
    ref = md(pth, tmp_path / "pth", lmp_env, 1)
    for np_ in (1, 2):
        assert_same_run(md(pb, tmp_path / f"pb{np_}", lmp_env, np_), ref, what=f"{np_} ranks")


@pytest.mark.parametrize("fmt", [".pb", ".savedmodel", "dpa2:small.savedmodel"])
def test_core_runs_tensorflow_files(tmp_path, fmt):
    """dpmd_compute with the core's own images and lists on a .pb and on a SavedModel folder
    written by TensorFlow (the signatures of docs/backend_tensorflow.md) = NumPy reference;
    a message-passing SavedModel goes through its exchange op (the core's own exchange)."""
    from capi import DP, IP, Input, Output, load_core

    from deepmd_md.backends.numpy import reference
    from deepmd_md.backends.tensorflow.freeze import freeze_pb, write_savedmodel

    lib = load_core()
    if lib is None:
        pytest.skip("libdpmd_core.so is not built")
    desc, _, suffix = fmt.rpartition(".")
    data = make_model(desc=tiny_descriptors()[desc]) if desc else make_model()
    path = str(tmp_path / f"m.{suffix}")
    (freeze_pb if suffix == "pb" else write_savedmodel)(data, path)
    model = lib.dpmd_model_load(path.encode())
    assert model, lib.dpmd_last_error().decode()
    try:
        coord, atype, boxes = random_frames(12, ORTHO_BOX, seed=4)
        ref = reference.evaluate(data, coord, atype, boxes)
        x, t = np.ascontiguousarray(coord[0]), np.ascontiguousarray(atype[0], dtype=np.int32)
        b = np.ascontiguousarray(ORTHO_BOX, dtype=np.float64)
        force, ae = np.zeros((12, 3)), np.zeros(12)
        inp = Input(nloc=12, nghost=0, coord=x.ctypes.data_as(DP), atype=t.ctypes.data_as(IP),
                    box=b.ctypes.data_as(DP))
        out = Output(force=force.ctypes.data_as(DP), atom_energy=ae.ctypes.data_as(DP))
        assert lib.dpmd_compute(model, ctypes.byref(inp), ctypes.byref(out)) == 0, \
            lib.dpmd_last_error().decode()
        assert abs(out.energy - ref["energy"][0]) < 1e-10
        assert np.abs(force - ref["force"][0]).max() < 1e-10
        assert np.abs(ae - ref["atom_energy"][0]).max() < 1e-10
        assert np.abs(np.array(out.virial[:]) - ref["virial"][0]).max() < 1e-10
    finally:
        lib.dpmd_model_free(model)


@pytest.mark.parametrize("case", ["truncated", "junk", "empty_folder"])
def test_core_bad_tensorflow_files_one_error(tmp_path, case):
    from capi import load_core

    from deepmd_md.backends.tensorflow.freeze import freeze_pb

    lib = load_core()
    if lib is None:
        pytest.skip("libdpmd_core.so is not built")
    if case == "empty_folder":
        path = tmp_path / "m.savedmodel"
        path.mkdir()
    else:
        good = tmp_path / "good.pb"
        freeze_pb(make_model(), str(good))
        path = tmp_path / "m.pb"
        blob = good.read_bytes()
        path.write_bytes(blob[: len(blob) // 2] if case == "truncated" else b"\x07junk" * 50)
    assert not lib.dpmd_model_load(str(path).encode())
    msg = lib.dpmd_last_error().decode()
    assert "\n" not in msg.strip() and ("GraphDef" in msg or "SavedModel" in msg), msg


def test_pb_threads_same_as_one_thread(tmp_path, lmp_env):
    """OMP_NUM_THREADS=2 in one rank: the core runs chunks of 17 atoms on two TF sessions at
    once; the same energies, forces and per-atom energies as one thread."""
    _, pb = frozen(tmp_path, make_model())
    spec = {"commands": water_nve_lines(pb), "computes_peratom": [["pea", 1]]}
    runs = {t: run_driver(spec, tmp_path / t, dict(lmp_env, OMP_NUM_THREADS=t,
                                                   DPMD_MD_CHUNK="17"))
            for t in ("1", "2")}
    assert abs(runs["1"]["pe"] - runs["2"]["pe"]) <= 1e-10
    for key in ("f", "pea"):
        np.testing.assert_allclose(runs["2"][key], runs["1"][key], rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("suffix", ["pb", "savedmodel"])
def test_core_widened_ghost_shell(tmp_path, suffix):
    """A DPA-2 TensorFlow model, ghosts out to the receptive field, no exchange, no mapping: the
    core evaluates every atom and weighs the local ones (the graph's atom_weight input);
    the NumPy reference's numbers."""
    from capi import DP, IP, Input, Output, load_core

    from deepmd_md.backends.numpy import reference
    from deepmd_md.backends.tensorflow.freeze import freeze_pb, read_metadata, write_savedmodel
    from deepmd_md.data.neighbor import extend_coord

    lib = load_core()
    if lib is None:
        pytest.skip("libdpmd_core.so is not built")
    data = make_model(desc=tiny_descriptors()["dpa2:small"])
    path = str(tmp_path / f"m.{suffix}")
    (freeze_pb if suffix == "pb" else write_savedmodel)(data, path)
    if suffix == "pb" and not read_metadata(path).get("exchange", {}).get("weighted"):
        pytest.skip("libdpmd_tf_ops.so is not built")
    model = lib.dpmd_model_load(path.encode())
    assert model, lib.dpmd_last_error().decode()
    try:
        field = lib.dpmd_model_receptive_field(model)
        coord, atype, box = random_frames(10, ORTHO_BOX, seed=8)
        ext, eatype, mapping, _ = extend_coord(coord, atype, box, field + 0.5)
        nall = ext.shape[1]
        x = np.ascontiguousarray(ext[0], dtype=np.float64)
        t = np.ascontiguousarray(eatype[0], dtype=np.int32)
        force, ae = np.zeros((nall, 3)), np.zeros(10)
        inp = Input(nloc=10, nghost=nall - 10, coord=x.ctypes.data_as(DP),
                    atype=t.ctypes.data_as(IP), ghost_cutoff=field + 0.5)
        out = Output(force=force.ctypes.data_as(DP), atom_energy=ae.ctypes.data_as(DP))
        assert lib.dpmd_compute(model, ctypes.byref(inp), ctypes.byref(out)) == 0, \
            lib.dpmd_last_error().decode()
        ref = reference.evaluate(data, coord, atype, box[None] if box.ndim == 1 else box)
        folded = np.zeros((10, 3))
        np.add.at(folded, mapping[0], force)
        assert abs(out.energy - ref["energy"][0]) < 1e-10
        assert np.abs(folded - ref["force"][0]).max() < 1e-10
        assert np.abs(ae - ref["atom_energy"][0]).max() < 1e-10
        assert np.abs(np.array(out.virial[:]) - ref["virial"][0]).max() < 1e-10
    finally:
        lib.dpmd_model_free(model)

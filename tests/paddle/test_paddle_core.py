"""The C++ core with the Paddle backend (libdpmd_backend_paddle.so), called through the C API:
a frozen .json of every tiny descriptor (message-passing ones in one domain) = the NumPy
reference; bad .json files give one clear error line."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from capi import DP, IP, Input, Output
from helpers import (
    TRICLINIC_BOX,
    as_float32,
    assert_close,
    make_model,
    random_frames,
    tiny_descriptors,
)

from deepmd_md.backends.numpy import reference

pytest.importorskip("paddle")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_paddle_lammps import PRIVATE_CORE  # noqa: E402


@pytest.fixture(scope="module")
def core():
    """The core that loads .json: the installed one when the Paddle backend is beside it, else
    the standalone build (build/paddle/core, docs/backend_paddle.md)."""
    from deepmd_md.lmp import native_lib

    if native_lib("libdpmd_backend_paddle.so") is not None:
        path = native_lib("libdpmd_core.so")
    elif (PRIVATE_CORE / "libdpmd_backend_paddle.so").is_file():
        path = PRIVATE_CORE / "libdpmd_core.so"
    else:
        pytest.skip("the Paddle C++ backend is not built (docs/backend_paddle.md)")
    lib = ctypes.CDLL(str(path))
    lib.dpmd_model_load.restype = ctypes.c_void_p
    lib.dpmd_model_load.argtypes = [ctypes.c_char_p]
    lib.dpmd_last_error.restype = ctypes.c_char_p
    lib.dpmd_compute.argtypes = [ctypes.c_void_p, ctypes.POINTER(Input), ctypes.POINTER(Output)]
    lib.dpmd_model_free.argtypes = [ctypes.c_void_p]
    return lib


def _load(core, path):
    m = core.dpmd_model_load(str(path).encode())
    return m, core.dpmd_last_error().decode()


@pytest.mark.parametrize("name", ["se_e2_a", "se_e2_a:one type", "se_e2_a:float32",
                                  *tiny_descriptors()])
def test_core_json_matches_reference(core, tmp_path, name):
    """The core builds images and lists itself (nghost = 0, a box): energy, forces, virial,
    atom energies of the .json = the complex-step reference to 1e-10. "one type": a frame of
    type-0 atoms only (the per-type inputs of the blocked program for type 1 are empty);
    "float32": an fp32 model (within 1e-4 of its weights in fp64, and not fp64-exact)."""
    from deepmd_md.backends.paddle.freeze import freeze_paddle

    data = make_model() if name.startswith("se_e2_a") else make_model(desc=tiny_descriptors()[name])
    tol = 1e-10
    if name.endswith("float32"):
        data, tol = as_float32(data), 1e-4
    path = tmp_path / "model.json"
    freeze_paddle(data, str(path))
    m, err = _load(core, path)
    assert m, err
    try:
        coord, atype, box = random_frames(12, TRICLINIC_BOX, 1, seed=3, min_dist=0.95)
        if name.endswith("one type"):
            atype = np.zeros_like(atype)
        c, b = np.ascontiguousarray(coord[0]), np.ascontiguousarray(box[0])
        a = np.ascontiguousarray(atype[0], dtype=np.int32)
        f, ae, av = np.zeros((12, 3)), np.zeros(12), np.zeros((12, 9))
        inp = Input(nloc=12, nghost=0, coord=c.ctypes.data_as(DP), atype=a.ctypes.data_as(IP),
                    box=b.ctypes.data_as(DP))
        out = Output(force=f.ctypes.data_as(DP), atom_energy=ae.ctypes.data_as(DP),
                     atom_virial=av.ctypes.data_as(DP))
        assert core.dpmd_compute(m, ctypes.byref(inp), ctypes.byref(out)) == 0, \
            core.dpmd_last_error().decode()
    finally:
        core.dpmd_model_free(m)
    ref = reference.evaluate(data, coord, atype, box)
    assert_close(np.array([out.energy]), ref["energy"], tol, "energy")
    assert_close(f, ref["force"][0], tol, "force")
    assert_close(np.array(out.virial), ref["virial"][0], tol, "virial")
    assert_close(ae, ref["atom_energy"][0], tol, "atom_energy")
    assert_close(av.sum(0), ref["virial"][0], tol, "sum of atom virials")
    if name.endswith("float32"):
        assert np.abs(f - ref["force"][0]).max() > 1e-12, "fp32 model ran in fp64?"


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    from deepmd_md.backends.paddle.freeze import freeze_paddle

    path = tmp_path_factory.mktemp("frozen") / "model.json"
    freeze_paddle(make_model(), str(path))
    return path


@pytest.mark.parametrize("case", ["truncated", "not ours", "no weights", "not json"])
def test_bad_json_is_one_clear_error(core, frozen, tmp_path, case):
    """Each bad file: one line from the core, and a ModelFileError from read_model."""
    from deepmd_md.errors import ModelFileError
    from deepmd_md.formats import read_model

    bad = tmp_path / "bad.json"
    text = frozen.read_text()
    if case == "truncated":
        bad.write_text(text[: len(text) // 2])
    elif case == "not ours":
        program = json.loads(text)
        del program["deepmd_md"]
        bad.write_text(json.dumps(program))
    elif case == "not json":
        bad.write_bytes(b"\x00\x01binary")
    if case != "no weights":
        shutil.copy(frozen.with_suffix(".pdiparams"), bad.with_suffix(".pdiparams"))
    else:
        bad.write_text(text)
    m, err = _load(core, bad)
    assert not m
    assert "\n" not in err and str(bad) in err, err
    want = {"truncated": "not a Paddle model", "not ours": "without deepmd_md's model",
            "no weights": "weights", "not json": "not a Paddle model"}[case]
    assert want in err, err
    if case != "no weights":  # ModelData comes from the .json alone
        with pytest.raises(ModelFileError):
            read_model(str(bad))
    assert os.path.exists(bad)

"""The JAX .savedmodel in the real LAMMPS (pair_style deepmd over the core's TensorFlow backend):
the same thermo, forces and per-atom energies as the .pth of the same model on 1 and 2 ranks
over 10 MD steps (water, 192 atoms); a message-passing (DPA-2) .savedmodel on one rank too
(several ranks: test_savedmodel_mp.py); a truncated folder is one ERROR line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_model, tiny_descriptors

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lammps"))
from lammps_helpers import (  # noqa: E402
    assert_same_run,
    lammps_env,
    run_lmp,
    water_nve,
    water_nve_lines,
)

if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("jax") is None:
    pytest.skip("a .savedmodel needs jax and tensorflow (pip install 'deepmd-md[jax,tensorflow]')",
                allow_module_level=True)
STEPS = 10


@pytest.fixture(scope="module")
def lmp_env():
    return lammps_env("libdpmd_backend_tensorflow.so", TF_CPP_MIN_LOG_LEVEL="2")


def frozen(tmp_path, data):
    """The same ModelData as .pth and .savedmodel."""
    pytest.importorskip("torch")
    from deepmd_md.backends.jax.savedmodel import freeze_savedmodel
    from deepmd_md.backends.torch.freeze import freeze_pth

    pth, sm = tmp_path / "m.pth", tmp_path / "m.savedmodel"
    freeze_pth(data, str(pth))
    freeze_savedmodel(data, str(sm))
    return pth, sm


def md(model, tmp, env, np_):
    return water_nve(model, tmp, env, np_, steps=STEPS, timeout=600)


def test_savedmodel_same_thermo_as_pth_on_1_and_2_ranks(tmp_path, lmp_env):
    pth, sm = frozen(tmp_path, make_model())
    ref = md(pth, tmp_path / "pth1", lmp_env, 1)
    assert len(ref["pe_steps"]) == STEPS + 1
    for np_ in (1, 2):
        assert_same_run(md(sm, tmp_path / f"sm{np_}", lmp_env, np_), ref, what=f"{np_} ranks")


def test_message_passing_savedmodel_one_rank(tmp_path, lmp_env):
    """DPA-2 on one rank (each ghost's owner by atom ID) = its .pth. Several ranks (the widened
    ghost shell): test_savedmodel_mp.py."""
    pth, sm = frozen(tmp_path, make_model(desc=tiny_descriptors()["dpa2:small"]))
    a = md(pth, tmp_path / "pth", lmp_env, 1)
    b = md(sm, tmp_path / "sm", lmp_env, 1)
    assert np.abs(np.array(b["pe_steps"]) - a["pe_steps"]).max() <= 1e-8
    np.testing.assert_allclose(b["f"], a["f"], rtol=0, atol=1e-9)


def test_truncated_savedmodel_is_one_error_line(tmp_path, lmp_env):
    """A .savedmodel whose saved_model.pb is cut short: one LAMMPS `ERROR:` line, exit != 0."""
    from deepmd_md.backends.jax.savedmodel import freeze_savedmodel

    sm = tmp_path / "m.savedmodel"
    freeze_savedmodel(make_model(), str(sm))
    pb = sm / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:200])
    p = run_lmp("\n".join([*water_nve_lines(sm), "run 0"]) + "\n", tmp_path, lmp_env, timeout=300)
    err = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("ERROR")]
    assert p.returncode != 0 and len(err) == 1, (p.stdout + p.stderr)[-2000:]
    assert "m.savedmodel" in err[0] or "SavedModel" in err[0], err[0]

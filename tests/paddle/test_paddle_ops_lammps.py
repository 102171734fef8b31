"""Paddle `.json` with deepmd_md's operators in the real LAMMPS (libdpmd_paddle_ops.so, loaded by
the core's Paddle backend before the predictor):

- DPA-2 and DPA-3 (message passing: dpmd_ghost_exchange calls LAMMPS' forward and reverse
  communication) on 1, 2 and 4 ranks (`processors 4 1 1`: slabs thinner than rcut + skin) give
  the .pth's potential energy at every step (<= 1e-8 eV over 10 NVE steps), and DeepPot's
  forces on the last frame (1e-10);
- a compressed se_e2_a .json (dpmd_tabulate_fusion) on 2 ranks = DeepPot on the same file
  and on the compressed .pth.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lammps"))
from helpers import make_model, model_config, random_stats, tiny_descriptors  # noqa: E402
from lammps_helpers import (  # noqa: E402
    WATER_LMP,
    lmp_box,
    plugin_dir_or_reason,
    run_driver,
    water_types,
)

pytest.importorskip("paddle")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
# standalone build (docs/backend_paddle.md): backend + operators beside a copy of the core
PRIVATE_CORE = REPO / "build" / "paddle_ops" / "core"
RANKS = {1: [], 2: [], 4: ["processors 4 1 1"]}
PE_TOL, F_TOL = 1e-8, 1e-10
RMIN = 0.892451513761333  # examples/water/data/data_0 (dpmd neighbor-stat)


def base_env() -> dict:
    """LAMMPS' environment with the installed core (what runs the .pth)."""
    d, why = plugin_dir_or_reason()
    if d is None:
        pytest.skip(why)
    env = dict(os.environ, OMP_NUM_THREADS="1", LAMMPS_PLUGIN_PATH=d)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("LD_LIBRARY_PATH", None)
    return env


def filecmp_differs(a, b) -> bool:
    import filecmp

    return not Path(b).is_file() or not filecmp.cmp(a, b, shallow=False)


def ops_env() -> dict:
    """LAMMPS' environment for the .json: the installed core when the operators are installed
    beside it, else the standalone build preloaded in its place."""
    from deepmd_md.lmp import native_lib

    env = base_env()
    if native_lib("libdpmd_paddle_ops.so") is not None:
        return env
    core = native_lib("libdpmd_core.so")
    if core is not None and (PRIVATE_CORE / "libdpmd_backend_paddle.so").is_file():
        # the plugin and the core are installed together: keep the copy current
        if filecmp_differs(core, PRIVATE_CORE / "libdpmd_core.so"):
            shutil.copyfile(core, PRIVATE_CORE / "libdpmd_core.so")
    need = ("libdpmd_core.so", "libdpmd_backend_paddle.so", "libdpmd_paddle_ops.so")
    if not all((PRIVATE_CORE / n).is_file() for n in need):
        pytest.skip("the Paddle operators are not built (docs/backend_paddle.md: standalone build)")
    env["LD_PRELOAD"] = str(PRIVATE_CORE / "libdpmd_core.so")
    return env


def md_lines(model, steps_setup=True):
    """The water box stretched by 1.15 (the tiny models' sel fit it), NVE."""
    lines = ["units metal", "boundary p p p", "atom_style atomic", f"read_data {WATER_LMP}",
             "mass 1 16", "mass 2 2",
             "change_box all x scale 1.15 y scale 1.15 z scale 1.15 remap",
             "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes",
             f"pair_style deepmd {model}", "pair_coeff * * O H",
             "compute dpvir all pressure NULL virial", "thermo_style custom step pe c_dpvir[1]"]
    if steps_setup:
        lines += ["velocity all create 330.0 4928459 loop geom", "fix 1 all nve",
                  "timestep 0.0005"]
    return lines


def deeppot_force(model, res):
    from deepmd_md.infer.deep_pot import DeepPot

    x = np.array(res["x"])
    e, f, _ = DeepPot(str(model)).eval(x.reshape(1, -1), lmp_box(res).reshape(1, 9),
                                       water_types())
    return float(e[0, 0]), f.reshape(-1, 3)


@pytest.mark.parametrize("name", ["dpa2:small", "dpa3:default"])
def test_message_passing_json_on_1_2_4_ranks(name, tmp_path):
    from deepmd_md.backends.paddle.freeze import freeze_paddle, read_metadata
    from deepmd_md.backends.torch.freeze import freeze_pth

    env = ops_env()
    data = make_model(desc=tiny_descriptors()[name])
    pth, js = tmp_path / "m.pth", tmp_path / "m.json"
    freeze_pth(data, str(pth))
    freeze_paddle(data, str(js))
    assert "exchange" in read_metadata(str(js))
    spec = {"commands": md_lines(pth), "steps": 10}
    ref = run_driver(spec, tmp_path / "pth1", base_env(), timeout=300)
    pe_ref = np.array(ref["pe_steps"])
    assert len(pe_ref) == 11 and np.ptp(pe_ref) > 1e-6  # the atoms move
    for n, extra in RANKS.items():
        res = run_driver({"commands": extra + md_lines(js), "steps": 10}, tmp_path / f"json{n}",
                         env, np_=n, timeout=300)
        dpe = np.abs(np.array(res["pe_steps"]) - pe_ref).max()
        assert dpe <= PE_TOL, f"{n} ranks: potential energy {dpe:.2e} eV from the .pth's"
        e, f = deeppot_force(pth, res)
        assert abs(res["pe"] - e) <= F_TOL * max(1.0, abs(e)), n
        np.testing.assert_allclose(res["f"], f, rtol=0, atol=F_TOL, err_msg=f"{n} ranks")
        assert np.abs(f).max() > 1e-3  # the model interacts


def test_compressed_json_two_ranks_equals_deeppot(tmp_path):
    from deepmd_md.compress import compress
    from deepmd_md.formats import write_model
    from deepmd_md.model.model import init_model

    env = ops_env()
    cfg = model_config(rcut=6.0, rcut_smth=0.5, sel=[46, 92], neuron=(8, 16), fitting=(16, 16))
    data = compress(random_stats(init_model(cfg, 3), 3), RMIN)
    js, pth = tmp_path / "comp.json", tmp_path / "comp.pth"
    write_model(data, js)
    write_model(data, pth)
    assert ".dpmd_tabulate_fusion\"" in js.read_text()
    res = run_driver({"commands": md_lines(js, steps_setup=False)}, tmp_path / "r2", env, np_=2)
    for model in (js, pth):  # DeepPot: eager Paddle with the ops, and the compressed .pth
        e, f = deeppot_force(model, res)
        assert abs(res["pe"] - e) <= 1e-9 * max(1.0, abs(e))
        np.testing.assert_allclose(res["f"], f, rtol=0, atol=F_TOL)

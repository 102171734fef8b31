"""Fixtures of the analysis-command tests: tiny frozen models and small labeled systems
(8 atoms orthogonal, 7 atoms triclinic with virial labels, 6 atoms non-periodic)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TRICLINIC_BOX, make_model, run_dpmd, teacher_system, train_input


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """{name: path}: m1 (.dp, .pth), m2 (.pth, other weights), swapped (.pth, type_map H O)."""
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.serialize import save_dp

    d = tmp_path_factory.mktemp("models")
    m1, m2 = make_model(seed=1), make_model(seed=2, stats_seed=1)
    swapped = make_model(seed=3)
    swapped["config"]["type_map"] = ["H", "O"]
    out = {"m1.dp": d / "m1.dp", "m1.pth": d / "m1.pth", "m2.pth": d / "m2.pth",
           "swapped.pth": d / "swapped.pth"}
    save_dp(m1, str(out["m1.dp"]))
    freeze_pth(m1, str(out["m1.pth"]))
    freeze_pth(m2, str(out["m2.pth"]))
    freeze_pth(swapped, str(out["swapped.pth"]))
    return out


@pytest.fixture(scope="session")
def systems(tmp_path_factory):
    """A folder `data` holding a (8 atoms, 3 frames, no virial), b (7 atoms, triclinic, 2
    frames, virial labels) and c (6 atoms, non-periodic, 2 frames, virial labels)."""
    d = tmp_path_factory.mktemp("systems") / "data"
    teacher_system(d / "a", nat=8, nf=3)
    b = teacher_system(d / "b", nat=7, nf=2, box=TRICLINIC_BOX, seed=3)
    c = teacher_system(d / "c", nat=6, nf=2, seed=4, nopbc=True)
    rng = np.random.default_rng(5)
    for s in (b, c):
        np.save(s / "set.000" / "virial.npy", rng.normal(size=(2, 9)))
    return d


@pytest.fixture(scope="session")
def trained(systems, tmp_path_factory):
    """A folder where `dpmd train` ran 2 steps on systems a and b (checkpoint, lcurve.out)."""
    d = tmp_path_factory.mktemp("train")
    inp = train_input([systems / "a", systems / "b"], d, numb_steps=2)
    (d / "input.json").write_text(json.dumps(inp))
    p = run_dpmd("train", "input.json", cwd=d)
    assert p.returncode == 0, p.stderr[-3000:]
    return d

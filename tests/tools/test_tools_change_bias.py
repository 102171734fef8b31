"""`dpmd change-bias`: the per-type energy bias refit on new data (change, set, given values)
for frozen models and checkpoints; forces unchanged; training state of a checkpoint kept."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import write_system

from deepmd_md.cli.main import main

SHIFT_O = 0.37  # eV per O atom added to the labels


def _eval(model, s):
    from deepmd_md.infer import DeepPot

    return DeepPot(str(model)).eval(s.coord.reshape(s.nframes, -1), s.box, s.atype)


def _counts(s):
    return np.bincount(s.atype, minlength=2).astype(float)


@pytest.fixture(scope="module")
def shifted(models, systems, tmp_path_factory):
    """Systems a (4 O, 4 H) and b (4 O, 3 H) labelled by m1 itself, energies + 0.37 eV per O:
    an exact linear shift that change-bias must find."""
    from deepmd_md.data.system import load_system

    root = tmp_path_factory.mktemp("shifted")
    for name in ("a", "b"):
        s = load_system(systems / name)
        e, f, _ = _eval(models["m1.pth"], s)
        write_system(root / name, s.coord, s.atype, s.box, e[:, 0] + SHIFT_O * _counts(s)[0],
                     f)
    return root


def test_change_recovers_an_exact_shift(models, shifted, tmp_path, capsys):
    from deepmd_md.data.system import load_system
    from deepmd_md.infer.deep_pot import load_model_data

    src = tmp_path / "m.pth"
    shutil.copy(models["m1.pth"], src)
    assert main(["change-bias", str(src), "-s", str(shifted)]) == 0
    out = tmp_path / "m_updated.pth"  # DeePMD-kit's default name
    assert f"wrote {out}" in capsys.readouterr().out
    old = load_model_data(str(src))["buffers"]["bias_atom_e"]
    new = load_model_data(str(out))["buffers"]["bias_atom_e"]
    np.testing.assert_allclose(new - old, [SHIFT_O, 0.0], rtol=0, atol=1e-10)
    assert main(["test", "-m", str(out), "-s", str(shifted), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["weighted"]
    assert res["energy_mae_per_atom"] <= 1e-8
    assert res["force_rmse"] <= 1e-12  # the labels are the old model's forces
    for name in ("a", "b"):
        s = load_system(shifted / name)
        np.testing.assert_array_equal(_eval(out, s)[1], _eval(src, s)[1])


def test_change_zeroes_mean_error_on_other_data(models, systems, tmp_path):
    """On teacher labels (not a linear shift of the model) the least squares leaves each
    system's mean energy error at zero (two compositions, two types: a unique fit)."""
    from deepmd_md.data.system import load_system

    out = tmp_path / "m.dp"
    assert main(["change-bias", str(models["m1.dp"]), "-s", str(systems / "a"),
                 str(systems / "b"), "-o", str(out)]) == 0
    for name in ("a", "b"):
        s = load_system(systems / name)
        before = np.mean(_eval(models["m1.dp"], s)[0][:, 0] - s.energy) / s.natoms
        after = np.mean(_eval(out, s)[0][:, 0] - s.energy) / s.natoms
        assert abs(before) > 0.1 and abs(after) <= 1e-10, (before, after)


def test_given_values_to_another_format(models, systems, tmp_path):
    """-b sets the values; .dp in, .pth out (written by dpmd freeze's code)."""
    from deepmd_md.data.system import load_system
    from deepmd_md.infer.deep_pot import load_model_data

    out = tmp_path / "b.pth"
    assert main(["change-bias", str(models["m1.dp"]), "-b", "-1.5", "0.25", "-o",
                 str(out)]) == 0
    old = load_model_data(str(models["m1.dp"]))["buffers"]["bias_atom_e"]
    s = load_system(systems / "a")
    de = _eval(out, s)[0][:, 0] - _eval(models["m1.dp"], s)[0][:, 0]
    np.testing.assert_allclose(de, _counts(s) @ (np.array([-1.5, 0.25]) - old), rtol=1e-12)


def test_checkpoint_set_mode_keeps_training_state(trained, systems):
    """A training folder (its `checkpoint` pointer), set mode on the first frame of each
    system: the bias is the labels' least squares, everything else of the checkpoint kept."""
    from deepmd_md.data.system import load_system
    from deepmd_md.serialize import load_dp
    from deepmd_md.tree import flatten

    ckpt = trained / (trained / "checkpoint").read_text().strip()
    assert main(["change-bias", str(trained), "-s", str(systems / "a"), str(systems / "b"),
                 "-m", "set", "-n", "1"]) == 0
    out = ckpt.with_name(ckpt.stem + "_updated.ckpt")
    d0, t0, x0 = load_dp(str(ckpt), with_extra=True)
    d1, t1, x1 = load_dp(str(out), with_extra=True)
    firsts = [load_system(systems / n) for n in ("a", "b")]
    want = np.linalg.lstsq(np.array([_counts(s) for s in firsts]),
                           np.array([s.energy[0] for s in firsts]), rcond=None)[0]
    np.testing.assert_allclose(d1["buffers"]["bias_atom_e"], want, rtol=1e-12)
    assert x1 == x0 and sorted(t1) == sorted(t0) and t0
    for tree in ("params",):
        for k, v in flatten(d0[tree]).items():
            np.testing.assert_array_equal(flatten(d1[tree])[k], v)
    for name, tree in t0.items():
        for k, v in flatten(tree).items():
            np.testing.assert_array_equal(flatten(t1[name])[k], v)

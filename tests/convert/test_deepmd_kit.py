"""DeePMD-kit 3.x models imported by `dpmd convert-backend`: DeePMD-kit's own energies, forces
and virials to 1e-10 (per atom for energy and virial), from every file kind it writes.

The models and references in data/ were made once with DeePMD-kit 3.2 (data/make_data.py, see
docs/convert.md); these tests need no DeePMD-kit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import run_dpmd

from deepmd_md.cli.main import main as dpmd

DATA = Path(__file__).resolve().parent / "data"
TOL = 1e-10
MODELS = ("se_e2_a", "se_e2_r", "se_atten", "se_atten_v2", "dpa2", "dpa3", "hybrid")
KINDS = ("dp", "pth", "pt", "yaml")
CASES = [(m, k) for m in MODELS for k in KINDS if (DATA / m / f"model.{k}").is_file()]
NO_YAML = importlib.util.find_spec("yaml") is None  # PyYAML reads DeePMD-kit's .yaml


def _need(kind: str) -> None:
    if kind == "yaml" and NO_YAML:
        print("DeePMD-kit .yaml skipped: PyYAML is not installed (pip install pyyaml)")
        pytest.skip("PyYAML is not installed (pip install pyyaml)")


def _frame():
    fr = json.loads((DATA / "frame.json").read_text())
    return (np.array(fr["coord"]).reshape(1, -1), np.array(fr["box"]).reshape(1, 9),
            np.array(fr["atype"]))


def test_every_descriptor_has_files():
    """The committed set covers every descriptor we import (a missing file is not skipped)."""
    missing = [m for m in MODELS if not (DATA / m / "model.dp").is_file()
               or not (DATA / m / "ref.json").is_file()]
    assert not missing, f"regenerate with tests/convert/data/make_data.py: {missing}"
    assert all(p.stat().st_size < 1_000_000 for p in DATA.rglob("*") if p.is_file())


@pytest.mark.parametrize("name,kind", CASES, ids=[f"{m}.{k}" for m, k in CASES])
def test_matches_deepmd_kit(name, kind, tmp_path):
    from deepmd_md.infer import DeepPot

    _need(kind)
    out = tmp_path / "model.dp"
    assert dpmd(["convert-backend", str(DATA / name / f"model.{kind}"), str(out)]) == 0
    ref = json.loads((DATA / name / "ref.json").read_text())
    coord, box, atype = _frame()
    e, f, v = DeepPot(str(out), backend="torch").eval(coord, box, atype)[:3]
    nat = len(atype)
    de = abs(float(np.ravel(e)[0]) - ref["energy"]) / nat
    df = float(np.abs(np.ravel(f) - ref["force"]).max())
    dv = float(np.abs(np.ravel(v) - ref["virial"]).max()) / nat
    print(f"{name}.{kind}: |dE|/atom {de:.1e} eV, max |dF| {df:.1e} eV/A, "
          f"max |dV|/atom {dv:.1e} eV")
    assert de <= TOL and df <= TOL and dv <= TOL, (de, df, dv)


def test_same_weights_from_every_kind():
    """.dp, .yaml, frozen .pth and checkpoint .pt of one model give bit-identical ModelData."""
    from deepmd_md.interop import read_deepmd_kit
    from deepmd_md.tree import flatten

    base = read_deepmd_kit(str(DATA / "se_e2_a" / "model.dp"))
    flat = flatten({"p": base["params"], "b": base["buffers"]})
    for kind in ("pth", "pt") if NO_YAML else ("yaml", "pth", "pt"):
        other = read_deepmd_kit(str(DATA / "se_e2_a" / f"model.{kind}"))
        assert other["config"] == base["config"], kind
        o = flatten({"p": other["params"], "b": other["buffers"]})
        assert o.keys() == flat.keys() and all(np.array_equal(o[k], flat[k]) for k in o), kind


def _edited_dp(tmp_path, edit) -> Path:
    """A copy of the se_e2_a .dp with its JSON tree changed by edit(tree)."""
    path = tmp_path / "edited.dp"
    shutil.copy(DATA / "se_e2_a" / "model.dp", path)
    with h5py.File(path, "r+") as f:
        tree = json.loads(f.attrs["json"])
        edit(tree)
        f.attrs["json"] = json.dumps(tree)
    return path


def _set(tree, key, section, value):
    tree["model"][section][key] = value
    script = tree["model_def_script"]["descriptor" if section == "descriptor" else "fitting_net"]
    script[key] = value


@pytest.mark.parametrize("edit,message", [
    (lambda t: _set(t, "type", "descriptor", "se_e3"),
     "DeePMD-kit descriptor 'se_e3' is not implemented here"),
    (lambda t: _set(t, "type", "fitting", "dipole"),
     "DeePMD-kit fitting 'dipole' is not implemented here"),
    (lambda t: _set(t, "neuron", "descriptor", [4, 6]),
     "shape (4, 8), this model expects (4, 6)"),
    (lambda t: t["model_def_script"].update(bridging_method="zbl"),
     "DeePMD-kit setting 'model/bridging_method' = 'zbl' is not implemented here"),
], ids=["descriptor", "fitting", "shape", "setting"])
def test_unsupported_pieces_named(tmp_path, capsys, edit, message):
    src = _edited_dp(tmp_path, edit)
    out = tmp_path / "out.dp"
    assert dpmd(["convert-backend", str(src), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dpmd: error: ") and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_bad_files_one_error(tmp_path):
    """A truncated DeePMD-kit file and a .yaml that is no model: one `dpmd: error:` line each,
    exit 1, no traceback, no output (the CLI end to end)."""
    cases = {}
    for kind in ("dp", "pth", "pt"):
        raw = (DATA / "se_e2_a" / f"model.{kind}").read_bytes()
        (tmp_path / f"cut.{kind}").write_bytes(raw[: len(raw) // 2])
        cases[f"cut.{kind}"] = "cut"
    (tmp_path / "nomodel.yaml").write_text("a: 1\n")
    for name in [*cases, "nomodel.yaml"]:
        r = run_dpmd("convert-backend", name, "out.dp", cwd=tmp_path, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("dpmd: error: "), \
            (name, r.stderr)
        assert name in lines[0] and not (tmp_path / "out.dp").exists()
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir()), os.listdir(tmp_path)


def test_se_r_residual_first_layer_refused(tmp_path, capsys):
    """DeePMD-kit's se_e2_r descriptor is ours / 5; the factor folds into the first fitting
    layer unless that layer adds its input back (width equal to the descriptor's): then one
    clear error instead of wrong energies (data/se_e2_r_residual: embedding 8, fitting 8)."""
    out = tmp_path / "out.dp"
    assert dpmd(["convert-backend", str(DATA / "se_e2_r_residual" / "model.dp"), str(out)]) == 1
    err = capsys.readouterr().err
    assert "DeePMD-kit se_e2_r with a first fitting layer as wide as the descriptor" in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["pth", "dp"])
def test_tools_read_deepmd_kit_files_directly(kind, tmp_path):
    """No conversion step needed: DeepPot and `dpmd test` read a DeePMD-kit model file as it
    is (the format registry recognises it by content) and give DeePMD-kit's energy."""
    from deepmd_md.infer import DeepPot

    path = DATA / "se_e2_a" / f"model.{kind}"
    ref = json.loads((DATA / "se_e2_a" / "ref.json").read_text())
    coord, box, atype = _frame()
    e, f, _ = DeepPot(str(path)).eval(coord, box, atype)
    assert abs(float(np.ravel(e)[0]) - ref["energy"]) / len(atype) <= TOL
    assert float(np.abs(np.ravel(f) - ref["force"]).max()) <= TOL
    assert dpmd(["show", str(path)]) == 0

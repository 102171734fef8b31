"""deepmd_md.config: normalisation of DeePMD-kit inputs, error messages, auto sel, docs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from deepmd_md.config import (
    auto_sel,
    load_config,
    make_doc,
    normalize,
    resolve_auto_sel,
)
from deepmd_md.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {n: ROOT / "examples" / "water" / n / "input.json" for n in ("se_e2_a", "se_e2_r")}


@pytest.fixture
def cfg():
    return load_config(EXAMPLES["se_e2_a"])


def _set(cfg: dict, path: str, value) -> dict:
    out = copy.deepcopy(cfg)
    *parents, last = path.split("/")
    node = out
    for p in parents:
        node = node[p]
    node[last] = value
    return out


def _error(cfg: dict) -> str:
    with pytest.raises(ConfigError) as e:
        normalize(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_normalize(name):
    c = normalize(load_config(EXAMPLES[name]))
    d = c["model"]["descriptor"]
    assert d["type"] == name and d["sel"] == [46, 92] and d["rcut"] == 6.0
    assert d["precision"] == "float64" and d["activation_function"] == "tanh"
    assert c["model"]["fitting_net"]["type"] == "ener"
    assert c["learning_rate"]["type"] == "exp" and c["loss"]["type"] == "ener"
    t = c["training"]
    assert t["training_data"]["systems"][0] == "../data/data_0/"
    assert t["validation_data"]["numb_btch"] == 3 and t["numb_steps"] == 1000000
    assert t["save_ckpt"] == "model.ckpt" and t["max_ckpt_keep"] == 5
    assert c["loss"]["limit_pref_e"] == 1.0 and isinstance(c["loss"]["limit_pref_e"], float)
    assert "_comment1" not in c and "_comment2" not in d
    assert normalize(c) == c  # idempotent
    # the systems the example names exist, relative to the example directory
    for s in t["training_data"]["systems"] + t["validation_data"]["systems"]:
        assert (EXAMPLES[name].parent / s / "type.raw").is_file()


def test_aliases_and_defaults(cfg):
    c = _set(cfg, "model/descriptor/type", "se_a")
    c["training"]["stop_batch"] = c["training"].pop("numb_steps")
    c["model"]["descriptor"]["n_axis_neuron"] = c["model"]["descriptor"].pop("axis_neuron")
    del c["model"]["fitting_net"]["precision"]
    del c["learning_rate"]
    n = normalize(c)
    assert n["model"]["descriptor"]["type"] == "se_e2_a"
    assert n["model"]["descriptor"]["axis_neuron"] == 16
    assert n["training"]["numb_steps"] == 1000000
    assert n["model"]["fitting_net"]["precision"] == "float64"  # "default" -> float64
    assert n["learning_rate"] == {
        "type": "exp", "start_lr": 1e-3, "stop_lr": 1e-8, "decay_steps": 5000,
        "decay_rate": None, "scale_by_worker": "linear",
    }  # fmt: skip
    se_r = _set(load_config(EXAMPLES["se_e2_r"]), "model/descriptor/type", "se_r")
    assert normalize(se_r)["model"]["descriptor"]["type"] == "se_e2_r"
    msg = "unknown key 'model/descriptor/axis_neuron'"  # se_e2_r has no axis_neuron
    assert _error(_set(cfg, "model/descriptor/type", "se_r")).startswith(msg)


def test_unknown_keys(cfg):
    msg = _error(_set(cfg, "model/descriptor/rcutt", 6.0))
    assert msg == "unknown key 'model/descriptor/rcutt'; did you mean 'rcut'?"
    msg = _error(_set(cfg, "training/zzz_qqq", 1))
    assert msg.startswith("unknown key 'training/zzz_qqq'; valid keys: ")
    assert "did you mean 'numb_steps'" in _error(_set(cfg, "training/numb_step", 1))
    assert "did you mean 'model'" in _error(_set(cfg, "modell", {}))
    assert "'model/descriptor/type' = 'se_e2_x' is unknown; did you mean" in _error(
        _set(cfg, "model/descriptor/type", "se_e2_x")
    )


@pytest.mark.parametrize(
    "path, value, expect",
    [
        ("model/fitting_net/numb_fparam", 2,
         "'model/fitting_net/numb_fparam' is not supported yet by deepmd_md "
         "(remove it or set it to 0)"),
        ("model/fitting_net/atom_ener", [1.0, 2.0], "'model/fitting_net/atom_ener' is not"),
        ("model/descriptor/exclude_types", [[0, 1]], "or set it to []"),
        ("loss/start_pref_ae", 1.0, "'loss/start_pref_ae' is not supported yet"),
        ("model/type_embedding", {"neuron": [8]}, "(remove it)"),
        ("model/descriptor/type", "se_e3", "'model/descriptor/type' = 'se_e3' is not "
         "supported yet by deepmd_md (use one of se_e2_a, se_e2_r"),
        ("model/descriptor/type", "se_a_mask", "not supported yet"),
        ("model/descriptor/activation_function", "silut:x", "bad threshold"),
        ("learning_rate/type", "cosine", "not supported yet"),
        ("training/training_data/batch_size", "mixed:4", "not supported yet"),
    ],
)  # fmt: skip
def test_unsupported(cfg, path, value, expect):
    assert expect in _error(_set(cfg, path, value))


def test_unsupported_default_is_harmless(cfg):
    c = _set(cfg, "model/fitting_net/numb_fparam", 0)
    c = _set(c, "model/descriptor/exclude_types", [])
    c = _set(c, "loss/start_pref_ae", 0)
    c = _set(c, "training/tensorboard", True)  # ignored: accepted with any value
    assert normalize(c)["training"]["tensorboard"] is True


@pytest.mark.parametrize(
    "path, value, expect",
    [
        ("model/descriptor/rcut", "6", "'model/descriptor/rcut' must be float, got str ('6')"),
        ("model/descriptor/sel", [46, "x"], "'model/descriptor/sel' must be list[int]|str"),
        ("model/descriptor/sel", "automatic", "bad sel 'automatic'"),
        ("model/descriptor/sel", [46], "has 1 entries but 'model/type_map' has 2"),
        ("model/descriptor/resnet_dt", 1, "must be bool, got int"),
        ("model/descriptor/neuron", [25, 0], "every layer needs >= 1 neuron"),
        ("model/descriptor/rcut_smth", 7.0, "must be smaller than 'model/descriptor/rcut'"),
        ("model/descriptor/precision", "float16", "is not valid; use one of"),
        ("training/numb_steps", 1.5, "'training/numb_steps' must be int, got float"),
        ("training/training_data/batch_size", 0, "batch size must be >= 1"),
        ("training/training_data/batch_size", "auto:x", "bad batch_size 'auto:x'"),
        ("training/training_data/sys_probs", [1.0], "has 1 entries for 3 systems"),
        ("model/type_map", ["O", "O"], "lists an element twice"),
        ("loss/start_pref_f", -1, "must be >= 0"),
    ],
)  # fmt: skip
def test_bad_values(cfg, path, value, expect):
    assert expect in _error(_set(cfg, path, value))


def test_missing_required(cfg):
    c = copy.deepcopy(cfg)
    del c["training"]["numb_steps"]
    assert _error(c) == "missing required key 'training/numb_steps'"
    c = copy.deepcopy(cfg)
    del c["model"]["descriptor"]["type"]
    assert "'model/descriptor/type' is required" in _error(c)
    c = copy.deepcopy(cfg)
    c["training"]["numb_steps"] = 5
    c["training"]["stop_batch"] = 5
    assert "given twice" in _error(c)


def test_load_config_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {,}}')
    with pytest.raises(ConfigError, match=r"bad.json:1:\d+: invalid JSON"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(tmp_path / "list.json")


def _small_water(root: Path, nframes: int = 2) -> Path:
    """The first frames of data_3 as a system of its own (keeps neighbor stat fast)."""
    src = ROOT / "examples" / "water" / "data" / "data_3"
    (root / "set.000").mkdir(parents=True)
    for f in ("type.raw", "type_map.raw"):
        (root / f).write_text((src / f).read_text())
    for f in ("coord", "box", "energy", "force"):
        np.save(root / "set.000" / f"{f}.npy", np.load(src / "set.000" / f"{f}.npy")[:nframes])
    return root


def test_auto_sel(cfg, tmp_path, monkeypatch):
    from deepmd_md.data.neighbor import neighbor_stat

    assert auto_sel([38, 72]) == [44, 80]  # int(41.8)=41 -> 44, int(79.2)=79 -> 80
    assert auto_sel([10], 1.0) == [12]
    _small_water(tmp_path / "data" / "small")
    (tmp_path / "run").mkdir()
    max_nbor = neighbor_stat([str(tmp_path / "data" / "small")], 6.0, ["O", "H"])[1]
    c = normalize(_set(cfg, "model/descriptor/sel", "auto:1.2"))
    c["training"]["training_data"]["systems"] = ["../data/small"]
    r = resolve_auto_sel(c, base_dir=tmp_path / "run")
    assert r["model"]["descriptor"]["sel"] == auto_sel(max_nbor, 1.2)
    assert c["model"]["descriptor"]["sel"] == "auto:1.2"  # input not modified
    monkeypatch.chdir(tmp_path / "run")  # DeePMD-kit resolves system paths from the cwd
    c["training"]["training_data"]["systems"] = "../data"  # a directory searched for systems
    assert resolve_auto_sel(c)["model"]["descriptor"]["sel"] == r["model"]["descriptor"]["sel"]


def test_auto_sel_mixed_types(cfg, tmp_path):
    """se_atten (one list of any type): sel 'auto' is one int from the largest count of
    neighbors of any type (not the sum of per-type maxima), counted here by brute force."""
    from helpers import max_neighbors

    from deepmd_md.data.system import load_system

    _small_water(tmp_path / "data" / "small")
    s = load_system(str(tmp_path / "data" / "small"))
    total = max_neighbors(s.coord, np.zeros((s.nframes, s.natoms), int), s.box, 6.0, ntypes=1)
    c = copy.deepcopy(cfg)
    c["model"]["descriptor"] = {"type": "se_atten_v2", "sel": "auto", "rcut": 6.0,
                                "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 4}
    c = normalize(c)
    c["training"]["training_data"]["systems"] = [str(tmp_path / "data" / "small")]
    r = resolve_auto_sel(c)
    assert r["model"]["descriptor"]["sel"] == auto_sel([int(total[0])])[0]


def test_make_doc_matches_file():
    doc = make_doc()
    keys = ["model/descriptor[se_e2_a]/sel", "training/numb_steps", "loss[ener]/start_pref_e"]
    keys += ["`stop_batch`", "not supported yet", "model/fitting_net[ener]/numb_fparam"]
    for key in keys:
        assert key in doc
    assert (ROOT / "docs" / "input.md").read_text() == doc, "regenerate docs/input.md"


def test_json_roundtrip(cfg):
    n = normalize(cfg)
    assert normalize(json.loads(json.dumps(n))) == n

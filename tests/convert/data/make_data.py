"""Regenerate the DeePMD-kit reference models of tests/convert (run by hand, with DeePMD-kit 3.2's
own Python; the tests themselves never need DeePMD-kit):

    OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= /tmp/dp/bin/python tests/convert/data/make_data.py [NAME ...]

For each tiny model below: `dp --pt train` (2 steps on examples/water/data/data_0, float64),
`dp --pt freeze`, `dp convert-backend` to `.dp` (and `.yaml` for se_e2_a), then DeePMD-kit's
DeepPot on frame 0 of examples/water/data/data_3 -> NAME/ref.json {energy, force, virial}.
Kept: NAME/model.dp, NAME/model.pth (frozen), NAME/model.pt (the 2-step checkpoint), ref.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DATA = ROOT / "examples" / "water" / "data"
DP = Path(sys.executable).parent / "dp"

_A = {"rcut": 4.0, "rcut_smth": 0.5}
_FIT = {"neuron": [8, 8], "resnet_dt": True, "precision": "float64", "seed": 1}
MODELS = {
    "se_e2_a": {"type": "se_e2_a", "sel": [16, 32], **_A, "neuron": [4, 8], "axis_neuron": 2,
                "type_one_side": False, "seed": 1},
    # embedding width 12 != fitting width 8 (see docs/convert.md on se_e2_r's factor 1/5)
    "se_e2_r": {"type": "se_e2_r", "sel": [16, 32], **_A, "neuron": [4, 12],
                "type_one_side": True, "seed": 1},
    "se_atten": {"type": "se_atten", "sel": 48, **_A, "neuron": [4, 8], "axis_neuron": 2,
                 "tebd_dim": 4, "attn": 6, "attn_layer": 1, "seed": 1},
    "se_atten_v2": {"type": "se_atten_v2", "sel": 48, **_A, "neuron": [4, 8], "axis_neuron": 2,
                    "tebd_dim": 4, "attn": 6, "attn_layer": 2, "seed": 1},
    "dpa2": {"type": "dpa2", "seed": 1,
             "repinit": {"rcut": 4.0, "rcut_smth": 0.5, "nsel": 48, "neuron": [4, 8],
                         "axis_neuron": 2, "tebd_dim": 4, "use_three_body": True,
                         "three_body_sel": 24, "three_body_rcut": 3.5,
                         "three_body_rcut_smth": 3.0},
             "repformer": {"rcut": 3.5, "rcut_smth": 3.0, "nsel": 32, "nlayers": 2,
                           "g1_dim": 8, "g2_dim": 4, "attn2_hidden": 4, "attn2_nhead": 2,
                           "attn1_hidden": 4, "attn1_nhead": 2, "axis_neuron": 2,
                           "update_g1_has_attn": False, "update_g2_has_g1g1": False,
                           "update_g2_has_attn": True, "update_style": "res_residual",
                           "update_residual": 0.01, "attn2_has_gate": True}},
    "dpa3": {"type": "dpa3", "seed": 1, "activation_function": "silut:10.0",
             "repflow": {"n_dim": 8, "e_dim": 4, "a_dim": 4, "nlayers": 2, "e_rcut": 4.0,
                         "e_rcut_smth": 3.5, "e_sel": 48, "a_rcut": 3.5, "a_rcut_smth": 3.0,
                         "a_sel": 24, "axis_neuron": 2, "a_compress_rate": 1,
                         "a_compress_e_rate": 2, "a_compress_use_split": True,
                         "update_angle": True, "smooth_edge_update": True,
                         "edge_init_use_dist": True, "update_style": "res_residual",
                         "update_residual": 0.1, "update_residual_init": "const"}},
    "hybrid": {"type": "hybrid", "list": [
        {"type": "se_e2_a", "sel": [16, 32], **_A, "neuron": [4, 8], "axis_neuron": 2,
         "type_one_side": True, "seed": 1},
        {"type": "se_e2_r", "sel": [8, 16], "rcut": 3.0, "rcut_smth": 0.5, "neuron": [4],
         "seed": 2}]},
}


def _input(descriptor: dict) -> dict:
    d = json.loads(json.dumps(descriptor))
    for sub in d.get("list", [d]):  # a hybrid's members, not the hybrid itself, take it
        sub["precision"] = "float64"
    return {
        "model": {"type_map": ["O", "H"], "descriptor": d, "fitting_net": dict(_FIT)},
        "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-4, "decay_steps": 1},
        "loss": {"type": "ener", "start_pref_e": 1, "limit_pref_e": 1, "start_pref_f": 1,
                 "limit_pref_f": 1},
        "training": {"training_data": {"systems": [str(DATA / "data_0")], "batch_size": 1},
                     "numb_steps": 2, "seed": 1, "disp_freq": 1, "save_freq": 2},
    }


def _run(cmd, cwd) -> None:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"failed: {cmd}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")


def make(name: str) -> None:
    from deepmd.infer import DeepPot

    out = HERE / name
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "input.json").write_text(json.dumps(_input(MODELS[name]), indent=1))
        _run([DP, "--pt", "train", "input.json"], tmp)
        _run([DP, "--pt", "freeze", "-o", "model.pth"], tmp)
        _run([DP, "convert-backend", "model.pth", "model.dp"], tmp)
        shutil.copy(Path(tmp) / "model.pth", out / "model.pth")
        shutil.copy(Path(tmp) / "model.dp", out / "model.dp")
        shutil.copy(Path(tmp) / "model.ckpt-2.pt", out / "model.pt")
        if name == "se_e2_a":
            _run([DP, "convert-backend", "model.pth", "model.yaml"], tmp)
            shutil.copy(Path(tmp) / "model.yaml", out / "model.yaml")
    frame = json.loads((HERE / "frame.json").read_text())
    coord = np.array(frame["coord"]).reshape(1, -1)
    box = np.array(frame["box"]).reshape(1, 9)
    e, f, v = DeepPot(str(out / "model.pth")).eval(coord, box, frame["atype"])[:3]
    ref = {"energy": float(np.ravel(e)[0]), "force": np.ravel(f).tolist(),
           "virial": np.ravel(v).tolist(), "deepmd_kit": "3.2.0, DeepPot(model.pth)"}
    (out / "ref.json").write_text(json.dumps(ref))
    print(name, "energy", ref["energy"])


def main() -> None:
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    if not (HERE / "frame.json").exists():  # data_3 frame 0, the frame every reference uses
        s = DATA / "data_3"
        frame = {"coord": np.load(s / "set.000/coord.npy")[0].tolist(),
                 "box": np.load(s / "set.000/box.npy")[0].tolist(),
                 "atype": np.loadtxt(s / "type.raw", dtype=int).tolist(), "type_map": ["O", "H"]}
        (HERE / "frame.json").write_text(json.dumps(frame))
    for name in sys.argv[1:] or MODELS:
        make(name)


if __name__ == "__main__":
    main()

"""Equivalence with DeePMD-kit (run by hand; needs a venv with deepmd-kit 3.2 and its PyTorch
backend). Two checks on a water example (--descriptor: se_e2_a, se_atten_v2, dpa2 (small),
dpa3; DeePMD-kit's own example inputs, shipped in examples/water/, run in float64):

1. Same model: DeePMD-kit's weights after N training steps, copied into a deepmd_md `.dp`, give
   DeePMD-kit's energies and forces on data_3 (to round-off).
2. Same training: from DeePMD-kit's initial weights, on one training frame (so that the batch
   order cannot differ), N steps of our training give DeePMD-kit's weights after N steps. This
   covers the loss, its gradient, the learning-rate and prefactor schedules and Adam.

    python benchmarks/dp_equivalence.py --dp-venv /tmp/dp [--descriptor dpa3] [--steps 20]
        [--backends torch jax]

Exit status 0 only when every check passes.

What is left is randomness (initial draws, frame order), which no two codes share: compare
RMSEs over seeds (`benchmarks/train_water.py --seeds`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "water" / "data"
NEVAL = 4  # data_3 frames for the model check
# --descriptor -> (example input under examples/water, converter module under benchmarks/dp_import)
DESCRIPTORS = {"se_e2_a": ("se_e2_a", "se_e2"), "se_atten_v2": ("se_atten_v2", "se_atten"),
               "dpa2": ("dpa2", "dpa2"), "dpa3": ("dpa3", "dpa3")}

# Run by DeePMD-kit's Python: state dicts -> npz; the frozen model's energies/forces on data_3.
DP_SIDE = r"""
import sys, numpy as np, torch
import deepmd.pt  # registers DeePMD-kit's custom ops
from deepmd.infer import DeepPot
for ckpt, out in zip(sys.argv[1:-3:2], sys.argv[2:-3:2]):
    sd = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    np.savez(out, **{k.replace("model.Default.atomic_model.", ""): v.numpy()
                     for k, v in sd.items() if hasattr(v, "numpy") and "_networks" not in k})
frozen, data, ref = sys.argv[-3:]
c = np.load(data + "/set.000/coord.npy")[:NEVAL]; b = np.load(data + "/set.000/box.npy")[:NEVAL]
t = np.loadtxt(data + "/type.raw", dtype=int)
e, f = DeepPot(frozen).eval(c, b, t)[:2]
np.savez(ref, e=e.ravel(), f=f.reshape(len(c), -1, 3))
""".replace("NEVAL", str(NEVAL))


def _run(cmd, cwd, env=None) -> str:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return p.stdout + p.stderr


def _one_frame_system(dst: Path) -> None:
    """data_0's first frame as a system of its own."""
    src = DATA / "data_0"
    (dst / "set.000").mkdir(parents=True)
    for f in ("type.raw", "type_map.raw"):
        shutil.copy(src / f, dst / f)
    for k in ("coord", "box", "energy", "force"):
        np.save(dst / "set.000" / f"{k}.npy", np.load(src / "set.000" / f"{k}.npy")[:1])


def _fp64(tree):
    """Every `precision` in a config set to float64 (the checks compare to round-off)."""
    if isinstance(tree, dict):
        return {k: ("float64" if k == "precision" else _fp64(v)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_fp64(v) for v in tree]
    return tree


def _input(descr: str, steps: int, compile_: bool = False) -> dict:
    example = ROOT / "examples" / "water" / DESCRIPTORS[descr][0] / "input.json"
    cfg = _fp64(json.loads(example.read_text()))
    cfg["model"]["fitting_net"]["precision"] = "float64"
    sysd = {"systems": ["../one"], "batch_size": 1}
    cfg["training"].update(training_data=sysd, validation_data={**sysd, "numb_btch": 1},
                           numb_steps=steps, save_freq=max(steps, 1), disp_freq=1)
    cfg["training"].pop("stat_file", None)
    if compile_:
        cfg["training"]["compile"] = True
    return cfg


def _to_dp_file(descr: str, npz: Path, model_cfg: dict, out: Path) -> None:
    """DeePMD-kit's state dict -> a deepmd_md .dp with the same weights (benchmarks/dp_import)."""
    from deepmd_md.serialize import save_dp

    sys.path.insert(0, str(ROOT / "benchmarks"))
    conv = importlib.import_module(f"dp_import.{DESCRIPTORS[descr][1]}")
    save_dp(conv.to_model_data(dict(np.load(npz)), model_cfg), str(out))


def _param_gap(ckpt: Path, start: Path, final: Path) -> tuple[float, float]:
    """(max |ours - DeePMD-kit| over all weights, the same relative to how far the weights moved)."""
    from deepmd_md.serialize import load_dp
    from deepmd_md.tree import flatten

    ours = flatten(load_dp(str(ckpt))["params"])
    a, b = flatten(load_dp(str(start))["params"]), flatten(load_dp(str(final))["params"])
    gap = max(float(np.abs(ours[k] - b[k]).max()) for k in b)
    rel = max(float(np.abs(ours[k] - b[k]).max() / np.abs(b[k] - a[k]).max()) for k in b)
    return gap, rel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dp-venv", type=Path, required=True, help="a venv with deepmd-kit 3.2")
    ap.add_argument("--descriptor", choices=list(DESCRIPTORS), default="se_e2_a")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--backends", nargs="+", default=["torch", "torch+compile", "jax"])
    args = ap.parse_args()
    from deepmd_md.config import normalize

    # DP_INFER_BATCH_SIZE: DeePMD-kit evaluates one 192-atom frame at a time (its default of
    # 1024 atoms takes ~21 GB for the water DPA-3 in float64)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
               PYTHONPATH=str(ROOT), DP_INFER_BATCH_SIZE="192")
    tmp = Path(tempfile.mkdtemp(prefix="dp-equiv-"))
    try:
        _one_frame_system(tmp / "one")
        dp = args.dp_venv / "bin" / "dp"
        for name, steps in (("dp0", 0), ("dpN", args.steps)):
            (tmp / name).mkdir()
            (tmp / name / "input.json").write_text(json.dumps(_input(args.descriptor, steps)))
            _run([dp, "--pt", "train", "input.json"], tmp / name, env)
        _run([dp, "--pt", "freeze", "-o", "frozen.pth"], tmp / "dpN", env)
        (tmp / "dp_side.py").write_text(DP_SIDE)
        _run([args.dp_venv / "bin" / "python", tmp / "dp_side.py",
              tmp / "dp0/model.ckpt-0.pt", tmp / "w0.npz",
              tmp / f"dpN/model.ckpt-{args.steps}.pt", tmp / "wN.npz",
              tmp / "dpN/frozen.pth", DATA / "data_3", tmp / "ref.npz"], tmp, env)
        mcfg = normalize(_input(args.descriptor, args.steps))["model"]
        _to_dp_file(args.descriptor, tmp / "w0.npz", mcfg, tmp / "start.dp")
        _to_dp_file(args.descriptor, tmp / "wN.npz", mcfg, tmp / "final.dp")

        from deepmd_md.infer import DeepPot

        ref = np.load(tmp / "ref.npz")
        c = np.load(DATA / "data_3/set.000/coord.npy")[:NEVAL]
        b = np.load(DATA / "data_3/set.000/box.npy")[:NEVAL]
        t = np.loadtxt(DATA / "data_3/type.raw", dtype=int)
        e, f = DeepPot(str(tmp / "final.dp"), backend="torch").eval(c, b, t)[:2]
        nat = len(t)
        de = float(np.abs(e.ravel() - ref["e"]).max()) / nat
        df = float(np.abs(f.reshape(ref["f"].shape) - ref["f"]).max())
        print(f"{args.descriptor}, same weights, {NEVAL} data_3 frames: max |dE| {de:.2e} eV/atom, "
              f"max |dF| {df:.2e} eV/A")
        ok = de <= 1e-10 and df <= 1e-10
        for name in args.backends:
            backend, _, comp = name.partition("+")
            d = tmp / f"ours-{name}"
            d.mkdir()
            (d / "input.json").write_text(json.dumps(_input(args.descriptor, args.steps,
                                                            bool(comp))))
            _run([sys.executable, "-m", "deepmd_md.cli.main", "train", "input.json", "-b",
                  backend, "--init-model", tmp / "start.dp", "--no-progress"], d, env)
            gap, rel = _param_gap(d / f"model.ckpt-{args.steps}.ckpt", tmp / "start.dp",
                                  tmp / "final.dp")
            print(f"{args.steps} steps from the same start, {name}: max |ours - DeePMD-kit| "
                  f"{gap:.2e}, relative to the distance moved {rel:.2e}")
            ok &= rel < 1e-2
        print("equivalent" if ok else "NOT equivalent")
        sys.exit(0 if ok else 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

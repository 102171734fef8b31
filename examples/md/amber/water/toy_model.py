"""A toy model for this example: one water molecule on a harmonic O-H / H-O-H potential.

sander evaluates the QM region alone (mechanical embedding: the model sees only the NN water's
three atoms), so the model must describe an isolated molecule; a model trained on bulk water for
a few hundred steps does not, and the NN water falls apart. This script makes 300 distorted
monomers, labels them with a harmonic teacher (k_OH = 44 eV/A^2, k_HOH = 3.6 eV/rad^2 around
0.9572 A and 104.52 degrees, TIP3P's geometry; E0 = -470 eV) and trains a small se_e2_a model on
them for a few hundred steps (seconds). A toy: it stays bound and conserves energy; it is not
water physics. The tests use it too (tests/amber).

    python toy_model.py [-o water_toy.pth] [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

R0, TH0, K_OH, K_HOH, E0 = 0.9572, np.deg2rad(104.52), 22.0, 1.8, -470.0


def monomers(nf: int = 300, seed: int = 0):
    """coord [nf, 3, 3] (O, H, H; A), energy [nf] (eV), force [nf, 3, 3] (eV/A)."""
    rng = np.random.default_rng(seed)
    r1, r2 = R0 + rng.normal(0, 0.04, (2, nf))
    th = TH0 + np.deg2rad(rng.normal(0, 6, nf))
    x = np.zeros((nf, 3, 3))
    x[:, 1, 0] = r1
    x[:, 2, 0], x[:, 2, 1] = r2 * np.cos(th), r2 * np.sin(th)
    for i in range(nf):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        x[i] = x[i] @ q.T + rng.uniform(0, 3, 3)
    d1, d2 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]
    a, b = np.linalg.norm(d1, axis=-1), np.linalg.norm(d2, axis=-1)
    cos = np.sum(d1 * d2, -1) / (a * b)
    ang = np.arccos(cos)
    energy = K_OH * ((a - R0) ** 2 + (b - R0) ** 2) + K_HOH * (ang - TH0) ** 2 + E0
    # gradients: of the bond terms along the bonds, of the angle term through cos(angle)
    ga = (2 * K_OH * (a - R0) / a)[:, None] * d1
    gb = (2 * K_OH * (b - R0) / b)[:, None] * d2
    dang = (-2 * K_HOH * (ang - TH0) / np.sin(ang))[:, None]  # dE/dcos
    gc1 = dang * (d2 / (a * b)[:, None] - cos[:, None] * d1 / (a * a)[:, None])
    gc2 = dang * (d1 / (a * b)[:, None] - cos[:, None] * d2 / (b * b)[:, None])
    grad = np.zeros_like(x)
    grad[:, 1] = ga + gc1
    grad[:, 2] = gb + gc2
    grad[:, 0] = -grad[:, 1] - grad[:, 2]
    return x, energy, -grad


def write_system(root: Path, x, energy, force) -> Path:
    """A deepmd/npy system of open-boundary frames (nopbc)."""
    (root / "set.000").mkdir(parents=True, exist_ok=True)
    (root / "type.raw").write_text("0 1 1\n")
    (root / "type_map.raw").write_text("O\nH\n")
    (root / "nopbc").write_text("")
    nf = len(x)
    np.save(root / "set.000" / "coord.npy", x.reshape(nf, -1))
    np.save(root / "set.000" / "energy.npy", energy)
    np.save(root / "set.000" / "force.npy", force.reshape(nf, -1))
    return root


def train_water_monomer(workdir: Path, numb_steps: int = 300, out: Path | None = None) -> Path:
    """Train the toy model in `workdir` and freeze it to `out` (default workdir/water_toy.pth)."""
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.config import normalize
    from deepmd_md.serialize import load_dp
    from deepmd_md.train.trainer import train

    workdir = Path(workdir).resolve()
    system = write_system(workdir / "monomers", *monomers())
    inp = {"model": {"type_map": ["O", "H"],
                     "descriptor": {"type": "se_e2_a", "sel": [2, 4], "rcut": 4.0,
                                    "rcut_smth": 0.5, "neuron": [8, 16], "axis_neuron": 4,
                                    "seed": 1},
                     "fitting_net": {"neuron": [16, 16], "seed": 1}},
           "learning_rate": {"start_lr": 0.01, "decay_steps": 100, "stop_lr": 3e-4},
           "loss": {"start_pref_e": 0.1, "limit_pref_e": 1, "start_pref_f": 100,
                    "limit_pref_f": 10},
           "training": {"training_data": {"systems": [str(system)], "batch_size": 8},
                        "numb_steps": numb_steps, "seed": 1, "disp_freq": numb_steps,
                        "save_freq": numb_steps, "save_ckpt": str(workdir / "model.ckpt"),
                        "disp_file": str(workdir / "lcurve.out")}}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        ckpt = train(normalize(inp), progress=False)
    finally:
        os.chdir(cwd)
    out = Path(out) if out is not None else workdir / "water_toy.pth"
    freeze_pth(load_dp(ckpt), str(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="train the toy water-monomer model of this example")
    ap.add_argument("-o", "--output", default="water_toy.pth", help="frozen model to write")
    ap.add_argument("--steps", type=int, default=300, help="training steps")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = train_water_monomer(Path(tmp), args.steps, Path(args.output).resolve())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

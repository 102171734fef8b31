"""JAX inference of the DPA-3 example in float32 (its shipped precision) on 96 atoms: jaxlib
0.10's YNNPACK fp32 dot fusion segfaulted here (deepmd_md/backends/jax/__init__.py turns it
off). Run in a child process, so a crash fails this test instead of killing pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, sys
import numpy as np
from deepmd_md.config import load_config, normalize, resolve_auto_sel
from deepmd_md.infer import DeepPot
from deepmd_md.model.model import init_model
from deepmd_md.serialize import save_dp
os.chdir(sys.argv[1])
cfg = resolve_auto_sel(normalize(load_config("dpa3/input.json")))
save_dp(init_model(cfg["model"], 1), sys.argv[2])
coord = np.load("data/data_3/set.000/coord.npy")[:1].reshape(1, -1, 3)[:, :96]
box = np.load("data/data_3/set.000/box.npy")[:1]
atype = np.loadtxt("data/data_3/type.raw", dtype=int)[:96]
out = [DeepPot(sys.argv[2], backend=b).eval(coord.reshape(1, -1), box, atype) for b in ("jax", "torch")]
for x, y in zip(out[0], out[1]):
    assert np.allclose(x, y, rtol=1e-4, atol=1e-4 * np.abs(y).max()), (x, y)
print("same")
"""


def test_dpa3_float32_jax_inference(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    env.pop("XLA_FLAGS", None)
    r = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "examples" / "water"),
                        str(tmp_path / "dpa3.dp")], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("same"), (r.returncode, r.stderr[-2000:])

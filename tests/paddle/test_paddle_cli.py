"""Paddle from the outside: `dpmd freeze -o model.json` from a Paddle-trained checkpoint,
`dpmd test --backend paddle`, DeepPot(backend="paddle"), import isolation, and the clear error
when TensorFlow was imported first."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    ORTHO_BOX,
    assert_close,
    dpmd_env,
    make_model,
    random_frames,
    run_dpmd,
    teacher_system,
    train_input,
)

from deepmd_md.backends.numpy import reference

pytest.importorskip("paddle")


def test_train_freeze_test_cli(tmp_path):
    """train --backend paddle -> checkpoint -> freeze -o model.json (+ .pdiparams) -> the
    .json's ModelData = the checkpoint's; dpmd test on it with the paddle backend."""
    from deepmd_md.formats import read_model
    from deepmd_md.tree import flatten

    sysdir = teacher_system(tmp_path / "sys", nat=8, nf=2)
    (tmp_path / "input.json").write_text(json.dumps(train_input([sysdir], tmp_path,
                                                                numb_steps=2)))
    r = run_dpmd("train", "input.json", "--backend", "paddle", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_dpmd("freeze", "-c", str(tmp_path), "-o", "model.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "model.json").is_file() and (tmp_path / "model.pdiparams").is_file()
    assert "Warning" not in r.stderr, r.stderr
    ckpt = read_model(str(tmp_path / "model.ckpt-2.ckpt"))
    frozen = read_model(str(tmp_path / "model.json"))
    assert frozen["config"] == ckpt["config"]
    a, b = flatten(ckpt["params"]), flatten(frozen["params"])
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    r = run_dpmd("test", "-m", "model.json", "-s", str(sysdir), "--backend", "paddle", "--json",
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "rmse" in r.stdout.lower()


def test_deeppot_backend_paddle(tmp_path):
    from deepmd_md.infer.deep_pot import DeepPot
    from deepmd_md.serialize import save_dp

    data = make_model()
    save_dp(data, str(tmp_path / "m.dp"))
    coord, atype, box = random_frames(10, ORTHO_BOX, 2, seed=5, min_dist=1.0)
    e, f, v, ae, av = DeepPot(str(tmp_path / "m.dp"), backend="paddle").eval(
        coord.reshape(2, -1), box, atype[0], atomic=True)
    ref = reference.evaluate(data, coord, atype, box)
    assert_close(e[:, 0], ref["energy"], 1e-10, "energy")
    assert_close(f, ref["force"], 1e-10, "force")
    assert_close(v, ref["virial"], 1e-10, "virial")
    assert_close(av.sum(1), ref["virial"], 1e-10, "atom virials")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=dpmd_env(), capture_output=True,
                          text=True, timeout=120)


def test_import_isolation():
    """The Paddle backend imports neither torch nor tensorflow (nor jax)."""
    r = _run("import sys\n"
             "import deepmd_md.backends.paddle.adapter, deepmd_md.backends.paddle.freeze\n"
             "import deepmd_md.backends.paddle.trace\n"
             "print(sorted(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_tensorflow_first_is_a_clear_error():
    pytest.importorskip("tensorflow")
    r = _run("import tensorflow\n"
             "from deepmd_md.backends import load_adapter\n"
             "from deepmd_md.errors import DPMDError\n"
             "try:\n    load_adapter('paddle')\n"
             "except DPMDError as e:\n    print('ERR', e)\n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ERR Paddle cannot be imported after TensorFlow" in r.stdout

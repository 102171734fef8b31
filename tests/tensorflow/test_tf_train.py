"""TensorFlow training: the same Adam steps as JAX (itself = PyTorch, tests/test_train.py) on
the same batches, for every descriptor family; and `dpmd train --backend tensorflow` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_model, read_lcurve, run_dpmd, teacher_system, tiny_descriptors, train_input

from deepmd_md.config import normalize
from deepmd_md.tree import flatten

pytest.importorskip("tensorflow")

@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return teacher_system(tmp_path_factory.mktemp("teacher") / "sys", nat=8, nf=4)


# typed, attention (mixed types) and message passing; BackendMixin covers every descriptor's
# forces, so the training step (shared loss and Adam code) is checked on one of each kind
@pytest.mark.parametrize("descr", ["se_e2_a", "se_atten:v2", "dpa3:default"])
def test_tensorflow_and_jax_take_the_same_steps(tmp_path, teacher, descr):
    """Same init, same two batches: the same loss metrics at each step and the same parameters
    after two Adam steps, to 1e-10 (fp64)."""
    pytest.importorskip("jax")
    from deepmd_md.backends.jax import adapter as jax_ad
    from deepmd_md.backends.tensorflow import adapter as tf_ad
    from deepmd_md.train.loss import prefactors
    from deepmd_md.train.optim import adam_init
    from deepmd_md.train.prepared import PreparedData

    init = (make_model(seed=4) if descr == "se_e2_a"
            else make_model(desc=tiny_descriptors()[descr], seed=4))
    cfg = normalize(train_input([teacher], tmp_path))
    prepared = PreparedData(init["config"], [str(teacher)], 2)
    rng = np.random.default_rng(0)
    batches = [prepared.sample(rng) for _ in range(2)]
    results = {}
    for ad in (jax_ad, tf_ad):
        tr = ad.Trainer(init["config"], init["params"], init["buffers"])
        opt = adam_init(tr.params)
        metrics = []
        for i, (batch, prep) in enumerate(batches):
            lr = 1e-2 * 0.5**i
            opt, m = tr.step(batch, prep, prefactors(cfg["loss"], lr, 1e-2), opt, lr)
            metrics.append(m)
        if descr == "se_e2_a":  # the validation entry: the trained model's loss on batch 0
            metrics.append(tr.evaluate_metrics(*batches[0], prefactors(cfg["loss"], 1e-2, 1e-2)))
        results[ad.name] = (metrics, flatten(tr.params_numpy()), flatten(ad.to_numpy(opt["m"])))
    (mj, pj, oj), (mt, pt, ot) = results["jax"], results["tensorflow"]
    for a, b in zip(mj, mt, strict=True):
        for k in ("rmse_e", "rmse_f"):
            assert b[k] == pytest.approx(a[k], rel=1e-10, abs=1e-14), k
    for k in pj:
        assert np.abs(pt[k] - pj[k]).max() <= 1e-10, k
        assert np.abs(ot[k] - oj[k]).max() <= 1e-10, k
    assert max(np.abs(pt[k] - flatten(init["params"])[k]).max() for k in pt) > 1e-4


def test_dpmd_train_tensorflow_then_freeze_pb(tmp_path, teacher):
    """The CLI trains with --backend tensorflow (the lcurve's first line is the initial model's
    error, finite and decreasing), and `dpmd freeze -o model.pb` freezes its checkpoint."""
    inp = train_input([teacher], tmp_path, numb_steps=6)
    (tmp_path / "input.json").write_text(json.dumps(inp))
    r = run_dpmd("train", "input.json", "--backend", "tensorflow", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _, lc = read_lcurve(tmp_path / "lcurve.out")
    assert np.all(np.isfinite(lc)) and lc.shape[0] >= 2
    r = run_dpmd("freeze", "-o", "model.pb", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "model.pb").is_file()

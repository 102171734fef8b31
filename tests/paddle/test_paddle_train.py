"""Paddle training: the same Adam steps as PyTorch (double backward through paddle.grad) for
every descriptor family, and `dpmd train --backend paddle` from the CLI (step-0 loss = torch's)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_model, read_lcurve, run_dpmd, teacher_system, tiny_descriptors, train_input

from deepmd_md.config import normalize
from deepmd_md.tree import flatten

pytest.importorskip("paddle")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return teacher_system(tmp_path_factory.mktemp("teacher") / "sys", nat=8, nf=4)


_ONE_PER_FAMILY = list({n.split(":")[0]: n for n in reversed(list(tiny_descriptors()))}.values())


@pytest.mark.parametrize("descr", ["se_e2_a", *_ONE_PER_FAMILY])
def test_paddle_and_torch_take_the_same_steps(tmp_path, teacher, descr):
    """Same init, same batches: same loss metrics at both steps and same parameters after two
    Adam steps, to 1e-10 (fp64)."""
    from deepmd_md.backends.paddle import adapter as paddle_ad
    from deepmd_md.backends.torch import adapter as torch_ad
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
    for ad in (torch_ad, paddle_ad):
        tr = ad.Trainer(init["config"], init["params"], init["buffers"])
        opt = adam_init(tr.params)
        metrics = []
        for i, (batch, prep) in enumerate(batches):
            lr = 1e-2 * 0.5**i
            opt, m = tr.step(batch, prep, prefactors(cfg["loss"], lr, 1e-2), opt, lr)
            metrics.append(m)
        results[ad.name] = (metrics, flatten(tr.params_numpy()))
    (mt, pt), (mp, pp) = results["torch"], results["paddle"]
    for a, b in zip(mt, mp, strict=True):
        for k in ("rmse_e", "rmse_f"):
            assert b[k] == pytest.approx(a[k], rel=1e-10, abs=1e-14), k
    assert set(pt) == set(pp)
    for k in pt:
        np.testing.assert_allclose(pp[k], pt[k], rtol=0, atol=1e-10, err_msg=k)
    moved = max(np.abs(pp[k] - flatten(init["params"])[k]).max() for k in pp)
    assert moved > 1e-4


def test_dpmd_train_backend_paddle(tmp_path, teacher):
    """`dpmd train --backend paddle` trains and checkpoints; its lcurve's first line (the
    initial model on the first batch) equals torch's to 1e-10."""
    lcs = {}
    for backend in ("torch", "paddle"):
        wd = tmp_path / backend
        wd.mkdir()
        inp = train_input([teacher], wd, numb_steps=3)
        (wd / "input.json").write_text(json.dumps(inp))
        r = run_dpmd("train", "input.json", "--backend", backend, cwd=wd)
        assert r.returncode == 0, r.stderr
        assert (wd / "model.ckpt-3.ckpt").exists() or list(wd.glob("model.ckpt*")), r.stderr
        names, lcs[backend] = read_lcurve(wd / "lcurve.out")
    assert lcs["paddle"].shape == lcs["torch"].shape
    np.testing.assert_allclose(lcs["paddle"][0], lcs["torch"][0], rtol=1e-10, atol=0)
    assert np.all(np.isfinite(lcs["paddle"]))

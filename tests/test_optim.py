"""Gradient clipping (training/gradient_max_norm): torch's documented clip_grad_norm_ rule, on
every backend's arrays, with frozen leaves left out of the norm."""

from __future__ import annotations

import numpy as np
import pytest

from deepmd_md.train.optim import adam_init, adam_update, clip_by_global_norm


def test_clip_scales_to_max_norm():
    g = [np.array([3.0, 0.0]), np.array([[4.0]])]  # global norm 5
    out = clip_by_global_norm(g, 1.0)
    np.testing.assert_allclose(out[0], [3.0 / (5 + 1e-6), 0.0], rtol=1e-15)
    np.testing.assert_allclose(np.sqrt(sum((x * x).sum() for x in out)), 5 / (5 + 1e-6))
    same = clip_by_global_norm(g, 10.0)  # below the threshold: unchanged
    assert all(np.array_equal(a, b) for a, b in zip(same, g, strict=True))
    # a frozen leaf does not count: the norm is 4 and 4 < 4.5
    kept = clip_by_global_norm(g, 4.5, frozen=[True, False])
    assert all(np.array_equal(a, b) for a, b in zip(kept, g, strict=True))


def test_clip_equals_torch_clip_grad_norm():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    ps = [torch.nn.Parameter(torch.tensor(rng.normal(size=s))) for s in ((3, 4), (4,), (2,))]
    for p in ps:
        p.grad = torch.tensor(rng.normal(size=p.shape))
    ours = clip_by_global_norm([p.grad.clone() for p in ps], 0.5)
    torch.nn.utils.clip_grad_norm_(ps, 0.5)
    for a, p in zip(ours, ps, strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-14, atol=0)


def test_adam_update_clips_before_the_moments():
    params = {"a": np.array([1.0, 2.0])}
    grads = {"a": np.array([30.0, 40.0])}
    _, st = adam_update(params, grads, adam_init(params), 1e-3, max_norm=0.5)
    np.testing.assert_allclose(st["m"]["a"], 0.1 * np.array([30.0, 40.0]) * 0.5 / (50 + 1e-6))

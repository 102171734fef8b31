"""The Paddle array-API shim (deepmd_md/backends/paddle/xp.py) against NumPy's namespace
(array_api_compat) function by function, and its coverage: every `xp.NAME` the model, training
and kernel code call exists in the shim and in the freezer's traced namespace."""

from __future__ import annotations

import re
from pathlib import Path

import array_api_compat.numpy as anp
import numpy as np
import pytest

pytest.importorskip("paddle")

ROOT = Path(__file__).resolve().parents[2] / "deepmd_md"
USERS = [*(ROOT / "model").rglob("*.py"), *(ROOT / "train").rglob("*.py"),
         *(ROOT / "kernels").rglob("*.py"), ROOT / "backends" / "common.py"]


def used_names() -> set[str]:
    names = set()
    for p in USERS:
        names |= set(re.findall(r"\bxp\.([a-z_][a-z_0-9]*)", p.read_text()))
    return names


def test_every_used_function_exists():
    from deepmd_md.backends.paddle import xp
    from deepmd_md.backends.paddle.trace import DUAL

    names = used_names()
    assert {"reshape", "where", "take", "matmul"} <= names  # the scan finds them
    assert not [n for n in names if not hasattr(xp, n)], "missing in the shim"
    assert not [n for n in names if not hasattr(DUAL, n)], "missing in the traced namespace"


rng = np.random.default_rng(0)
A = rng.normal(size=(2, 3, 4))
B = rng.normal(size=(2, 4, 5))
I = rng.integers(0, 3, size=(2, 3, 4))  # noqa: E741
CASES = {
    "reshape": lambda xp, t: xp.reshape(t(A), (6, 4)),
    "where": lambda xp, t: xp.where(t(A) > 0, t(A), xp.zeros_like(t(A))),
    "matmul": lambda xp, t: xp.matmul(t(A), t(B)),
    "concat": lambda xp, t: xp.concat([t(A), t(A)], axis=-1),
    "sum": lambda xp, t: xp.sum(t(A), axis=(0, 2), keepdims=True),
    "sum_all": lambda xp, t: xp.sum(t(A)),
    "take": lambda xp, t: xp.take(t(A), t(np.array([2, 0, 1, 1])), axis=1),
    "matrix_transpose": lambda xp, t: xp.matrix_transpose(t(A)),
    "mean": lambda xp, t: xp.mean(t(A), axis=-1, keepdims=True),
    "exp_log_sqrt_tanh_abs": lambda xp, t: xp.log(xp.exp(xp.tanh(t(A))) + xp.sqrt(xp.abs(t(A)))),
    "broadcast_to": lambda xp, t: xp.broadcast_to(t(A)[:, None], (2, 5, 3, 4)),
    "permute_dims": lambda xp, t: xp.permute_dims(t(A), (2, 0, 1)),
    "full_like": lambda xp, t: xp.full_like(t(A), 2.5),
    "zeros_ones_eye": lambda xp, t: (xp.zeros((2, 3), dtype=xp.float64) + xp.ones((2, 3))
                                     + xp.eye(2, 3, dtype=xp.float64)),
    "astype": lambda xp, t: xp.astype(t(A) > 0, xp.float64),
    "max": lambda xp, t: xp.max(t(A), axis=-1, keepdims=True),
    "max_axes": lambda xp, t: xp.max(t(A), axis=(0, 2)),
    "min": lambda xp, t: xp.min(t(A), axis=1),
    "argsort": lambda xp, t: xp.argsort(t(A), axis=-1),
    "take_along_axis": lambda xp, t: xp.take_along_axis(t(A), t(I), axis=1),
    "clip": lambda xp, t: xp.clip(t(A), -0.5, 0.5) + xp.clip(t(A), max=0.1),
    "nonzero": lambda xp, t: xp.nonzero(t(I[0, 0]) > 0)[0],
    "arange": lambda xp, t: xp.arange(5, dtype=xp.int64) * 3,
    "floor_any": lambda xp, t: (xp.floor(t(A) * 3)
                                + xp.astype(xp.any(t(A) > 1, axis=-1), xp.float64)[..., None]),
    "minimum_maximum": lambda xp, t: xp.minimum(t(A), 0.2) + xp.maximum(t(A), t(A) * 0.5),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_numpy(case):
    from deepmd_md.backends.paddle import adapter, xp

    want = np.asarray(CASES[case](anp, np.asarray))
    got = CASES[case](xp, lambda a: adapter.asarray(np.asarray(a)))
    got = got.numpy()
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want) if got.dtype.kind in "biu" else \
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_isdtype():
    import paddle

    from deepmd_md.backends.paddle import xp

    assert xp.isdtype(paddle.float64, "real floating")
    assert not xp.isdtype(paddle.float32, "complex floating")
    assert xp.isdtype(paddle.int64, "integral") and xp.isdtype(np.float32, "real floating")

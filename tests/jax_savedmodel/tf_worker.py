"""TensorFlow side of the .savedmodel tests, in its own process (TensorFlow is never imported in
the pytest process: importing it before Paddle crashes).

Reads lines `IN.npz OUT.npz` on stdin; IN holds `path` (the SavedModel) and the forward_lower
inputs (extended_coord, extended_atype, nlist, mapping[, atom_weight: ones when absent]); OUT
gets every output of the `forward_lower` signature (or, when IN holds `strings`, the bytes of
the `metadata` and `model_dp` signatures' strings). Answers `ok` or `error: ...` on stdout,
one line per request.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SIGNATURE = "forward_lower"  # deepmd_md.backends.jax.savedmodel.SIGNATURE (no import: no JAX here)
_models: dict = {}


def run(inp: str, out: str) -> None:
    d = dict(np.load(inp))
    path = str(d.pop("path"))
    if path not in _models:
        _models[path] = tf.saved_model.load(path)
    sigs = _models[path].signatures
    if d.pop("strings", False):  # the string signatures: metadata, model_dp
        np.savez(out, **{k: np.frombuffer(sigs[k]()[k].numpy(), np.uint8)
                         for k in ("metadata", "model_dp")})
        return
    sig = sigs[SIGNATURE]
    if "atom_weight" in sig.structured_input_signature[1] and "atom_weight" not in d:
        d["atom_weight"] = np.ones(d["nlist"].shape[:2])  # every local atom counts
    res = sig(**{k: tf.constant(v) for k, v in d.items()})
    np.savez(out, **{k: v.numpy() for k, v in res.items()})


def main() -> None:
    for line in sys.stdin:
        try:
            run(*line.split())
            print("ok", flush=True)
        except Exception as e:  # report, keep serving
            msg = " ".join(f"{type(e).__name__}: {e}".split())[:2000]
            print(f"error: {msg}", flush=True)


if __name__ == "__main__":
    main()

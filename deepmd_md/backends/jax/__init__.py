"""JAX backend: adapter (jnp arrays, jax.grad, jax.jit) and the `.savedmodel` writer.

XLA reads XLA_FLAGS when its CPU client starts, so the one flag we set is set here, before any
module of this package touches JAX: jaxlib 0.10's CPU runtime hands float32 dots to YNNPACK
fusions, and its AVX-512 fp32 dot kernel (ynn::dot_fp32_1x64x1_1x16x1_avx512) segfaults running
the DPA-3 example's float32 inference graph from ~48 atoms up (gdb backtrace, 2026-12-01):
those fusions are turned off unless the user sets the flag.
"""

from __future__ import annotations

import os
from importlib import metadata

_YNN = "--xla_cpu_experimental_ynn_fusion_type"


def _xla_flags() -> None:
    try:
        jaxlib = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if jaxlib.startswith("0.10.") and _YNN not in flags:  # the flag is unknown elsewhere
        os.environ["XLA_FLAGS"] = f"{flags} {_YNN}=".strip()


_xla_flags()

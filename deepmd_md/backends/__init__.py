"""Framework adapters. Each supplies arrays, autodiff and a freezer; none holds model math.

REGISTRY is the one list of backends: the CLI's choices, the trainer and DeepPot read it. A new
framework (TensorFlow, Paddle) is one row here, its folder `deepmd_md/backends/<name>/` with an
`adapter` module, and its frozen formats in deepmd_md/formats.py.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from deepmd_md.errors import ConfigError


@dataclass(frozen=True)
class Backend:
    name: str
    adapter: str | None    # the adapter module (None: the NumPy complex-step reference)
    trains: bool           # `dpmd train --backend NAME`
    extra: str             # `pip install deepmd-md[EXTRA]` installs the framework
    always_compiled: bool  # training steps are always compiled (jit), whatever training/compile


REGISTRY = {b.name: b for b in (
    Backend("torch", "deepmd_md.backends.torch.adapter", True, "torch", False),
    Backend("jax", "deepmd_md.backends.jax.adapter", True, "jax", True),
    Backend("tensorflow", "deepmd_md.backends.tensorflow.adapter", True, "tensorflow", True),
    Backend("paddle", "deepmd_md.backends.paddle.adapter", True, "paddle", False),
    Backend("numpy", None, False, "", False),
)}
BACKENDS = tuple(REGISTRY)


def names(trains: bool = False) -> tuple[str, ...]:
    """Backend names (those that train, with trains=True), for CLI choices and messages."""
    return tuple(n for n, b in REGISTRY.items() if b.trains or not trains)


def load_adapter(name: str, trains: bool = False) -> ModuleType | None:
    """The adapter module of backend `name` (None for the NumPy reference); ConfigError for an
    unknown name, or one whose framework is not installed (naming the extra to install)."""
    if name not in names(trains):
        raise ConfigError(f"unknown backend {name!r}; choose {' or '.join(names(trains))}")
    b = REGISTRY[name]
    if b.adapter is None:
        return None
    try:
        return importlib.import_module(b.adapter)
    except ImportError as e:
        raise ConfigError(f"backend {name!r} is not installed ({e}); "
                          f"pip install 'deepmd-md[{b.extra}]'") from None

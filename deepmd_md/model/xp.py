"""The array namespace the model code uses: array-api-compat's (NumPy, PyTorch, JAX), plus the
namespaces that adapters register for frameworks it does not cover (TensorFlow, Paddle).

Model code calls `array_namespace(*arrays)` from here, never from array_api_compat directly, so
a framework is added by its adapter (`register_namespace`) without touching any model file.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from array_api_compat import array_namespace as _compat_namespace

_SHIMS: list[tuple[Callable[[Any], bool], ModuleType]] = []


def register_namespace(is_array: Callable[[Any], bool], namespace: ModuleType) -> None:
    """Arrays for which is_array(x) is true get `namespace` (an array-API shim module)."""
    if all(ns is not namespace for _, ns in _SHIMS):
        _SHIMS.append((is_array, namespace))


def array_namespace(*xs):
    """The namespace of the arrays xs (array_api_compat semantics)."""
    for is_array, ns in _SHIMS:
        if any(is_array(x) for x in xs):
            return ns
    return _compat_namespace(*xs)

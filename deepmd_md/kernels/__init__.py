"""Kernels of compressed models: the NumPy / array-API reference of kernels/ (C++) and the
dispatch the model math calls (tabulate.py, env_mat.py).

Each module keeps a registry of framework entries (dataclasses whose fields but `framework` are
"module:function" specs); `first_kernel` is their one dispatch rule."""

from __future__ import annotations

import importlib
import sys

_resolved: dict[str, object] = {}


def resolve(spec: str):
    """The function of a "module:function" spec, imported on first use."""
    if spec not in _resolved:
        module, name = spec.split(":")
        _resolved[spec] = getattr(importlib.import_module(module), name)
    return _resolved[spec]


def first_kernel(registry, x, kind: str):
    """Field `kind` of the first registry entry whose framework is imported (dispatch never
    imports one) and whose `accepts` takes array x; None when there is none or the entry's
    field is "" (then the caller runs the array-API reference)."""
    for k in registry:
        if k.framework in sys.modules and resolve(k.accepts)(x):
            spec = getattr(k, kind)
            return resolve(spec) if spec else None
    return None

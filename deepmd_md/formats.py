"""Model file formats by suffix: one registry that every tool reads and writes through.

`read_model(path) -> ModelData` (config, params, buffers) for every format we write, and
`write_model(data, path)` for the frozen formats. Adding a format (TensorFlow `.pb`, Paddle, ...)
is one entry here plus its backend folder; no tool lists suffixes itself.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from deepmd_md.errors import ConfigError, ModelFileError


@dataclass(frozen=True)
class Format:
    suffix: str
    what: str              # for help texts and messages
    read: Reader | None    # path -> ModelData
    write: Writer | None   # (ModelData, path), atomic
    slow: str = ""         # said before a write that takes long
    backend: str = ""      # the framework it needs (deepmd_md.backends.REGISTRY), "" for none


Reader = Callable[[str], dict] | str   # a function, or "module:function" imported on first use
Writer = Callable[[dict, str], None] | str


def _resolve(fn, suffix: str):
    """A registry entry's function; "module:function" strings are imported when used, so that a
    format's framework is imported only for that format (a missing one names its extra)."""
    if not isinstance(fn, str):
        return fn
    module, name = fn.split(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:
        from deepmd_md.backends import REGISTRY

        b = REGISTRY.get(FORMATS[suffix].backend)
        hint = f"; pip install 'deepmd-md[{b.extra}]'" if b and b.extra else ""
        raise ConfigError(f"{suffix} files need {FORMATS[suffix].backend or module} ({e}){hint}") \
            from None


def _read_dp(path: str) -> dict:
    from deepmd_md.serialize import load_dp

    return load_dp(path)


def _write_dp(data: dict, path: str) -> None:
    from deepmd_md.serialize import save_dp

    save_dp({k: data[k] for k in ("config", "params", "buffers")}, path)


def _read_pth(path: str) -> dict:
    from deepmd_md.infer.deep_pot import _pth_extra

    return _pth_extra(path)[1]


def _write_pth(data: dict, path: str) -> None:
    from deepmd_md.backends.torch.freeze import freeze_pth

    freeze_pth(data, path)


def _read_pt2(path: str) -> dict:
    try:
        from deepmd_md.backends.torch.aoti import read_pt2_model_data
    except ImportError as e:
        raise ModelFileError(f"cannot read {path}: a .pt2 needs PyTorch ({e})") from None
    try:
        return read_pt2_model_data(path)
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}; this tool needs the weights: freeze the checkpoint "
                             "again, or use the .pth or .dp frozen from it") from None
    except RuntimeError as e:  # torch's zip reader on a file that is no archive
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"cannot read {path}: not a .pt2 package ({first})") from None


def _write_pt2(data: dict, path: str) -> None:
    try:
        from deepmd_md.backends.torch.aoti import freeze_pt2
    except ImportError as e:
        raise ConfigError(f"cannot write .pt2: {e}") from None
    freeze_pt2(data, path)


def _read_gromacs(path: str) -> dict:
    from deepmd_md.gromacs import extract_model

    with tempfile.TemporaryDirectory() as tmp:
        return read_model(extract_model(path, tmp))


FORMATS = {f.suffix: f for f in (
    Format(".pth", "TorchScript, for LAMMPS, GROMACS and Python", _read_pth, _write_pth,
           "TorchScript export, seconds", "torch"),
    Format(".pt2", "AOTInductor, compiled for this CPU", _read_pt2, _write_pt2,
           "AOTInductor compilation, typically 1-3 minutes", "torch"),
    Format(".pb", "TensorFlow frozen graph, for LAMMPS and Python",
           "deepmd_md.backends.tensorflow.freeze:read_pb",
           "deepmd_md.backends.tensorflow.freeze:freeze_pb", "TensorFlow export", "tensorflow"),
    Format(".savedmodel", "JAX through jax2tf, a TensorFlow SavedModel folder",
           "deepmd_md.backends.jax.savedmodel:read_savedmodel",
           "deepmd_md.backends.jax.savedmodel:freeze_savedmodel", "jax2tf export", "jax"),
    Format(".json", "Paddle inference program, NAME.pdiparams written beside it",
           "deepmd_md.backends.paddle.freeze:read_paddle",
           "deepmd_md.backends.paddle.freeze:freeze_paddle", "Paddle export", "paddle"),
    Format(".dp", "backend-neutral HDF5", _read_dp, _write_dp),
    Format(".ckpt", "training checkpoint (HDF5)", _read_dp, None),
    Format(".pt", "the GROMACS module of `dpmd export-gromacs`", _read_gromacs, None),
)}

READABLE = (", ".join(FORMATS) + ", and DeePMD-kit 3.x models (.dp, .yaml, .pth, .pt) with the "
            "descriptors implemented here")
WRITABLE = ", ".join(s for s, f in FORMATS.items() if f.write)


def format_of(path: str) -> Format | None:
    return FORMATS.get(os.path.splitext(str(path).rstrip("/"))[1])  # "m.savedmodel/" too


def read_model(path: str) -> dict:
    """ModelData of any model file we write (a checkpoint or .dp under any name is read too:
    HDF5 with our format tag)."""
    path = str(path)
    if not os.path.exists(path):
        raise ModelFileError(f"model file not found: {path}")
    from deepmd_md.interop import is_deepmd_kit, read_deepmd_kit

    if is_deepmd_kit(path):  # DeePMD-kit's .dp/.yaml/.pth/.pt: the same model in our terms
        return read_deepmd_kit(path)
    fmt = format_of(path)
    if fmt is None and _is_hdf5(path):
        fmt = FORMATS[".dp"]
    if fmt is None or fmt.read is None:
        raise ModelFileError(f"{path}: not a model format deepmd_md reads ({READABLE})")
    return _resolve(fmt.read, fmt.suffix)(path)


def write_model(data: dict, path: str) -> None:
    """Freeze ModelData to `path` in the format its suffix names (atomically)."""
    fmt = format_of(str(path))
    if fmt is None or fmt.write is None:
        raise ConfigError(f"unknown model format for {path}: use {WRITABLE}")
    _resolve(fmt.write, fmt.suffix)(data, str(path))


def _is_hdf5(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"

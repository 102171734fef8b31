"""DeePMD-kit 3.x model files -> (DeePMD-kit's model section, its serialized model tree).

Which files (layouts read from the files `dp convert-backend` and `dp --pt freeze/train` write):
- `.dp`: HDF5; attribute `json` holds the whole serialized dict, each array replaced by the name
  of a dataset ("/variable_0007") at the top level of the file.
- `.yaml`: the same dict, each array as {"@class": "np.ndarray", "dtype", "value": nested lists}.
- `.pth` / `.pt` (PyTorch): see interop/torch_files.py, which rebuilds the same tree.
The dict: {"model": {"@class": "Model", "type_map", "descriptor", "fitting", "@variables":
{"out_bias", "out_std"}, ...}, "model_def_script": the input's `model` section, ...}; every
serialized network layer is {"@variables": {"w", "b", "idt"}} (absent ones null).
"""

from __future__ import annotations

import json
import os

import numpy as np

from deepmd_md.errors import ModelFileError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_deepmd_kit_dp(path: str) -> bool:
    """A DeePMD-kit `.dp` (HDF5 with its `json` attribute), not ours (which has `format`)."""
    import h5py

    try:
        with open(path, "rb") as f:
            if f.read(8) != HDF5_MAGIC:
                return False
        with h5py.File(path, "r") as f:
            return "json" in f.attrs and "format" not in f.attrs
    except OSError:
        return False


def load_dp(path: str) -> dict:
    """The serialized dict of a DeePMD-kit `.dp`, arrays as NumPy."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            tree = json.loads(f.attrs["json"])

            def resolve(node):
                if isinstance(node, dict):
                    return {k: resolve(v) for k, v in node.items()}
                if isinstance(node, list):
                    return [resolve(v) for v in node]
                if isinstance(node, str) and node.startswith("/variable_") and node[1:] in f:
                    return np.asarray(f[node[1:]][()])
                return node

            return resolve(tree)
    except (OSError, KeyError, ValueError) as e:
        raise ModelFileError(f"cannot read DeePMD-kit model {path}: {e}") from None


def load_yaml(path: str) -> dict:
    """The serialized dict of a DeePMD-kit `.yaml`, arrays as NumPy."""
    try:
        import yaml
    except ImportError:
        raise ModelFileError(f"reading {path} needs PyYAML: pip install pyyaml") from None
    try:
        with open(path) as f:
            tree = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"cannot read DeePMD-kit model {path}: {first}") from None

    def resolve(node):
        if isinstance(node, dict):
            if node.get("@class") == "np.ndarray":
                return np.asarray(node["value"], dtype=node.get("dtype", "float64"))
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    if not isinstance(tree, dict) or "model" not in tree:
        raise ModelFileError(f"{path}: not a DeePMD-kit model (no 'model' entry)")
    return resolve(tree)


def load(path: str) -> dict:
    """The serialized dict of any DeePMD-kit model file we read, by suffix."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".yaml", ".yml"):
        return load_yaml(path)
    if ext in (".pth", ".pt"):
        from deepmd_md.interop.torch_files import load_torch

        return load_torch(path)
    return load_dp(path)

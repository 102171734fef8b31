"""The `.dp` file: a versioned, backend-neutral model (HDF5: JSON config + weights + statistics).

Layout: attrs {format: "deepmd_md.model", version: 2 (1 is read and upgraded), config: JSON of
the `model` section, extra: JSON}; groups /params and /buffers hold the flattened trees
("descriptor/t0/layers/0/w").
Also used for checkpoints (extra groups /opt_m, /opt_v; training state in `extra`), so no pickled
code is ever loaded.
"""

from __future__ import annotations

import json
import os
import tempfile

import h5py
import numpy as np

from deepmd_md.errors import ModelFileError
from deepmd_md.model.model import FORMAT, VERSION
from deepmd_md.tree import flatten, unflatten

TREES = ("params", "buffers")


def atomic_write(path: str, write_fn) -> None:
    """write_fn(tmp_path) then rename: a crash never leaves a half-written file at `path`."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is shared like any other
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_dp(data: dict, path: str, extra_trees: dict | None = None, extra: dict | None = None):
    """Write ModelData (and optional extra trees, e.g. optimizer moments) to `path` atomically."""

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["config"] = json.dumps(data["config"])
            f.attrs["extra"] = json.dumps(extra or {})
            trees = {k: data[k] for k in TREES} | (extra_trees or {})
            for name, tree in trees.items():
                g = f.create_group(name)
                for p, v in flatten(tree).items():
                    g.create_dataset(p, data=np.asarray(v))

    atomic_write(path, write)


def load_dp(path: str, with_extra: bool = False):
    """Read a `.dp` file -> ModelData (and (extra_trees, extra) when with_extra)."""
    if not os.path.isfile(path):
        raise ModelFileError(f"model file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise ModelFileError(f"{path} is not a deepmd_md model file (format tag missing)")
            version = int(f.attrs["version"])
            if version > VERSION:
                raise ModelFileError(
                    f"{path} has model format version {version}; this deepmd_md reads <= {VERSION}"
                )
            trees = {}
            for name in f:
                flat = {}
                f[name].visititems(
                    lambda p, obj, flat=flat: flat.__setitem__(p, obj[()])
                    if isinstance(obj, h5py.Dataset) else None
                )
                trees[name] = unflatten(flat)
            data = {"format": FORMAT, "version": version,
                    "config": json.loads(f.attrs["config"])}
            extra = json.loads(f.attrs["extra"])
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise ModelFileError(f"cannot read model file {path}: corrupt or not HDF5 ({e})") from None
    for name in TREES:
        data[name] = trees.pop(name)
    if version < 2:  # v1: descriptor statistics at the top level of buffers
        b = data["buffers"]
        data["buffers"] = {"descriptor": {k: b.pop(k) for k in ("davg", "dstd")}, **b}
        data["version"] = VERSION
    if with_extra:
        return data, trees, extra
    return data

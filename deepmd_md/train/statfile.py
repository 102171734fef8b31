"""training/stat_file: the data statistics (descriptor mean/std, energy bias) cached in an .npz.

The file keeps, beside the arrays, what they were computed from (the model's type_map and
descriptor, the statistics settings and the training systems); a file written for anything else
is refused rather than used, since wrong statistics train silently worse.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from deepmd_md.errors import ConfigError
from deepmd_md.serialize import atomic_write
from deepmd_md.tree import flatten, unflatten

_META = "__deepmd_md_stat_meta__"


def _meta(mcfg: dict, systems: list[str]) -> dict:
    desc = {k: v for k, v in mcfg["descriptor"].items() if k not in ("seed", "trainable")}
    return {"type_map": mcfg["type_map"], "descriptor": desc,
            "data_stat_nbatch": mcfg.get("data_stat_nbatch", 10),
            "data_stat_protect": mcfg.get("data_stat_protect", 1e-2),
            "data_bias_nsample": mcfg.get("data_bias_nsample", 10),
            "rcond": mcfg["fitting_net"].get("rcond"),
            "systems": [os.path.abspath(p) for p in systems]}


def load_or_compute(path: str, mcfg: dict, train_data, compute, log) -> dict:
    """Statistics from `path` if it exists (checked against this run), else compute() and
    write them there. Returns the buffers dict."""
    meta = json.loads(json.dumps(_meta(mcfg, [s.path for s in train_data.systems])))
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ConfigError(f"'training/stat_file' {path}: not a deepmd_md statistics file "
                              f"({e}); delete it or point stat_file elsewhere") from None
        old = json.loads(str(arrays.pop(_META, "{}")))
        diff = [k for k in meta if old.get(k) != meta[k]]
        if diff:
            raise ConfigError(f"'training/stat_file' {path} was written for another model or "
                              f"data (differs in: {', '.join(diff)}); delete it or point "
                              "stat_file elsewhere")
        log.info(f"data statistics read from {path}")
        return unflatten(arrays)
    stats = compute()
    flat = {k: np.asarray(v) for k, v in flatten(stats).items()}
    flat[_META] = np.array(json.dumps(meta))

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **flat)

    atomic_write(path, write)
    log.info(f"data statistics saved to {path}")
    return stats

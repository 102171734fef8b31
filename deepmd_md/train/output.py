"""Files a training run writes: checkpoints (+ the `checkpoint` pointer) and lcurve.out."""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from deepmd_md.serialize import save_dp


def _ckpt_name(prefix: str, step: int) -> str:
    return f"{prefix}-{step}.ckpt"


def save_checkpoint(prefix: str, data: dict, opt_state: dict, step: int, rngs: dict,
                    keep: int, backend, samplers: dict | None = None,
                    remove: list[str] | tuple = ()) -> str:
    """Write `{prefix}-{step}.ckpt` atomically, point `checkpoint` at it, keep the last `keep`.

    remove: checkpoints of an earlier run, deleted first (so that the rotation, which sorts by
    step, only ever sees this run's)."""
    path = _ckpt_name(prefix, step)
    trees = {"opt_m": backend.to_numpy(opt_state["m"]), "opt_v": backend.to_numpy(opt_state["v"])}
    extra = {"step": step, "opt_t": int(np.asarray(opt_state["t"])),
             "rng": {k: r.bit_generator.state for k, r in rngs.items()},
             "sampler": {k: smp.state() for k, smp in (samplers or {}).items()}}
    save_dp(data, path, extra_trees=trees, extra=extra)
    for p in remove:
        if os.path.abspath(p) != os.path.abspath(path) and os.path.isfile(p):
            os.unlink(p)
    d = os.path.dirname(os.path.abspath(prefix))
    with open(os.path.join(d, ".checkpoint.tmp"), "w") as f:
        f.write(os.path.basename(path) + "\n")
    os.replace(os.path.join(d, ".checkpoint.tmp"), os.path.join(d, "checkpoint"))
    # only this prefix's numbered checkpoints rotate (`model.ckpt-2_updated.ckpt` of change-bias
    # and other user files are left alone)
    numbered = {p: re.search(r"-(\d+)\.ckpt$", p) for p in glob.glob(glob.escape(prefix) + "-*.ckpt")}
    olds = sorted((p for p, m in numbered.items() if m), key=lambda p: int(numbered[p].group(1)))
    for p in olds[:-keep] if keep > 0 else []:
        os.unlink(p)
    return path


class LCurve:
    """lcurve.out in DeePMD-kit's layout: step, then per quantity (rmse, rmse_e, rmse_f and
    rmse_v when the virial is trained) the validation and training columns (training only
    without validation data), then lr. RMSEs of energy and virial are per atom; nan marks a
    term whose labels the batch lacks."""

    def __init__(self, path: str, with_virial: bool, with_validation: bool, append: bool):
        self.names = ["rmse", "rmse_e", "rmse_f"] + (["rmse_v"] if with_virial else [])
        self.with_val = with_validation
        self.f = open(path, "a" if append else "w", buffering=1)
        if not append:
            cols = ["step"]
            for n in self.names:
                cols += [f"{n}_val", f"{n}_trn"] if with_validation else [f"{n}_trn"]
            cols.append("lr")
            self.f.write("# " + "".join(f"{c:>12s} " for c in cols).rstrip() + "\n")

    def write(self, step: int, trn: dict, val: dict | None, lr: float) -> None:
        """trn/val: name -> float (the names above); val None without validation data."""
        vals = []
        for n in self.names:
            vals += [val[n], trn[n]] if self.with_val else [trn[n]]
        self.f.write(f"{step:7d}   " + " ".join(f"{v:12.2e}" for v in vals) + f" {lr:12.1e}\n")

    def close(self) -> None:
        self.f.close()

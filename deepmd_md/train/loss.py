"""Learning-rate schedule, loss prefactors and the energy loss (array API, shared by backends)."""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from deepmd_md import keys


def exp_lr(cfg: dict, numb_steps: int):
    """DeePMD's exponential decay: lr(t) = start_lr * r^(floor(t / decay_steps)), with r chosen so
    that lr(numb_steps) = stop_lr, unless decay_rate is given. A decay_steps that is not smaller
    than numb_steps would never decay; as DeePMD-kit does, it is then replaced by
    100 (numb_steps // 10 > 100) or numb_steps // 100 + 1. Returns a function step -> lr."""
    start, stop, dsteps = cfg["start_lr"], cfg["stop_lr"], cfg["decay_steps"]
    numb_steps = max(numb_steps, 1)
    if dsteps >= numb_steps:
        dsteps = 100 if numb_steps // 10 > 100 else numb_steps // 100 + 1
    rate = cfg.get("decay_rate") or (stop / start) ** (dsteps / numb_steps)

    def lr(step: int) -> float:
        return start * rate ** (step // dsteps)

    return lr


def prefactors(cfg: dict, lr: float, start_lr: float) -> dict:
    """pref(t) = start * lr/start_lr + limit * (1 - lr/start_lr) for e, f, v."""
    frac = lr / start_lr
    return {
        k: cfg[f"start_pref_{k}"] * frac + cfg[f"limit_pref_{k}"] * (1.0 - frac)
        for k in ("e", "f", "v")
    }


def ener_loss(pred: dict, batch: dict, pref: dict):
    """pred/batch: energy [nf], force [nf, nat, 3], virial [nf, 9]; pref: python or 0-d floats.

    loss = p_e <dE^2>/N + p_f <dF^2> + p_v <dV^2>/N (N atoms, <> mean over components), as
    DeePMD-kit; returns (loss, {"rmse_e" (per atom), "rmse_f", "rmse_v" (per atom)}).
    """
    xp = array_namespace(pred[keys.ENERGY])
    natoms = batch[keys.LABEL_FORCE].shape[1]
    l2_e = xp.mean((pred[keys.ENERGY] - batch[keys.LABEL_ENERGY]) ** 2)
    l2_f = xp.mean((pred[keys.FORCE] - batch[keys.LABEL_FORCE]) ** 2)
    find_v = batch[keys.FIND_VIRIAL]
    l2_v = xp.mean((pred[keys.VIRIAL] - batch[keys.LABEL_VIRIAL]) ** 2) * find_v
    loss = pref["e"] * l2_e / natoms + pref["f"] * l2_f + pref["v"] * l2_v / natoms
    metrics = {
        "rmse_e": xp.sqrt(l2_e) / natoms,
        "rmse_f": xp.sqrt(l2_f),
        "rmse_v": xp.sqrt(l2_v) / natoms,
    }
    return loss, metrics


def rmse_total(metrics: dict, pref: dict, natoms: int) -> float:
    """sqrt of the weighted loss from the component RMSEs (DeePMD's `rmse` column)."""
    e = metrics["rmse_e"] * natoms
    v = metrics["rmse_v"] * natoms
    return math.sqrt(pref["e"] * e * e / natoms + pref["f"] * metrics["rmse_f"] ** 2
                     + pref["v"] * v * v / natoms)

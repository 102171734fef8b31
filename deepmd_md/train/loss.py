"""Learning-rate schedule, loss prefactors and the energy loss (array API, shared by backends)."""

from __future__ import annotations

import math

from deepmd_md import keys
from deepmd_md.model.xp import array_namespace


def exp_lr(cfg: dict, numb_steps: int):
    """DeePMD's exponential decay: lr(t) = start_lr * r^(floor(t / decay_steps)), with r chosen so
    that lr(numb_steps) = stop_lr, unless decay_rate is given. A decay_steps that is not smaller
    than numb_steps would never decay; as DeePMD-kit does, it is then replaced by
    100 (numb_steps // 10 > 100) or numb_steps // 100 + 1. Returns a function step -> lr."""
    start, stop = cfg["start_lr"], cfg["stop_lr"]
    dsteps = decay_steps(cfg, numb_steps)
    numb_steps = max(numb_steps, 1)
    rate = cfg.get("decay_rate") or (stop / start) ** (dsteps / numb_steps)

    def lr(step: int) -> float:
        return start * rate ** (step // dsteps)

    return lr


def decay_steps(cfg: dict, numb_steps: int) -> int:
    """learning_rate/decay_steps as exp_lr applies it (replaced when >= numb_steps)."""
    numb_steps = max(numb_steps, 1)
    if cfg["decay_steps"] >= numb_steps:
        return 100 if numb_steps // 10 > 100 else numb_steps // 100 + 1
    return cfg["decay_steps"]


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


_FIND = {"e": keys.FIND_ENERGY, "f": keys.FIND_FORCE, "v": keys.FIND_VIRIAL}


def batch_prefactors(pref: dict, batch: dict) -> dict:
    """The prefactors with a term the batch has no labels for (find_* = 0) set to 0, so that
    its zero-filled labels never enter the loss."""
    return {k: (p if float(batch[_FIND[k]]) else 0.0) for k, p in pref.items()}


def mark_absent(metrics: dict, batch: dict) -> dict:
    """The metrics with rmse_k = nan for a term the batch has no labels for (DeePMD-kit's
    lcurve convention), instead of the meaningless error against zeros."""
    return {n: (math.nan if n[5:] in _FIND and not float(batch[_FIND[n[5:]]]) else v)
            for n, v in metrics.items()}


def rmse_total(metrics: dict, pref: dict, natoms: int) -> float:
    """sqrt of the weighted loss from the component RMSEs (DeePMD's `rmse` column); terms with
    a zero prefactor (or without labels: nan) do not count."""
    total = 0.0
    for k in ("e", "f", "v"):
        m = metrics[f"rmse_{k}"]
        if pref[k] == 0 or not math.isfinite(m):
            continue
        total += pref[k] * m * m * (1 if k == "f" else natoms)  # e, v: per-atom RMSEs
    return math.sqrt(total)

"""What `dpmd train` says before its first step: the run summary and the warnings about
settings without effect, loss terms without labels and outputs of an earlier run."""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from deepmd_md.tree import flatten

TERMS = (("e", "energy", "energy.npy"), ("f", "force", "force.npy"),
         ("v", "virial", "virial.npy"))


def active_terms(losscfg: dict) -> dict:
    """{"e"|"f"|"v": bool}: whether a loss term has a non-zero prefactor at some step."""
    return {k: losscfg[f"start_pref_{k}"] > 0 or losscfg[f"limit_pref_{k}"] > 0
            for k, _, _ in TERMS}


def param_count(params) -> int:
    return int(sum(np.size(v) for v in flatten(params).values()))


def warn_inert(cfg: dict, backend: str, log) -> None:
    """Warn once for each accepted setting that changes nothing in this run."""
    from deepmd_md.config import inert_settings

    for path, value, doc in inert_settings(cfg):
        log.warn_once(("inert", path), f"'{path}' = {value!r} has no effect in deepmd_md "
                      f"({doc.rstrip('.')})")
    t = cfg["training"]
    defaults = {"tensorboard_freq": 1, "profiling_file": "timeline.json"}
    if not t.get("tensorboard"):
        if t.get("tensorboard_freq", 1) != defaults["tensorboard_freq"]:
            log.warn_once(("inert", "tensorboard_freq"), "'training/tensorboard_freq' has no "
                          "effect without 'training/tensorboard': true")
        if t.get("tensorboard_log_dir", "log") != "log" and not t.get("enable_profiler"):
            log.warn_once(("inert", "tensorboard_log_dir"), "'training/tensorboard_log_dir' has "
                          "no effect without 'training/tensorboard' or 'enable_profiler': true")
    if not t.get("profiling") and t.get("profiling_file") != defaults["profiling_file"]:
        log.warn_once(("inert", "profiling_file"), "'training/profiling_file' has no effect "
                      "without 'training/profiling': true")


def check_labels(losscfg: dict, datasets: dict, log) -> None:
    """Warn once per loss term whose labels some systems lack. datasets: name -> PreparedData
    (or None). Their batches leave the term out and report its RMSE as nan."""
    on = active_terms(losscfg)
    for k, name, fname in TERMS:
        if not on[k]:
            continue
        where, miss = [], []
        for what, data in datasets.items():
            if data is None:
                continue
            m = [s.path for s in data.systems if getattr(s, name) is None]
            if m:
                where.append(f"the {what} data" if len(m) == len(data.systems)
                             else f"{len(m)} of {len(data.systems)} {what} systems")
                miss += m
        if not miss:
            continue
        shown = ", ".join(miss[:3]) + (", ..." if len(miss) > 3 else "")
        log.warn_once(("labels", k), (
            f"loss: the {name} term (start_pref_{k} {losscfg[f'start_pref_{k}']:g}, "
            f"limit_pref_{k} {losscfg[f'limit_pref_{k}']:g}) has no labels in "
            f"{' and '.join(where)} (no {fname}: {shown}); their batches leave it out and "
            f"rmse_{k} is nan in lcurve.out for them"))


def _ckpt_step(path: str) -> int:
    m = re.search(r"-(\d+)\.ckpt$", path)
    return int(m.group(1)) if m else -1


def previous_outputs(tcfg: dict, restart_step: int | None, log) -> list[str]:
    """Warn about outputs of an earlier run that this one replaces; returns the stale
    checkpoints (removed when this run writes its first one, so that an early stop loses
    nothing and the folder never mixes two runs' checkpoints)."""
    lcurve = tcfg.get("disp_file", "lcurve.out")
    if restart_step is None and os.path.isfile(lcurve) and os.path.getsize(lcurve) > 0:
        log.warn_once("lcurve", f"{lcurve} of an earlier run is overwritten by this run "
                      "(to continue that run instead: dpmd train --restart CKPT)")
    prefix = tcfg.get("save_ckpt", "model.ckpt")
    found = sorted(glob.glob(glob.escape(prefix) + "-*.ckpt"), key=_ckpt_step)
    stale = [p for p in found if restart_step is None or _ckpt_step(p) > restart_step]
    if stale:
        span = stale[0] if len(stale) == 1 else f"{stale[0]} ... {stale[-1]}"
        why = ("of an earlier run" if restart_step is None
               else f"past the restart step {restart_step}")
        log.warn_once("ckpt", f"{len(stale)} checkpoint(s) {why} ({span}) will be removed "
                      "when this run writes its first checkpoint; move them away to keep them")
    tb = tcfg.get("tensorboard_log_dir", "log")
    if (tcfg.get("tensorboard") and restart_step is None
            and glob.glob(os.path.join(glob.escape(tb), "**", "events.out.tfevents.*"),
                          recursive=True)):
        log.warn_once("tb", f"{tb} already holds TensorBoard events of an earlier run; "
                      "TensorBoard will show both (remove the folder for this run alone)")
    return stale


def _systems_lines(title: str, data, vd: dict | None = None) -> list[str]:
    n = len(data.systems)
    nf = sum(s.nframes for s in data.systems)
    head = f"{title}: {n} system{'s' * (n != 1)}, {nf} frames"
    if vd is not None:
        head += f", {vd.get('numb_btch', 1)} batch(es) per check"
    lines = [head]
    smp = data.sampler
    width = min(max(len(s.path) for s in data.systems), 60)
    for i, s in enumerate(data.systems):
        lines.append(f"  {s.path:<{width}s}  {s.natoms:5d} atoms {s.nframes:7d} frames  "
                     f"batch {smp.batch_sizes[i]:3d}  prob {smp.probs[i]:.3f}"
                     + ("" if s.pbc else "  (nopbc)"))
    return lines


def run_summary(*, cfg: dict, mcfg: dict, params, backend: str, compiled: bool,
                start: str, train_data, val_data, start_step: int, log_path: str | None,
                ) -> list[str]:
    """The start-of-run summary, one string per line."""
    from deepmd_md import __version__

    t, lr, loss = cfg["training"], cfg["learning_rate"], cfg["loss"]
    desc = mcfg["descriptor"]
    dtype = str(flatten(params)[next(iter(flatten(params)))].dtype)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    lines = [f"deepmd_md {__version__}: backend {backend} (training step "
             f"{'compiled' if compiled else 'not compiled'}), OMP_NUM_THREADS={threads}"]
    from deepmd_md.model.model import rcut_of, sel_of

    lines.append(f"model: {desc['type']}, type_map {' '.join(mcfg['type_map'])}, rcut "
                 f"{rcut_of(mcfg):g}, sel {sel_of(mcfg)}; {param_count(params):,} parameters "
                 f"({dtype}); {start}")
    lines += _systems_lines("training data", train_data)
    if val_data is not None:
        lines += _systems_lines("validation data", val_data, t["validation_data"])
    else:
        lines.append("validation data: none (lcurve.out has no *_val columns)")
    on = active_terms(loss)
    terms = [f"{name} {loss[f'start_pref_{k}']:g} -> {loss[f'limit_pref_{k}']:g}"
             for k, name, _ in TERMS if on[k]]
    lines.append("loss prefactors: " + (", ".join(terms) or "none"))
    from deepmd_md.train.loss import decay_steps

    every = decay_steps(lr, t["numb_steps"])
    lines.append(f"learning rate: exp {lr['start_lr']:g} -> {lr['stop_lr']:g}, decay every "
                 f"{every} steps" + ("" if every == lr["decay_steps"] else
                                     f" (decay_steps {lr['decay_steps']} is not below "
                                     "numb_steps; replaced as DeePMD-kit does)"))
    lines.append(f"steps {start_step} -> {t['numb_steps']}; learning curve {t['disp_file']} "
                 f"every {t['disp_freq']} steps; checkpoints {t['save_ckpt']}-STEP.ckpt every "
                 f"{t['save_freq']} steps (last {t['max_ckpt_keep']} kept, `checkpoint` names "
                 "the latest)")
    extra = []
    if t.get("tensorboard"):
        extra.append(f"TensorBoard events in {t['tensorboard_log_dir']}/ every "
                     f"{t['tensorboard_freq']} steps")
    if t.get("profiling"):
        extra.append(f"profile trace {t['profiling_file']}")
    if log_path:
        extra.append(f"log {log_path}")
    if extra:
        lines.append("also: " + "; ".join(extra))
    return lines

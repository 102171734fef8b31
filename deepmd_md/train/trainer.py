"""The framework-neutral training loop: schedule, batches, lcurve.out, checkpoints, restart.

A backend module supplies `Trainer(config, params, buffers)` with `.step`, `.evaluate_metrics`,
`.params` and `asarray`/`to_numpy`; everything else (and every file format) lives here.
"""

from __future__ import annotations

import glob
import importlib
import os
import re
import sys
import time

import numpy as np
from tqdm import tqdm

from deepmd_md.errors import ConfigError
from deepmd_md.model.model import init_model
from deepmd_md.serialize import load_dp, save_dp
from deepmd_md.train.loss import exp_lr, prefactors, rmse_total
from deepmd_md.train.optim import adam_init
from deepmd_md.train.prepared import PreparedData, compute_stats


def load_backend(name: str):
    if name not in ("torch", "jax"):
        raise ConfigError(f"unknown backend {name!r}; choose torch or jax")
    try:
        return importlib.import_module(f"deepmd_md.backends.{name}.adapter")
    except ImportError as e:
        raise ConfigError(
            f"backend {name!r} is not installed ({e}); pip install 'deepmd-md[{name}]'"
        ) from None


def _ckpt_name(prefix: str, step: int) -> str:
    return f"{prefix}-{step}.ckpt"


def save_checkpoint(prefix: str, data: dict, opt_state: dict, step: int, rngs: dict,
                    keep: int, backend, samplers: dict | None = None) -> str:
    """Write `{prefix}-{step}.ckpt` atomically, point `checkpoint` at it, keep the last `keep`."""
    path = _ckpt_name(prefix, step)
    trees = {"opt_m": backend.to_numpy(opt_state["m"]), "opt_v": backend.to_numpy(opt_state["v"])}
    extra = {"step": step, "opt_t": int(np.asarray(opt_state["t"])),
             "rng": {k: r.bit_generator.state for k, r in rngs.items()},
             "sampler": {k: smp.state() for k, smp in (samplers or {}).items()}}
    save_dp(data, path, extra_trees=trees, extra=extra)
    d = os.path.dirname(os.path.abspath(prefix))
    with open(os.path.join(d, ".checkpoint.tmp"), "w") as f:
        f.write(os.path.basename(path) + "\n")
    os.replace(os.path.join(d, ".checkpoint.tmp"), os.path.join(d, "checkpoint"))
    olds = sorted(glob.glob(glob.escape(prefix) + "-*.ckpt"),
                  key=lambda p: int(re.findall(r"-(\d+)\.ckpt$", p)[0]))
    for p in olds[:-keep] if keep > 0 else []:
        os.unlink(p)
    return path


class LCurve:
    """lcurve.out with DeePMD-kit's columns (rmse per atom for energy and virial)."""

    def __init__(self, path: str, with_virial: bool, append: bool):
        self.with_v = with_virial
        self.f = open(path, "a" if append else "w", buffering=1)
        if not append:
            cols = ["step", "rmse_val", "rmse_trn", "rmse_e_val", "rmse_e_trn", "rmse_f_val",
                    "rmse_f_trn"] + (["rmse_v_val", "rmse_v_trn"] if with_virial else []) + ["lr"]
            self.f.write("# " + "".join(f"{c:>12s} " for c in cols).rstrip() + "\n")

    def write(self, step, val, trn, val_tot, trn_tot, lr):
        vals = [val_tot, trn_tot, val["rmse_e"], trn["rmse_e"], val["rmse_f"], trn["rmse_f"]]
        if self.with_v:
            vals += [val["rmse_v"], trn["rmse_v"]]
        self.f.write(f"{step:7d}   " + " ".join(f"{v:12.2e}" for v in vals) + f" {lr:12.1e}\n")

    def close(self):
        self.f.close()


COMPILE_AUTO_STEPS = 2000  # "auto": a cold compile (~1 min) pays for itself well before this


def use_compile(setting, backend_name: str, steps_left: int) -> bool:
    """Whether the training step is compiled: JAX always; torch per training/compile."""
    if backend_name == "jax":
        return True
    if setting == "auto":
        return steps_left >= COMPILE_AUTO_STEPS
    return bool(setting)


def train(config: dict, backend_name: str = "torch", restart: str | None = None,
          init_model_path: str | None = None, progress: bool = True) -> str:
    """Run training from a normalised input; returns the last checkpoint path."""
    mcfg, tcfg = config["model"], config["training"]
    lcfg, losscfg = config["learning_rate"], config["loss"]
    numb_steps = tcfg["numb_steps"]
    td = tcfg["training_data"]
    start_step, opt_ckpt = 0, None
    if restart:
        data, trees, extra = load_dp(restart, with_extra=True)
        start_step = extra["step"]
    compiled = use_compile(tcfg.get("compile", "auto"), backend_name, numb_steps - start_step)
    train_data = PreparedData(mcfg, td["systems"], td["batch_size"], td.get("sys_probs"),
                              td.get("auto_prob", "prob_sys_size"), uniform=compiled)
    vd = tcfg.get("validation_data")
    val_data = (PreparedData(mcfg, vd["systems"], vd["batch_size"], None,
                             vd.get("auto_prob", "prob_sys_size")) if vd else None)
    seed = tcfg.get("seed")
    rngs = {"train": np.random.default_rng(seed),
            "val": np.random.default_rng(None if seed is None else seed + 1)}
    if restart:
        opt_ckpt = (trees["opt_m"], trees["opt_v"], extra["opt_t"])
        for k, r in rngs.items():
            r.bit_generator.state = extra["rng"][k]
        for k, d in (("train", train_data), ("val", val_data)):
            if d is not None and k in extra.get("sampler", {}):
                d.sampler.load_state(extra["sampler"][k])
    elif init_model_path:
        data = load_dp(init_model_path)
    else:
        data = init_model(mcfg, mcfg["descriptor"].get("seed"))
        data["buffers"] = compute_stats(mcfg, train_data)
    backend = load_backend(backend_name)  # after the data checks: a bad input fails fast
    tr = backend.Trainer(data["config"], data["params"], data["buffers"], compile=compiled,
                         max_grad_norm=tcfg.get("gradient_max_norm"))
    if opt_ckpt:
        opt_state = {"m": backend.asarray(opt_ckpt[0]), "v": backend.asarray(opt_ckpt[1]),
                     "t": opt_ckpt[2]}
    else:
        opt_state = adam_init(tr.params)
    lr_fn = exp_lr(lcfg, numb_steps)
    start_lr = lcfg["start_lr"]
    with_v = losscfg["start_pref_v"] > 0 or losscfg["limit_pref_v"] > 0
    lcurve = LCurve(tcfg.get("disp_file", "lcurve.out"), with_v, append=bool(restart))
    prefix = tcfg.get("save_ckpt", "model.ckpt")
    disp, save_freq = tcfg.get("disp_freq", 1000), tcfg.get("save_freq", 1000)
    keep = tcfg.get("max_ckpt_keep", 5)
    last = restart
    warm = min(start_step + 10, numb_steps)  # steps before this one include jit compilation
    t_train = 0.0  # sampling + step time after warm-up; validation and checkpoints excluded
    bar = tqdm(total=numb_steps, initial=start_step, disable=not progress, file=sys.stderr,
               unit="step", mininterval=1.0, dynamic_ncols=True)
    try:
        for step in range(start_step, numb_steps):
            lr = lr_fn(step)
            pref = prefactors(losscfg, lr, start_lr)
            t0 = time.perf_counter()
            batch, prep = train_data.sample(rngs["train"])
            opt_state, trn = tr.step(batch, prep, pref, opt_state, lr)
            if step >= warm:
                t_train += time.perf_counter() - t0
            done = step + 1
            if step == 0 or done % disp == 0 or done == numb_steps:
                val = _validate(tr, val_data, vd, rngs["val"], pref) if val_data else trn
                nat_t = batch["force"].shape[1]
                lcurve.write(done if step else 0, val, trn,
                             rmse_total(val, pref, nat_t), rmse_total(trn, pref, nat_t), lr)
                bar.set_postfix(e=f"{trn['rmse_e']:.2e}", f=f"{trn['rmse_f']:.2e}")
            if done % save_freq == 0 or done == numb_steps:
                data["params"] = tr.params_numpy()
                samplers = {"train": train_data.sampler}
                if val_data is not None:
                    samplers["val"] = val_data.sampler
                last = save_checkpoint(prefix, data, opt_state, done, rngs, keep, backend,
                                       samplers)
            bar.update(1)
    finally:
        bar.close()
        lcurve.close()
    if numb_steps > warm:
        per = t_train / (numb_steps - warm)
        print(f"average training time: {per:.4f} s/step (steps {warm + 1}-{numb_steps}, "
              f"{backend_name}; validation and checkpoints excluded, as DeePMD-kit does)")
    return last


def _validate(tr, val_data: PreparedData, vd: dict, rng, pref) -> dict:
    """Mean of the metrics' squares over numb_btch validation batches (RMSE over batches)."""
    n = vd.get("numb_btch", 1)
    acc: dict = {}
    for _ in range(n):
        b, prep = val_data.sample(rng)
        m = tr.evaluate_metrics(b, prep, pref)
        for k, v in m.items():
            acc[k] = acc.get(k, 0.0) + v * v / n
    return {k: float(np.sqrt(v)) for k, v in acc.items()}

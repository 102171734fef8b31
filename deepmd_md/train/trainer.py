"""The framework-neutral training loop: schedule, batches, lcurve.out, checkpoints, restart.

A backend module supplies `Trainer(config, params, buffers)` with `.step`, `.evaluate_metrics`,
`.params` and `asarray`/`to_numpy`; everything else (and every file format) lives here. What
the run says (summary, warnings, progress) is in summary.py and log.py; the files it writes in
output.py, tb.py (TensorBoard), profile.py and statfile.py.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time

import numpy as np
from tqdm import tqdm

from deepmd_md.backends import REGISTRY, load_adapter
from deepmd_md.errors import ConfigError
from deepmd_md.model.model import init_model
from deepmd_md.serialize import load_dp
from deepmd_md.train.log import RunLog
from deepmd_md.train.loss import (
    batch_prefactors,
    exp_lr,
    mark_absent,
    prefactors,
    rmse_total,
)
from deepmd_md.train.optim import adam_init
from deepmd_md.train.output import LCurve, save_checkpoint
from deepmd_md.train.prepared import PreparedData, compute_stats
from deepmd_md.train.summary import (
    active_terms,
    check_labels,
    previous_outputs,
    run_summary,
    warn_inert,
)

__all__ = ["train", "load_backend", "use_compile", "save_checkpoint", "LCurve"]


def load_backend(name: str):
    """The training adapter of backend `name` (deepmd_md.backends.REGISTRY)."""
    return load_adapter(name, trains=True)


COMPILE_AUTO_STEPS = 2000  # "auto": a cold compile (~1 min) pays for itself well before this


def use_compile(setting, backend_name: str, steps_left: int) -> bool:
    """Whether the training step is compiled: JAX always; torch per training/compile."""
    if REGISTRY[backend_name].always_compiled:
        return True
    if setting == "auto":
        return steps_left >= COMPILE_AUTO_STEPS
    return bool(setting)


@contextlib.contextmanager
def timed(log, what: str):
    """A line before and one after (with the elapsed time) around a step that may be slow."""
    log.info(f"{what} ...")
    t0 = time.perf_counter()
    yield
    log.info(f"{what}: done in {time.perf_counter() - t0:.1f} s")


def train(config: dict, backend_name: str = "torch", restart: str | None = None,
          init_model_path: str | None = None, progress: bool = True, *,
          log_path: str | None = None, log_level: str | int = "INFO") -> str:
    """Run training from a normalised input; returns the last checkpoint path.

    restart: a checkpoint to continue (same run: step, Adam moments, RNG and sampler states);
    init_model_path: any model file (checkpoint, .dp, .pth, .pt2; deep_pot.load_model_data)
    whose weights start a new run; log_path: a file that gets every message (-l/--log-path).
    """
    show = config["training"].get("disp_training", True)
    bar = progress and show and sys.stderr.isatty()  # no bar in job logs: the lines instead
    with RunLog(log_path, log_level, step_lines_on_console=show and not bar,
                append=bool(restart)) as log:
        return _train(config, backend_name, restart, init_model_path, bar, log, log_path)


def _train(config, backend_name, restart, init_model_path, progress, log, log_path) -> str:
    mcfg, tcfg = config["model"], config["training"]
    lcfg, losscfg = config["learning_rate"], config["loss"]
    numb_steps = tcfg["numb_steps"]
    td, vd = tcfg["training_data"], tcfg.get("validation_data")
    warn_inert(config, backend_name, log)
    tb = None
    if tcfg.get("tensorboard"):
        from deepmd_md.train.tb import ScalarWriter

        tb = ScalarWriter(tcfg.get("tensorboard_log_dir", "log"))  # fails now if not installed
    start_step, data, extra, trees = 0, None, None, None
    if restart:
        data, trees, extra = load_dp(restart, with_extra=True)
        start_step = extra["step"]
        start = f"restarted from {restart} (step {start_step})"
    elif init_model_path:
        data = _init_from(init_model_path, mcfg, log)
        start = f"weights from {init_model_path}"
    else:
        start = f"new weights (seed {mcfg['descriptor'].get('seed')})"
    if data is not None:
        mcfg = data["config"]  # the file's type_map orders the data's types
    compiled = use_compile(tcfg.get("compile", "auto"), backend_name, numb_steps - start_step)
    with timed(log, "reading the systems and building their neighbor lists"):
        train_data = PreparedData(mcfg, td["systems"], td["batch_size"], td.get("sys_probs"),
                                  td.get("auto_prob", "prob_sys_size"), uniform=compiled)
        val_data = (PreparedData(mcfg, vd["systems"], vd["batch_size"], None,
                                 vd.get("auto_prob", "prob_sys_size")) if vd else None)
    seed = tcfg.get("seed")
    rngs = {"train": np.random.default_rng(seed),
            "val": np.random.default_rng(None if seed is None else seed + 1)}
    if restart:
        for k, r in rngs.items():
            r.bit_generator.state = extra["rng"][k]
        for k, d in (("train", train_data), ("val", val_data)):
            if d is not None and k in extra.get("sampler", {}):
                d.sampler.load_state(extra["sampler"][k])
    if data is None:
        data = init_model(mcfg, mcfg["descriptor"].get("seed"))
        data["buffers"] = _statistics(mcfg, tcfg, train_data, log)
    check_labels(losscfg, {"training": train_data, "validation": val_data}, log)
    stale = previous_outputs(tcfg, start_step if restart else None, log)
    for line in run_summary(cfg=config, mcfg=mcfg, params=data["params"],
                            backend=backend_name, compiled=compiled, start=start,
                            train_data=train_data, val_data=val_data, start_step=start_step,
                            log_path=log_path):
        log.info(line)
    backend = load_backend(backend_name)  # after the data checks: a bad input fails fast
    tr = backend.Trainer(data["config"], data["params"], data["buffers"], compile=compiled,
                         max_grad_norm=tcfg.get("gradient_max_norm"))
    if restart:
        opt_state = {"m": backend.asarray(trees["opt_m"]), "v": backend.asarray(trees["opt_v"]),
                     "t": extra["opt_t"]}
    else:
        opt_state = adam_init(tr.params)
    from deepmd_md.train.profile import StepProfiler

    prof = StepProfiler(backend_name, tcfg, start_step, numb_steps, log)
    lr_fn = exp_lr(lcfg, numb_steps)
    start_lr = lcfg["start_lr"]
    with_v = active_terms(losscfg)["v"]
    lcurve = LCurve(tcfg.get("disp_file", "lcurve.out"), with_v, val_data is not None,
                    append=bool(restart))
    prefix = tcfg.get("save_ckpt", "model.ckpt")
    disp, save_freq = tcfg.get("disp_freq", 1000), tcfg.get("save_freq", 1000)
    tb_freq = tcfg.get("tensorboard_freq", 1)
    keep = tcfg.get("max_ckpt_keep", 5)
    timing = tcfg.get("time_training", True)
    last = restart
    warm = min(start_step + 10, numb_steps)  # steps before this one include jit compilation
    t_train = 0.0  # sampling + step time after warm-up; validation and checkpoints excluded
    t_block, t_val, n_block = 0.0, 0.0, 0  # since the last display line
    bar = tqdm(total=numb_steps, initial=start_step, disable=not progress, file=sys.stderr,
               unit="step", mininterval=1.0, dynamic_ncols=True)
    log.info(f"training: steps {start_step + 1}-{numb_steps}")
    try:
        for step in range(start_step, numb_steps):
            lr = lr_fn(step)
            pref = prefactors(losscfg, lr, start_lr)
            t0 = time.perf_counter()
            batch, prep = train_data.sample(rngs["train"])
            bpref = batch_prefactors(pref, batch)
            prof.before_step(step)
            opt_state, trn = tr.step(batch, prep, bpref, opt_state, lr)
            prof.after_step(step)
            dt = time.perf_counter() - t0
            t_block, n_block = t_block + dt, n_block + 1
            if step >= warm:
                t_train += dt
            trn = _metrics(trn, batch, bpref, with_v)
            done = step + 1
            shown = done if step else 0
            if tb is not None and (step == start_step or done % tb_freq == 0):
                tb.scalars("train", shown, {"loss": trn["rmse"] ** 2, **trn, "lr": lr})
            if step == 0 or done % disp == 0 or done == numb_steps:
                t1 = time.perf_counter()
                val = _validate(tr, val_data, vd, rngs["val"], pref, with_v) if val_data else None
                t_val += time.perf_counter() - t1
                lcurve.write(shown, trn, val, lr)
                if tb is not None and val is not None:
                    tb.scalars("validation", shown, val)
                if tcfg.get("disp_training", True):
                    log.info(_display_line(shown, trn, val, lr, timing, t_block, t_val,
                                           n_block), step=True)
                t_block, t_val, n_block = 0.0, 0.0, 0
                bar.set_postfix(e=f"{trn['rmse_e']:.2e}", f=f"{trn['rmse_f']:.2e}")
            if done % save_freq == 0 or done == numb_steps:
                data["params"] = tr.params_numpy()
                samplers = {"train": train_data.sampler}
                if val_data is not None:
                    samplers["val"] = val_data.sampler
                last = save_checkpoint(prefix, data, opt_state, done, rngs, keep, backend,
                                       samplers, remove=stale)
                stale = []
            bar.update(1)
    finally:
        bar.close()
        lcurve.close()
        prof.close()
        if tb is not None:
            tb.close()
    if timing and numb_steps > warm:
        per = t_train / (numb_steps - warm)
        log.info(f"average training time: {per:.4f} s/step (steps {warm + 1}-{numb_steps}, "
                 f"{backend_name}; validation and checkpoints excluded, as DeePMD-kit does)")
    log.info(f"training finished; last checkpoint: {last}")
    return last


def _statistics(mcfg: dict, tcfg: dict, train_data: PreparedData, log) -> dict:
    n = sum(s.nframes for s in train_data.systems)

    def compute():
        ns = len(train_data.systems)
        with timed(log, f"data statistics ({ns} system{'s' * (ns != 1)}, {n} frames)"):
            return compute_stats(mcfg, train_data)

    if tcfg.get("stat_file"):
        from deepmd_md.train.statfile import load_or_compute

        return load_or_compute(tcfg["stat_file"], mcfg, train_data, compute, log)
    return compute()


def _init_from(path: str, mcfg_in: dict, log) -> dict:
    """ModelData of any model file for --init-model / --init-frz-model: its weights,
    statistics and architecture; the input's `trainable` flags (what this run trains)."""
    from deepmd_md.infer.deep_pot import load_model_data

    data = load_model_data(path)
    if "compress" in data["config"]:  # tables do not train: start from the nets they were made of
        from deepmd_md.compress import strip

        data = strip(data)
        log.warn_once("compressed-init", f"{path} is compressed: its tables are dropped and "
                      "training starts from the embedding nets they were made of")
    cfg = copy.deepcopy(data["config"])
    for sec in ("descriptor", "fitting_net"):
        if "trainable" in mcfg_in.get(sec, {}) and "trainable" in cfg.get(sec, {}):
            cfg[sec]["trainable"] = mcfg_in[sec]["trainable"]
    diff = _diff(mcfg_in, _with_defaults(cfg), "model", ignore=("seed", "trainable"))
    if diff:
        log.warn_once("init-diff", f"the input's model section differs from {path}'s "
                      f"({', '.join(diff[:4])}{', ...' if len(diff) > 4 else ''}): training "
                      f"continues {path}'s model as it is")
    data["config"] = cfg
    return data


def _with_defaults(mcfg: dict) -> dict:
    """A model section with the schema's defaults filled (as the input's is), for comparing."""
    from deepmd_md.config.args import MODEL
    from deepmd_md.config.schema import normalize_tree

    try:
        return normalize_tree(copy.deepcopy(mcfg), MODEL, path="model")
    except ConfigError:  # a file from another version: compare it as it is
        return mcfg


def _diff(a, b, path: str, ignore=()) -> list[str]:
    """Paths where two config trees differ (keys in `ignore` skipped)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in ignore:
                out += _diff(a.get(k), b.get(k), f"{path}/{k}", ignore)
        return out
    return [] if a == b else [path]


def _metrics(m: dict, batch: dict, bpref: dict, with_v: bool) -> dict:
    """rmse (the weighted total), rmse_e, rmse_f[, rmse_v] of one batch; nan for a term
    without labels in the batch."""
    m = mark_absent(m, batch)
    out = {"rmse": rmse_total(m, bpref, batch["force"].shape[1]),
           "rmse_e": m["rmse_e"], "rmse_f": m["rmse_f"]}
    if with_v:
        out["rmse_v"] = m["rmse_v"]
    return out


def _validate(tr, val_data: PreparedData, vd: dict, rng, pref, with_v: bool) -> dict:
    """RMSE over numb_btch validation batches (the root of the mean of the squares over the
    batches that have the term's labels; nan if none has them)."""
    n = vd.get("numb_btch", 1)
    acc: dict = {}
    for _ in range(n):
        b, prep = val_data.sample(rng)
        bpref = batch_prefactors(pref, b)
        m = _metrics(tr.evaluate_metrics(b, prep, bpref), b, bpref, with_v)
        for k, v in m.items():
            s, c = acc.get(k, (0.0, 0))
            acc[k] = (s + v * v, c + 1) if math.isfinite(v) else (s, c)
    return {k: (math.sqrt(s / c) if c else math.nan) for k, (s, c) in acc.items()}


def _display_line(step, trn, val, lr, timing, t_block, t_val, n_block) -> str:
    def part(m):
        return ", ".join(f"{k} = {v:.2e}" for k, v in m.items())

    line = f"batch {step:7d}: trn: {part(trn)}"
    if val is not None:
        line += f"; val: {part(val)}"
    line += f"; lr = {lr:.1e}"
    if timing:
        line += f"; {n_block} step(s) in {t_block:.2f} s"
        if val is not None:
            line += f", validation {t_val:.2f} s"
    return line

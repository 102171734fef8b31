"""Training benchmark of the attention and graph descriptors (run by hand): DeePMD-kit's water
examples for DPA-1 (se_atten_v2), DPA-2 (small) and DPA-3, N steps on each of our backends
beside DeePMD-kit's PyTorch backend in the same run. Prints s/step, validation RMSE on data_3
after the same steps, peak RSS of the training process, and the ratio to DeePMD-kit.

    python benchmarks/gnn.py --dp-venv /tmp/dp --steps 100 [--examples dpa3] [--backends torch jax]
    python benchmarks/gnn.py --dp-venv /tmp/dp --steps 300 --examples se_atten_v2 dpa2 \
        --backends torch --seeds 1 2 3

    python benchmarks/gnn.py --step-profile 4 --examples se_atten_v2 [--threads 1] [--compile]

--step-profile N: no training run, no DeePMD-kit: N steps of our torch trainer on the example
in this process, wall and CPU time of each (CPU time is the steadier figure on a shared
machine), peak RSS, and torch.profiler's top ops (self CPU, and by input shape) of the last step.

--seeds S...: one run per seed and code, with the example's model seeds set to S and its training
seed to S + 9 (train_water.py's rule; S = 1 keeps the shipped seeds of se_atten_v2), then the
mean and sample standard deviation of the validation RMSEs per code: after a few hundred steps
the RMSE varies with the seed, so two codes agree when their spreads overlap.

Uses benchmarks/train_water.py's runners. Timing rule, the same steps for both codes: ours is
our 'average training time' (steps 11-N, sampling included, validation and checkpoints
excluded); DeePMD-kit's is the sum of its own per-interval wall times ("Batch N: total wall
time") over the intervals after step 10, i.e. steps 11-N too. Its 'average training time' is not
used: with N <= 2 disp_freq it averages every interval, the first (warm-up) step included
(its dpmodel/train/timing.py), and each interval's wall time includes the validation run at its
end. So the inputs get no validation_data (both codes: RMSEs come from the `test` run on data_3
after training; validation changes no weight). Machines differ 2x: only ratios within a run
count.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

import train_water as tw

EXAMPLES = ("se_atten_v2", "dpa2", "dpa3")
DISP_FREQ = 10  # DeePMD-kit's intervals then end at steps 10, 20, ...: steps 11-N timed
WARM = 10  # steps left out of both timings (ours: the trainer's rule)
_tw_workdir, _tw_run = tw._workdir, tw._run
_LAST_TRAIN = {"out": ""}  # output of the last `train` command (for DeePMD-kit's interval lines)


def _workdir(tmp: Path, name: str, steps: int) -> Path:
    """train_water's work folder with disp_freq 10 and no validation_data (see the module
    docstring: DeePMD-kit's intervals would include a validation run each)."""
    d = _tw_workdir(tmp, name, steps)
    cfg = json.loads((d / "input.json").read_text())
    cfg["training"]["disp_freq"] = min(DISP_FREQ, max(steps // 2, 1))
    cfg["training"].pop("validation_data", None)
    (d / "input.json").write_text(json.dumps(cfg, indent=1))
    return d


def _run(cmd, cwd, env) -> str:
    out = _tw_run(cmd, cwd, env)
    if "train" in map(str, cmd):
        _LAST_TRAIN["out"] = out
    return out


tw._workdir, tw._run = _workdir, _run


def dp_steady(out: str, warm: int = WARM) -> tuple[float, int]:
    """DeePMD-kit's s/step over the steps after `warm` from its interval lines (an interval
    counts when it starts at or after step warm): (s/step, steps timed)."""
    marks = re.findall(r"Batch\s+(\d+): total wall time = ([0-9.]+) s", out)
    prev, total, n = 0, 0.0, 0
    for b, t in marks:
        if prev >= warm:
            total, n = total + float(t), n + int(b) - prev
        prev = int(b)
    if not n:
        raise SystemExit(f"no DeePMD-kit interval after step {warm}: give --steps > {warm}")
    return total / n, n


def backend_env(spec: str, env: dict) -> tuple[str, dict]:
    """'torch+compile@A=1@B=2' -> ('torch+compile', env with A and B set)."""
    name, *sets = spec.split("@")
    env = dict(env)
    for s in sets:
        k, _, v = s.partition("=")
        env[k] = v
    return name, env


def deepmd_kit(tmp: Path, venv: Path, steps: int, env) -> dict:
    """DeePMD-kit PT run (train_water's), s/step replaced by dp_steady's."""
    r = tw.deepmd_kit(tmp, venv, "pt", steps, env)
    r["s_per_step_dp_avg"] = r["s_per_step"]  # its own 'average training time' line
    r["s_per_step"], r["steps_timed"] = dp_steady(_LAST_TRAIN["out"])
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--examples", nargs="+", default=list(EXAMPLES), choices=EXAMPLES)
    ap.add_argument("--backends", nargs="+", default=["torch", "jax"],
                    help="torch, torch+compile, jax; B@VAR=VALUE runs B with that environment "
                         "variable (e.g. torch@DPMD_MD_MKL_AMD=0)")
    ap.add_argument("--dp-venv", type=Path, help="a venv with deepmd-kit 3.2 (baseline)")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--seeds", type=int, nargs="+",
                    help="one run per model seed S (training seed S + 9); prints mean +- sd")
    ap.add_argument("--step-profile", type=int, metavar="N",
                    help="profile N torch steps in this process (see above)")
    ap.add_argument("--compile", action="store_true", help="--step-profile: the compiled step")
    args = ap.parse_args()
    if args.step_profile:
        return step_profile(args.examples[0], args.step_profile, int(args.threads), args.compile)
    if args.seeds:
        return seed_sweep(args)
    env = tw._env(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-gnn-"))
    table = []
    try:
        for ex in args.examples:
            tw.NAME = ex
            rows = {}
            if args.dp_venv:
                rows["deepmd-kit pt"] = deepmd_kit(tmp / ex, args.dp_venv, args.steps, env)
                print(ex, rows["deepmd-kit pt"], flush=True)
            for i, spec in enumerate(args.backends):
                b, benv = backend_env(spec, env)
                where = tmp / ex if b == spec else tmp / f"{ex}-env{i}"  # its own work folder
                rows[f"deepmd_md {spec}"] = tw.ours(where, b, args.steps, benv)
                print(ex, spec, rows[f"deepmd_md {spec}"], flush=True)
            table.append((ex, rows))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwater, {args.steps} steps, {args.threads} threads, s/step over steps "
          f"{WARM + 1}-{args.steps} (both codes), RMSE on data_3, peak RSS of the training process")
    print(f"{'example':<12s} {'run':<34s} {'s/step':>8s} {'vs DP-PT':>9s} {'E meV/atom':>11s} "
          f"{'F eV/A':>8s} {'peak MiB':>9s}")
    for ex, rows in table:
        base = rows.get("deepmd-kit pt")
        for k, r in rows.items():
            ratio = f"{r['s_per_step'] / base['s_per_step']:.2f}x" if base else "-"
            print(f"{ex:<12s} {k:<34s} {r['s_per_step']:8.3f} {ratio:>9s} "
                  f"{r['e_rmse_mev_atom']:11.2f} {r['f_rmse']:8.3f} {r['peak_rss_mib']:9.0f}")
        if base:
            print(f"{'':<12s} (DeePMD-kit: {base['steps_timed']} steps timed; its own 'average "
                  f"training time' line said {base['s_per_step_dp_avg']:.3f}, not used)")


def step_profile(example: str, nsteps: int, threads: int, compiled: bool) -> None:
    """N training steps of the example (its batches, learning rate and prefactors), timed."""
    import os
    import resource
    import time

    import numpy as np
    import torch
    import torch.profiler as tp

    from deepmd_md.backends.torch import adapter
    from deepmd_md.config import load_config, normalize, resolve_auto_sel
    from deepmd_md.model.model import init_model
    from deepmd_md.train.loss import batch_prefactors, exp_lr, prefactors
    from deepmd_md.train.optim import adam_init
    from deepmd_md.train.prepared import PreparedData, compute_stats

    torch.set_num_threads(threads)
    os.chdir(tw.EXAMPLE / example)
    cfg = resolve_auto_sel(normalize(load_config("input.json")))
    mcfg, td, lcfg = cfg["model"], cfg["training"]["training_data"], cfg["learning_rate"]
    data = PreparedData(mcfg, td["systems"], td["batch_size"], uniform=compiled)
    model = init_model(mcfg, mcfg["descriptor"].get("seed"))
    tr = adapter.Trainer(model["config"], model["params"], compute_stats(mcfg, data),
                         compile=compiled)
    opt, rng, lr_fn = adam_init(tr.params), np.random.default_rng(10), exp_lr(lcfg, 1000)
    for step in range(nsteps):
        lr = lr_fn(step)
        batch, prep = data.sample(rng)
        pref = batch_prefactors(prefactors(cfg["loss"], lr, lcfg["start_lr"]), batch)
        prof = tp.profile(activities=[tp.ProfilerActivity.CPU], record_shapes=True)
        last = step == nsteps - 1
        if last:
            prof.__enter__()
        t0, c0 = time.perf_counter(), time.process_time()
        opt, _ = tr.step(batch, prep, pref, opt, lr)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if last:
            prof.__exit__(None, None, None)
            avg = prof.key_averages()
            print(avg.table(sort_by="self_cpu_time_total", row_limit=15))
            print(prof.key_averages(group_by_input_shape=True).table(
                sort_by="self_cpu_time_total", row_limit=15, max_shapes_column_width=60))
        print(f"step {step + 1}: wall {wall:.3f} s, CPU {cpu:.3f} s"
              f"{' (profiled)' if last else ''}", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{example}, {threads} threads{', compiled' if compiled else ''}: peak RSS {rss:.0f} MiB")


def seed_sweep(args) -> None:
    """Validation RMSE (E per atom, F) per seed and code, then mean +- sample sd per code."""
    env = tw._env(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-gnn-seeds-"))
    runs: dict = {}
    try:
        for ex in args.examples:
            tw.NAME = ex
            for seed in args.seeds:
                tw.SEED = seed
                codes = [("deepmd-kit pt", None)] if args.dp_venv else []
                for code, b in codes + [(f"deepmd_md {b}", b) for b in args.backends]:
                    r = (deepmd_kit(tmp / ex, args.dp_venv, args.steps, env) if b is None
                         else tw.ours(tmp / ex, b, args.steps, env))
                    runs.setdefault((ex, code), []).append(r)
                    print(f"{ex} seed {seed} {code}: E {r['e_rmse_mev_atom']:.3f} meV/atom, "
                          f"F {r['f_rmse']:.4f} eV/A, {r['s_per_step']:.3f} s/step", flush=True)
    finally:
        tw.SEED = None
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwater, {args.steps} steps, seeds {args.seeds} (training seed S + 9), "
          f"{args.threads} threads, validation data_3 (80 frames)")
    print(f"{'example':<12s} {'run':<34s} {'E meV/atom mean +- sd':>22s} {'F eV/A mean +- sd':>20s}"
          "  per seed (E; F)")
    for (ex, code), rs in runs.items():
        cols = []
        for key, fmt in (("e_rmse_mev_atom", ".3f"), ("f_rmse", ".4f")):
            v = [r[key] for r in rs]
            mean = sum(v) / len(v)
            sd = (sum((x - mean) ** 2 for x in v) / max(len(v) - 1, 1)) ** 0.5
            cols.append((f"{mean:{fmt}} +- {sd:{fmt}}", " ".join(f"{x:{fmt}}" for x in v)))
        print(f"{ex:<12s} {code:<22s} {cols[0][0]:>22s} {cols[1][0]:>20s}  {cols[0][1]}; "
              f"{cols[1][1]}")


if __name__ == "__main__":
    main()

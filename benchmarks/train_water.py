"""Training benchmark (run by hand): the water se_e2_a example, N steps, every backend, beside
DeePMD-kit when a venv with it is given. Prints s/step, validation RMSE on data_3, and ratios.

    python benchmarks/train_water.py --steps 1000 [--dp-venv /tmp/dp] [--backends torch jax]
    python benchmarks/train_water.py --seeds 1 2 3 4 --backends torch+compile --dp-frameworks pt

--seeds S...: one run per S, with the example's model seeds set to S and its training seed to
S + 9 (S = 1 is the example as shipped), then the mean and spread of the RMSEs: after 1000
steps they vary with the seed far more than between codes, so compare distributions.

Machines differ 2x: only the ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEEP: Path | None = None  # --keep: where the frozen models are copied (for lammps_speed.py)
EXAMPLE = ROOT / "examples" / "water"


SEED: int | None = None  # --seeds: the model seed of this run (training seed SEED + 9)
NAME = "se_e2_a"  # the example folder under examples/water (benchmarks/gnn.py sets others)
PEAK_RSS: dict = {}  # command's working dir -> peak RSS of the process (MiB)


def _workdir(tmp: Path, name: str, steps: int) -> Path:
    if SEED is not None:
        name = f"{name}-s{SEED}"
    d = tmp / name / NAME
    d.mkdir(parents=True)
    (tmp / name / "data").symlink_to(EXAMPLE / "data")
    cfg = json.loads((EXAMPLE / NAME / "input.json").read_text())
    cfg["training"].pop("stat_file", None)
    if SEED is not None:
        cfg["model"]["descriptor"]["seed"] = cfg["model"]["fitting_net"]["seed"] = SEED
        cfg["training"]["seed"] = SEED + 9
    cfg["training"]["numb_steps"] = steps
    cfg["training"]["save_freq"] = steps
    # both codes average the steps after the first display interval: one interval is the
    # first step alone (compile/warm-up) when disp_freq >= steps, so keep two at least
    cfg["training"]["disp_freq"] = max(1, min(100, steps // 2))
    (d / "input.json").write_text(json.dumps(cfg, indent=1))
    return d


def _run(cmd, cwd, env) -> str:
    """Run cmd; its peak RSS (MiB, from wait4's rusage of that process) goes to PEAK_RSS[cwd]."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=out, stderr=err,
                             text=True)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        so, se = out.read(), err.read()
    PEAK_RSS[str(cwd)] = usage.ru_maxrss / 1024
    if p.returncode:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{so[-2000:]}\n{se[-3000:]}")
    return so + se


def ours(tmp: Path, name: str, steps: int, env) -> dict:
    """name: torch (eager), torch+compile (Inductor-compiled step) or jax."""
    backend, _, compiled = name.partition("+")
    d = _workdir(tmp, f"dpmd-{backend}{'-c' if compiled else ''}", steps)
    cfg = json.loads((d / "input.json").read_text())
    cfg["training"]["compile"] = bool(compiled)
    (d / "input.json").write_text(json.dumps(cfg, indent=1))
    dpmd = [sys.executable, "-m", "deepmd_md.cli.main"]
    t0 = time.perf_counter()
    out = _run(dpmd + ["train", "input.json", "-b", backend, "--no-progress"], d, env)
    wall = time.perf_counter() - t0
    rss = PEAK_RSS[str(d)]
    per = float(re.search(r"average training time: ([0-9.]+) s/step", out).group(1))
    comp = re.search(r"compiled in ([0-9.]+) s", out)
    out = _run(dpmd + ["test", "-m", f"model.ckpt-{steps}.ckpt", "-s", "../data/data_3", "--json",
                       "-b", backend], d, env)
    # the JSON document is stdout; stderr (framework warnings, TensorFlow's) follows it
    res = json.JSONDecoder().raw_decode(out[out.index("{"):])[0]["weighted"]
    if KEEP:
        _run(dpmd + ["freeze", "-o", str(KEEP / f"dpmd-{backend}.pth")], d, env)
    return {"s_per_step": per, "e_rmse_mev_atom": 1e3 * res["energy_rmse_per_atom"],
            "f_rmse": res["force_rmse"], "wall_s": wall,
            "compile_s": float(comp.group(1)) if comp else 0.0, "peak_rss_mib": rss}


# DeePMD-kit 3.2's frozen file per training framework (`dp --FW freeze -o frozen.SUFFIX`)
DP_SUFFIX = {"pt": ".pth", "tf": ".pb", "pd": ".json", "jax": ".savedmodel"}


def deepmd_kit(tmp: Path, venv: Path, fw: str, steps: int, env) -> dict:
    d = _workdir(tmp, f"dp-{fw}", steps)
    dp = str(venv / "bin" / "dp")
    t0 = time.perf_counter()
    out = _run([dp, f"--{fw}", "train", "input.json"], d, env)
    wall = time.perf_counter() - t0
    rss = PEAK_RSS[str(d)]
    per = float(re.findall(r"average training time: ([0-9.]+) s/batch", out)[-1])
    model = "frozen" + DP_SUFFIX[fw]
    _run([dp, f"--{fw}", "freeze", "-o", model], d, env)
    out = _run([dp, f"--{fw}", "test", "-m", model, "-s", "../data/data_3", "-n", "80"], d, env)
    if KEEP:
        copy = shutil.copytree if (d / model).is_dir() else shutil.copy  # a SavedModel: a folder
        copy(d / model, KEEP / f"dp-{fw}{Path(model).suffix}")
        if fw == "pd":  # a Paddle model is the program (.json) and its weights beside it
            shutil.copy(d / "frozen.pdiparams", KEEP / f"dp-{fw}.pdiparams")
    e = float(re.search(r"Energy RMSE/Natoms\s*:\s*([0-9.eE+-]+)", out).group(1))
    f = float(re.search(r"Force\s+RMSE\s*:\s*([0-9.eE+-]+)", out).group(1))
    return {"s_per_step": per, "e_rmse_mev_atom": 1e3 * e, "f_rmse": f, "wall_s": wall,
            "compile_s": 0.0, "peak_rss_mib": rss}


def _env(threads: str) -> dict:
    # DP_INFER_BATCH_SIZE: DeePMD-kit's `dp test` one 192-atom frame at a time (its default 1024
    # atoms ran out of memory on the water DPA-3)
    return dict(os.environ, OMP_NUM_THREADS=threads, PYTHONPATH=str(ROOT), DP_INFER_BATCH_SIZE="192",
                TF_INTRA_OP_PARALLELISM_THREADS=threads, TF_INTER_OP_PARALLELISM_THREADS="1",
                DP_INTRA_OP_PARALLELISM_THREADS=threads, DP_INTER_OP_PARALLELISM_THREADS="1")


def seed_sweep(args) -> None:
    """RMSE per seed and their mean / sample std / min / max, per code."""
    global SEED
    env = _env(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-seeds-"))
    runs = {}
    try:
        for seed in args.seeds:
            SEED = seed
            for fw in args.dp_frameworks if args.dp_venv else []:
                r = deepmd_kit(tmp, args.dp_venv, fw, args.steps, env)
                runs.setdefault(f"deepmd-kit {fw}", []).append(r)
                print(f"seed {seed} deepmd-kit {fw}: {r}", flush=True)
            for b in args.backends:
                r = ours(tmp, b, args.steps, env)
                runs.setdefault(f"deepmd_md {b}", []).append(r)
                print(f"seed {seed} deepmd_md {b}: {r}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwater se_e2_a, {args.steps} steps, seeds {args.seeds} (training seed + 9), "
          "validation data_3")
    for k, rs in runs.items():
        for key, unit in (("e_rmse_mev_atom", "E meV/atom"), ("f_rmse", "F eV/A")):
            v = [r[key] for r in rs]
            mean = sum(v) / len(v)
            sd = (sum((x - mean) ** 2 for x in v) / max(len(v) - 1, 1)) ** 0.5
            print(f"{k:<24s} {unit:<11s} mean {mean:.3f} sd {sd:.3f} min {min(v):.3f} "
                  f"max {max(v):.3f}  [{' '.join(f'{x:.3f}' for x in v)}]")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--backends", nargs="+", default=["torch+compile", "torch", "jax"],
                    help="torch, torch+compile (training/compile true), jax")
    ap.add_argument("--dp-venv", type=Path, help="a venv with deepmd-kit 3.2 (baseline)")
    ap.add_argument("--dp-frameworks", nargs="+", default=["tf"], help="tf and/or pt")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--keep", type=Path, help="copy the frozen models here")
    ap.add_argument("--seeds", type=int, nargs="+", help="one run per model seed (see above)")
    args = ap.parse_args()
    if args.seeds:
        return seed_sweep(args)
    global KEEP
    KEEP = args.keep
    if KEEP:
        KEEP.mkdir(parents=True, exist_ok=True)
    env = _env(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    rows = {}
    try:
        if args.dp_venv:
            for fw in args.dp_frameworks:
                rows[f"deepmd-kit {fw}"] = deepmd_kit(tmp, args.dp_venv, fw, args.steps, env)
                print(rows[f"deepmd-kit {fw}"], flush=True)
        for b in args.backends:
            rows[f"deepmd_md {b}"] = ours(tmp, b, args.steps, env)
            print(rows[f"deepmd_md {b}"], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows.get("deepmd-kit tf")
    print(f"\nwater se_e2_a, {args.steps} steps, {args.threads} threads, validation data_3")
    print("s/step: DeePMD-kit's and our 'average training time' (both leave out the first steps);"
          " wall: the whole train command, compile included")
    print(f"{'run':<24s} {'s/step':>8s} {'E meV/atom':>11s} {'F eV/A':>8s} {'vs DP-TF':>9s} "
          f"{'wall s':>8s} {'compile s':>10s}")
    for k, r in rows.items():
        ratio = f"{r['s_per_step'] / base['s_per_step']:.2f}x" if base else "-"
        print(f"{k:<24s} {r['s_per_step']:8.4f} {r['e_rmse_mev_atom']:11.2f} {r['f_rmse']:8.3f} "
              f"{ratio:>9s} {r['wall_s']:8.1f} {r['compile_s']:10.1f}")


if __name__ == "__main__":
    main()

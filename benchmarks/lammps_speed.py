#!/usr/bin/env python
"""LAMMPS speed of pair_style deepmd (run by hand, not in CI).

Water se_e2_a of the example's size (examples/water/se_e2_a/input.json), fp64, the
192-atom box replicated to 192 / 1,536 / 12,288 atoms; 1 rank x 2 threads and 2 ranks x
1 thread; microseconds per step per atom from LAMMPS' "Loop time" (after a warm-up run),
with the FLOP estimate of the model beside it.

  python benchmarks/lammps_speed.py                       # random-init model of the example size
  python benchmarks/lammps_speed.py --model frozen.pth --sizes 192 1536
  python benchmarks/lammps_speed.py --dp-venv /tmp/dp --dp-model dp_water.pth   # DeePMD-kit beside it
  python benchmarks/lammps_speed.py --baseline-build /tmp/oldbuild   # an older build beside
  python benchmarks/lammps_speed.py --nve 2000            # NVE energy drift (meV/atom/ps), 192 atoms
  python benchmarks/lammps_speed.py --nve 2000 --nve-equil 1000   # ... after 0.5 ps of NVT

DPMD_MD_PROFILE=1 is set for our runs: the core prints its own overhead (neighbor-list
conversion) and the backend time per call on stderr; they are reported per run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WATER = REPO / "examples" / "md" / "water" / "water.lmp"
BIN = Path(sys.executable).parent
REPLICATE = {192: (1, 1, 1), 1536: (2, 2, 2), 12288: (4, 4, 4)}


def make_model(path: Path, config_path: Path) -> Path:
    """Freeze a randomly initialised model of the example's size (timing only)."""
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.config import normalize
    from deepmd_md.model.model import init_model

    inp = json.loads(config_path.read_text())
    inp["training"]["training_data"]["systems"] = ["unused"]
    inp["training"].pop("validation_data", None)
    cfg = normalize(inp)
    data = init_model(cfg["model"], seed=1)
    data["buffers"]["descriptor"]["dstd"][:] = 0.1  # realistic magnitudes; timing does not depend on it
    freeze_pth(data, str(path))
    return path


def flops_per_atom(model_cfg: dict, nnei: int) -> float:
    """Multiply-add estimate of se_e2_a + energy fitting, forward + backward (x3)."""
    d = model_cfg["descriptor"]
    emb = [1] + list(d["neuron"])
    m_emb = sum(a * b for a, b in zip(emb[:-1], emb[1:], strict=True))
    m1, m2 = emb[-1], d.get("axis_neuron", 4)
    fit = [m1 * m2] + list(model_cfg["fitting_net"]["neuron"]) + [1]
    m_fit = sum(a * b for a, b in zip(fit[:-1], fit[1:], strict=True))
    macs = nnei * m_emb + nnei * 4 * m1 + 4 * m1 * m2 + m_fit
    return 3 * 2 * macs


def lammps_input(model: str, rep, steps: int, warm: int, pair: str = "deepmd") -> str:
    return f"""units metal
boundary p p p
atom_style atomic
atom_modify map yes
neighbor 2.0 bin
neigh_modify every 10 delay 0 check no
read_data {WATER}
replicate {rep[0]} {rep[1]} {rep[2]}
mass 1 16
mass 2 2
pair_style {pair} {model}
pair_coeff * * O H
velocity all create 330 23456789 loop geom
fix 1 all nve
timestep 0.0005
thermo 1000
run {warm}
run {steps}
"""


def run(lmp: str, inp: str, ranks: int, threads: int, env_extra=None, timeout=3600):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.lammps").write_text(inp)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), DPMD_MD_PROFILE="1")
        env.update(env_extra or {})
        cmd = [lmp, "-in", "in.lammps", "-log", "none"]
        if ranks > 1:
            cmd = [str(BIN / "mpirun"), "-np", str(ranks)] + cmd
        t = time.time()
        p = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        wall = time.time() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    loops = re.findall(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms",
                       p.stdout)
    t, _, steps, natoms = loops[-1]
    pair = re.findall(r"^Pair\s+\|.*\|\s+([\d.]+)\s*$", p.stdout, re.M)
    prof = re.findall(r"nlist/type conversion ([\d.]+) ms/call, backend ([\d.]+) ms/call", p.stderr)
    return {
        "us_step_atom": float(t) / int(steps) / int(natoms) * 1e6,
        "pair_pct": float(pair[-1]) if pair else None,
        "core_ms": [float(a) for a, _ in prof], "backend_ms": [float(b) for _, b in prof],
        "wall_s": wall, "natoms": int(natoms),
    }


def dgemm_gflops(threads: int) -> float:
    code = (f"import torch,time;torch.set_num_threads({threads});"
            "a=torch.rand(2000,2000,dtype=torch.float64);"
            "a@a;t=time.time();[a@a for _ in range(5)];print(5*2*2000**3/(time.time()-t)/1e9)")
    return float(subprocess.check_output([sys.executable, "-c", code], text=True))


def nve_drift(lmp: str, model: str, steps: int, equil: int = 0) -> None:
    """Total-energy drift (linear fit, meV/atom/ps) of `steps` NVE steps at 0.5 fs on 192 atoms,
    2 ranks; after `equil` Nose-Hoover NVT steps at 330 K when equil > 0 (a model that does not
    hold water.lmp's structure heats up first, and that transient is not integration error)."""
    base = lammps_input(model, (1, 1, 1), 0, 0).split("velocity", 1)[0]
    inp = base + "velocity all create 330 23456789 loop geom\ntimestep 0.0005\n"
    if equil:
        inp += f"fix 0 all nvt temp 330 330 0.05\nthermo 1000\nrun {equil}\nunfix 0\n"
    inp += ("fix 1 all nve\nthermo_style custom step etotal temp\n"
            f"thermo_modify format float %.10f\nthermo 10\nrun {steps}\n")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.lammps").write_text(inp)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        p = subprocess.run([str(BIN / "mpirun"), "-np", "2", lmp, "-in", "in.lammps", "-log", "none"],
                           cwd=tmp, env=env, capture_output=True, text=True, check=True)
    import numpy as np

    body = p.stdout.rsplit("TotEng", 1)[1].split("Loop time", 1)[0]
    data = np.array([[float(x) for x in r] for r in (ln.split() for ln in body.splitlines())
                     if len(r) == 3])
    t_ps = (data[:, 0] - data[0, 0]) * 0.0005
    e = data[:, 1] / 192 * 1000  # meV/atom
    slope = np.polyfit(t_ps, e, 1)[0]
    print(f"NVE {steps} steps x 0.5 fs after {equil} NVT steps, 192 atoms, 2 ranks: drift "
          f"{slope:+.4f} meV/atom/ps, max |E - E0| {np.abs(e - e[0]).max():.4f} meV/atom, "
          f"<T> {data[:, 2].mean():.0f} K (max {data[:, 2].max():.0f} K)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="frozen .pth/.pt2 (default: random-init model of the example size)")
    ap.add_argument("--config", default=str(REPO / "examples" / "water" / "se_e2_a" / "input.json"))
    ap.add_argument("--sizes", type=int, nargs="*", default=[192, 1536, 12288])
    ap.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="RANKSxTHREADS")
    ap.add_argument("--steps", type=float, default=3.0e5, help="atom-steps per measured run")
    ap.add_argument("--dp-venv", help="venv with deepmd-kit's lmp, to run the same inputs beside")
    ap.add_argument("--dp-model", help="DeePMD-kit frozen model for --dp-venv")
    ap.add_argument("--baseline-build", metavar="DIR",
                    help="another build's plugin folder (e.g. the previous commit's CMake build) "
                         "to run beside ours on the same inputs")
    ap.add_argument("--nve", type=int, default=0, help="also measure NVE drift over N steps")
    ap.add_argument("--nve-equil", type=int, default=0,
                    help="NVT steps (330 K) before the NVE drift measurement")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    lmp = str(BIN / "lmp")
    cfg = json.loads(Path(args.config).read_text())["model"]
    model = args.model
    tmpdir = tempfile.mkdtemp(prefix="dpmd_bench_")
    if not model:
        model = str(make_model(Path(tmpdir) / "water_se_e2_a.pth", Path(args.config)))
    nnei = sum(cfg["descriptor"]["sel"])
    fl = flops_per_atom(cfg, nnei)
    print(f"model {model}; FLOP estimate {fl / 1e6:.2f} MFLOP/atom/step (sel {nnei}, fwd+bwd)")
    g1, g2 = (dgemm_gflops(1), dgemm_gflops(2)) if args.sizes else (1.0, 1.0)
    if args.sizes:
        print(f"fp64 GEMM (torch, 2000^3): {g1:.1f} GFLOPS on 1 thread, {g2:.1f} on 2 -> compute-bound "
          f"limit {fl / (g2 * 1e9) * 1e6:.1f} us/step/atom on 2 cores")
    results = []
    if args.sizes:
        print(f"{'code':10s} {'atoms':>6s} {'layout':>6s} {'us/step/atom':>13s} {'GFLOPS':>7s} "
          f"{'Pair%':>6s} {'core ms':>8s} {'model ms':>9s}")
    for n in args.sizes:
        rep = REPLICATE[n]
        steps = max(3, int(args.steps / n))
        warm = 2
        for lay in args.layouts:
            ranks, threads = (int(x) for x in lay.split("x"))
            codes = [("deepmd_md", lmp, model, {})]
            if args.baseline_build:  # the wheel's lmp loads the plugin DEEPMD_MD_PLUGIN_DIR names
                codes.append(("baseline", lmp, model, {"DEEPMD_MD_PLUGIN_DIR": args.baseline_build}))
            if args.dp_venv and args.dp_model:
                dp_env = {"LD_PRELOAD": str(next(Path(args.dp_venv).glob(
                    "lib/python3*/site-packages/torch/lib/libtorch_cpu.so")))}
                codes.append(("deepmd-kit", str(Path(args.dp_venv) / "bin" / "lmp"), args.dp_model, dp_env))
            for name, exe, mdl, envx in codes:
                r = run(exe, lammps_input(mdl, rep, steps, warm), ranks, threads, envx)
                gf = fl / (r["us_step_atom"] * 1e-6) / 1e9
                core = max(r["core_ms"]) if r["core_ms"] else float("nan")
                back = max(r["backend_ms"]) if r["backend_ms"] else float("nan")
                print(f"{name:10s} {n:6d} {lay:>6s} {r['us_step_atom']:13.1f} {gf:7.2f} "
                      f"{r['pair_pct'] or 0:6.1f} {core:8.2f} {back:9.2f}", flush=True)
                results.append({"code": name, "atoms": n, "layout": lay, **r})
    by = {(r["code"], r["atoms"], r["layout"]): r["us_step_atom"] for r in results}
    for lay in args.layouts:
        if ("deepmd_md", 1536, lay) in by and ("deepmd_md", 12288, lay) in by:
            print(f"per-atom cost ratio 12288/1536 ({lay}): "
                  f"{by[('deepmd_md', 12288, lay)] / by[('deepmd_md', 1536, lay)]:.3f}")
    for n in args.sizes:
        dp = [by[k] for k in by if k[0] == "deepmd-kit" and k[1] == n]
        for lay in args.layouts:
            if dp and ("deepmd_md", n, lay) in by:
                print(f"deepmd_md / deepmd-kit's best at {n} atoms ({lay}): "
                      f"{by[('deepmd_md', n, lay)] / min(dp):.3f}")
    for n in args.sizes:
        for lay in args.layouts:
            if ("baseline", n, lay) in by:
                print(f"deepmd_md / baseline build at {n} atoms ({lay}): "
                      f"{by[('deepmd_md', n, lay)] / by[('baseline', n, lay)]:.3f}")
    for n in args.sizes:
        if ("deepmd_md", n, "2x1") in by and ("deepmd_md", n, "1x1") in by:
            print(f"2-rank parallel efficiency at {n} atoms: "
                  f"{by[('deepmd_md', n, '1x1')] / (2 * by[('deepmd_md', n, '2x1')]):.2f}")
    if args.nve:
        nve_drift(lmp, model, args.nve, args.nve_equil)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

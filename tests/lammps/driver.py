"""Run one LAMMPS job through the Python module (optionally under mpirun) and dump
results as JSON; used by the tests so that every job runs in its own process.

usage: [mpirun -np N] python driver.py spec.json out.json
spec: {"commands": [...LAMMPS input lines...], "steps": int (thermo every step),
       "gather": bool (forces/per-atom data by atom ID after the last run)}
"""

import json
import sys

import numpy as np
from mpi4py import MPI  # noqa: F401  (before lammps, as LAMMPS requires under MPI)

from deepmd_md.lmp import lammps


def main():
    spec = json.load(open(sys.argv[1]))
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    res = {}
    for c in spec["commands"]:
        lmp.command(c)
    # per-step potential energy
    pe = []
    if spec.get("steps", 0) > 0:
        pefile = sys.argv[2] + ".pe"
        lmp.command(f'fix pelog all print 1 "$(pe:%.17g)" screen no file {pefile}')
        lmp.command(f"run {spec['steps']}")
        lmp.command("unfix pelog")
        if MPI.COMM_WORLD.rank == 0:
            pe = [float(x) for x in open(pefile) if x.strip() and not x.startswith("#")]
    lmp.command("run 0")
    res["pe"] = lmp.get_thermo("pe")
    res["pe_steps"] = [float(x) for x in pe]
    res["natoms"] = lmp.get_natoms()
    vol = lmp.get_thermo("vol")
    nktv2p = lmp.extract_global("nktv2p")
    if spec.get("gather", True):
        f = np.array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3)
        x = np.array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
        res["f"] = f.tolist()
        res["x"] = x.tolist()
        for name in spec.get("computes_peratom", []):
            n, cols = name
            arr = np.array(lmp.gather(f"c_{n}", 1, cols)).reshape(-1, cols)
            res[n] = arr.tolist()
    # virial (energy units, LAMMPS order xx yy zz xy xz yz)
    virial = [lmp.extract_compute("dpvir", 0, 1)[i] * vol / nktv2p for i in range(6)]
    res["virial"] = virial
    res["box"] = [lmp.get_thermo(k) for k in ("lx", "ly", "lz", "xy", "xz", "yz")]
    res["boxlo"] = [lmp.get_thermo(k) for k in ("xlo", "ylo", "zlo")]
    if MPI.COMM_WORLD.rank == 0:
        json.dump(res, open(sys.argv[2], "w"))
    lmp.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Write the GROMACS inputs of examples/md/gromacs/ from examples/md/water/water.lmp.

  python tools/gromacs/make_examples.py        # rewrites examples/md/gromacs/{water,solvated}/

water/     the 192-atom box of the LAMMPS example as 64 water molecules, every atom NN (charges 0)
solvated/  the box replicated 2x2x2 (1,536 atoms, 512 molecules): the 5 molecules nearest the
           centre are the NN region (group NN), the other 507 classical flexible SPC/Fw water
           (mechanical embedding: NN atoms keep SPC/Fw charges and LJ for NN-MM pairs)

Molecules: every H is bonded to its nearest O (minimum image); each O gets exactly two.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
LMP = REPO / "examples" / "md" / "water" / "water.lmp"
OUT = REPO / "examples" / "md" / "gromacs"

# flexible SPC/Fw water (Wu, Tepper and Voth, J. Chem. Phys. 124, 024503 (2006)), GROMACS units
SPCFW = {"qO": -0.82, "qH": 0.41, "sigma": 0.316557, "eps": 0.650194, "b0": 0.1012, "kb": 443153.38,
         "th0": 113.24, "kth": 317.5656}


def read_lmp(path: Path = LMP):
    """(box [3] nm, types [n] 0=O 1=H, x [n,3] nm) of the orthorhombic LAMMPS data file."""
    lines = path.read_text().splitlines()
    lo_hi = [list(map(float, ln.split()[:2])) for ln in lines if ln.strip().endswith(("xhi", "yhi", "zhi"))]
    box = np.array([hi - lo for lo, hi in lo_hi]) / 10.0
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Atoms")) + 2
    rows = [ln.split() for ln in lines[start:] if ln.strip()]
    rows = [r for r in rows if len(r) >= 5]
    types = np.array([int(r[1]) - 1 for r in rows])
    x = np.array([[float(v) for v in r[2:5]] for r in rows]) / 10.0
    return box, types, x


def molecules(box, types, x):
    """[(O, H1, H2)] atom indices: each H with its nearest O (minimum image)."""
    o = np.flatnonzero(types == 0)
    h = np.flatnonzero(types == 1)
    d = x[h][:, None, :] - x[o][None, :, :]
    d -= box * np.round(d / box)
    near = np.argmin((d**2).sum(-1), axis=1)
    mols = []
    for k, oi in enumerate(o):
        hs = h[near == k]
        if len(hs) != 2:
            raise SystemExit(f"O atom {oi} has {len(hs)} nearest H atoms, not 2")
        mols.append((int(oi), int(hs[0]), int(hs[1])))
    return mols


def whole(box, x, mol):
    """Positions of one molecule with its H atoms next to the O (not split by the box)."""
    p = x[list(mol)].copy()
    d = p[1:] - p[0]
    p[1:] = p[0] + d - box * np.round(d / box)
    return p


def write_gro(path: Path, title: str, mols_xyz, box):
    lines = [title, f"{3 * len(mols_xyz):5d}"]
    n = 0
    for r, (resname, p) in enumerate(mols_xyz, 1):
        for name, xyz in zip(("OW", "HW1", "HW2"), p, strict=True):
            n += 1
            lines.append(f"{r % 100000:5d}{resname:<5s}{name:>5s}{n % 100000:5d}"
                         f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}")
    lines.append(f"{box[0]:10.5f}{box[1]:10.5f}{box[2]:10.5f}")
    path.write_text("\n".join(lines) + "\n")


def top_text(title: str, blocks: list[tuple[str, int]], zero_charges: set[str]) -> str:
    p = SPCFW
    out = [f"; {title}",
           "; flexible SPC/Fw water (Wu, Tepper, Voth 2006); atomtypes carry the atomic numbers",
           "; (at.num) that GROMACS passes to the NN model",
           "[ defaults ]", "; nbfunc comb-rule gen-pairs fudgeLJ fudgeQQ",
           "  1       2         no        1.0     1.0",
           "", "[ atomtypes ]", "; name at.num   mass     charge ptype  sigma      epsilon",
           f"  OW   8      15.9994   0.0    A      {p['sigma']:.6f}   {p['eps']:.6f}",
           "  HW   1       1.008    0.0    A      0.0        0.0", ""]
    for name, _ in blocks:
        qo, qh = (0.0, 0.0) if name in zero_charges else (p["qO"], p["qH"])
        note = "  ; NN water: charges 0 (every atom NN)" if name in zero_charges else ""
        out += [f"[ moleculetype ]{note}", "; name nrexcl", f"  {name}  2", "", "[ atoms ]",
                "; nr type resnr res atom cgnr charge  mass",
                f"   1  OW   1   {name}  OW   1   {qo:6.2f}  15.9994",
                f"   2  HW   1   {name}  HW1  1   {qh:6.2f}   1.008",
                f"   3  HW   1   {name}  HW2  1   {qh:6.2f}   1.008", "",
                "[ bonds ]", "; i j funct b0 kb",
                f"  1 2 1 {p['b0']} {p['kb']}", f"  1 3 1 {p['b0']} {p['kb']}", "",
                "[ angles ]", "; i j k funct theta0 ktheta", f"  2 1 3 1 {p['th0']} {p['kth']}", ""]
    out += ["[ system ]", title, "", "[ molecules ]"] + [f"{name}  {n}" for name, n in blocks]
    return "\n".join(out) + "\n"


def write_ndx(path: Path, groups: dict[str, list[int]]):
    lines = []
    for name, idx in groups.items():
        lines.append(f"[ {name} ]")
        for k in range(0, len(idx), 15):
            lines.append(" ".join(f"{i + 1:4d}" for i in idx[k:k + 15]))
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    box, types, x = read_lmp()
    mols = molecules(box, types, x)

    # water: 64 molecules, every atom NN
    d = OUT / "water"
    d.mkdir(parents=True, exist_ok=True)
    write_gro(d / "conf.gro", "192-atom water (examples/md/water/water.lmp), every atom NN",
              [("SOL", whole(box, x, m)) for m in mols], box)
    (d / "topol.top").write_text(top_text("192-atom water, every atom NN", [("SOL", len(mols))], {"SOL"}))
    write_ndx(d / "index.ndx", {"System": list(range(3 * len(mols))), "NN": list(range(3 * len(mols)))})

    # solvated: 2x2x2 replica, 5 NN molecules nearest the centre first, then 507 SPC/Fw
    big = box * 2
    allmols = []
    for i in range(2):
        for j in range(2):
            for k in range(2):
                shift = np.array([i, j, k]) * box
                allmols += [whole(box, x, m) + shift for m in mols]
    centre = big / 2
    dist = [np.linalg.norm((p[0] - centre) - big * np.round((p[0] - centre) / big)) for p in allmols]
    order = np.argsort(dist, kind="stable")
    nn = [int(i) for i in order[:5]]
    rest = [i for i in range(len(allmols)) if i not in set(nn)]
    d = OUT / "solvated"
    d.mkdir(parents=True, exist_ok=True)
    write_gro(d / "conf.gro", "5 NN water molecules in 507 SPC/Fw water (1,536 atoms)",
              [("NNW", allmols[i]) for i in nn] + [("SOL", allmols[i]) for i in rest], big)
    (d / "topol.top").write_text(top_text("5 NN water molecules in SPC/Fw water",
                                          [("NNW", len(nn)), ("SOL", len(rest))], set()))
    n_all = 3 * len(allmols)
    write_ndx(d / "index.ndx", {"System": list(range(n_all)), "NN": list(range(15)),
                                "MM": list(range(15, n_all))})
    print(f"wrote {OUT}/water and {OUT}/solvated")
    return 0


if __name__ == "__main__":
    sys.exit(main())

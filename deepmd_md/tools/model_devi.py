"""Model deviation of an ensemble (DeePMD-kit's `model_devi.out`), the same statistics as the
LAMMPS plugin's `pair_style deepmd ... out_file` (plugin/lammps/pair_deepmd_devi.cpp).

For nm models on a frame of nat atoms:
  devi_f(i) = sqrt( mean_k |F_k(i) - <F(i)>|^2 )                per atom, eV/Å
              relative r: divided by |<F(i)>| + r
  devi_v(c) = std_k( W_k(c) / nat ),  c over the 9 virial components (population std)
              relative r: divided by |<W>/nat| (the 9-vector norm) + r
  max/min/avg_devi_f = max/min/mean over atoms of devi_f
  max/min/avg_devi_v = max/min over c of devi_v, and sqrt(mean_c devi_v^2)
  devi_e = std_k( E_k ) / nat
"""

from __future__ import annotations

import numpy as np

COLUMNS = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f",
           "devi_e")


def deviation(energies, forces, virials, relative: float | None = None,
              relative_v: float | None = None) -> dict:
    """Deviation statistics of nm models on nf frames.

    energies: [nm, nf] (or [nm, nf, 1]); forces: [nm, nf, nat, 3]; virials: [nm, nf, 9].
    Returns {column: [nf] for each of COLUMNS, "devi_f": [nf, nat] per-atom force deviation}.
    """
    f = np.asarray(forces, float)
    nm, nf, nat = f.shape[0], f.shape[1], f.shape[2]
    f = f.reshape(nm, nf, nat, 3)
    w = np.asarray(virials, float).reshape(nm, nf, 9) / nat
    e = np.asarray(energies, float).reshape(nm, nf)
    fmean = f.mean(axis=0)
    df = np.sqrt(np.mean(np.sum((f - fmean) ** 2, axis=-1), axis=0))  # [nf, nat]
    if relative is not None:
        df = df / (np.linalg.norm(fmean, axis=-1) + relative)
    dv = np.std(w, axis=0)  # [nf, 9]
    if relative_v is not None:
        dv = dv / (np.linalg.norm(w.mean(axis=0), axis=-1, keepdims=True) + relative_v)
    return {"max_devi_v": dv.max(-1), "min_devi_v": dv.min(-1),
            "avg_devi_v": np.sqrt(np.mean(dv**2, axis=-1)),
            "max_devi_f": df.max(-1), "min_devi_f": df.min(-1), "avg_devi_f": df.mean(-1),
            "devi_e": np.std(e, axis=0) / nat, "devi_f": df}


def header(atomic: bool = False) -> str:
    """The column line of DeePMD-kit 3.2's model_devi.out (names left-aligned in 19 columns)."""
    names = list(COLUMNS) + (["atm_devi_f(N)"] if atomic else [])
    return "# " + "step".ljust(10) + "".join(n.ljust(19) for n in names)


def format_block(system: str, steps, devi: dict, atomic: bool = False) -> str:
    """One system's block: `# <system>`, the column line, then `%12d` step and ` %18.6e` values
    (and the per-atom force deviations with atomic=True). steps: [nf] ints."""
    lines = [f"# {system}", header(atomic)]
    cols = np.stack([devi[c] for c in COLUMNS], axis=1)
    if atomic:
        cols = np.concatenate([cols, devi["devi_f"]], axis=1)
    for s, row in zip(steps, cols, strict=True):
        lines.append(f"{int(s):12d}" + "".join(f" {x:18.6e}" for x in row))
    return "\n".join(lines) + "\n"

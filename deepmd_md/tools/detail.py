"""DeePMD-kit's `dp test -d PREFIX` detail files, in its layout (checked against DeePMD-kit 3.2).

PREFIX.e.out          data_e pred_e                      one row per frame (total energy)
PREFIX.e_peratom.out  data_e pred_e                      per frame, divided by natoms
PREFIX.f.out          data_fx .. data_fz pred_fx .. fz   one row per atom of every frame
PREFIX.v.out          data_vxx .. data_vzz pred_vxx ..   per frame, 9 + 9 columns
PREFIX.v_peratom.out  as .v.out divided by natoms
PREFIX.s.out          stress -virial/volume, eV/Å³ (only frames of periodic systems with
                      virial labels)

Each file starts with one line `# <system>: <columns>` naming the first system written to it;
further systems are appended without a header (as DeePMD-kit does). A missing label is written
as zeros (the prediction is still written). Numbers: numpy.savetxt's `%.18e`.
"""

from __future__ import annotations

import numpy as np

from deepmd_md.tools import staged_outputs

SUFFIXES = ("e", "e_peratom", "f", "v", "v_peratom", "s")
_COMPONENTS = ("xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz")


def _cols(prefix: str, names) -> str:
    return " ".join([f"data_{prefix}{n}" for n in names] + [f"pred_{prefix}{n}" for n in names])


def system_tables(name: str, natoms: int, pred: dict, label: dict, box=None) -> dict:
    """The detail rows of one system: {suffix: (header, rows [n, ncol])}.

    pred: energy [nf] | [nf, 1], force [nf, nat, 3], virial [nf, 9];
    label: the same keys, a value None when the system has no such label;
    box: [nf, 9] | None (non-periodic: no stress rows).
    """
    e = np.asarray(pred["energy"], float).reshape(-1)
    nf = e.shape[0]
    f = np.asarray(pred["force"], float).reshape(nf * natoms, 3)
    v = np.asarray(pred["virial"], float).reshape(nf, 9)
    le = np.zeros(nf) if label.get("energy") is None else np.asarray(label["energy"],
                                                                        float).reshape(nf)
    lf = (np.zeros_like(f) if label.get("force") is None
          else np.asarray(label["force"], float).reshape(nf * natoms, 3))
    lv = (np.zeros_like(v) if label.get("virial") is None
          else np.asarray(label["virial"], float).reshape(nf, 9))
    ecol, fcol, vcol = "data_e pred_e", _cols("f", "xyz"), _cols("v", _COMPONENTS)
    out = {
        "e": (f"{name}: {ecol}", np.stack([le, e], axis=1)),
        "e_peratom": (f"{name}: {ecol}", np.stack([le, e], axis=1) / natoms),
        "f": (f"{name}: {fcol}", np.concatenate([lf, f], axis=1)),
        "v": (f"{name}: {vcol}", np.concatenate([lv, v], axis=1)),
        "v_peratom": (f"{name}: {vcol}", np.concatenate([lv, v], axis=1) / natoms),
    }
    if label.get("virial") is not None and box is not None:
        vol = np.abs(np.linalg.det(np.asarray(box, float).reshape(nf, 3, 3)))[:, None]
        out["s"] = (f"{name} (eV/Å³): {_cols('s', _COMPONENTS)}",
                    -np.concatenate([lv, v], axis=1) / vol)
    return out


def write_detail_files(prefix: str, tables: list[dict]) -> list[str]:
    """Write PREFIX.<suffix>.out from the per-system tables of system_tables (in order), all or
    none (temporary names renamed at the end). Returns the paths written."""
    written = []
    with staged_outputs() as stage:
        for suf in SUFFIXES:
            parts = [t[suf] for t in tables if suf in t]
            if not parts:
                continue
            path = f"{prefix}.{suf}.out"
            with open(stage(path), "w", encoding="utf-8") as fh:
                fh.write(f"# {parts[0][0]}\n")  # the first system's header only
                for _, rows in parts:
                    np.savetxt(fh, rows)
            written.append(path)
    return written


def read_detail(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(data [n, k], pred [n, k]) of one detail file; raises ToolError if unreadable."""
    from deepmd_md.tools import ToolError

    try:
        rows = np.loadtxt(path, ndmin=2, comments="#", encoding="utf-8")
    except OSError as e:
        raise ToolError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ToolError(f"{path}: not a detail file of numbers ({str(e).splitlines()[0]})") \
            from None
    if rows.size == 0:
        raise ToolError(f"{path}: no rows")
    if rows.shape[1] % 2:
        raise ToolError(f"{path}: {rows.shape[1]} columns; a detail file has data and pred "
                        "halves (an even number)")
    k = rows.shape[1] // 2
    return rows[:, :k], rows[:, k:]

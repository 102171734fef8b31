"""`dpmd test`: energy/force/virial errors of a model on labeled systems, and DeePMD-kit's
per-frame detail files with -d."""

from __future__ import annotations

import json

import numpy as np

from deepmd_md.backends import names

NAME = "test"
HELP = "energy/force/virial errors of a model on systems"
ORDER = 30


def add_arguments(p) -> None:
    p.add_argument("-m", "--model", required=True, help="frozen model or checkpoint")
    p.add_argument("-s", "--system", required=True, nargs="+", help="systems or folders of them")
    p.add_argument("-n", "--numb-test", type=int, default=0, help="frames per system (0 = all)")
    p.add_argument("-d", "--detail-file", default=None, metavar="PREFIX",
                   help="write DeePMD-kit's detail files PREFIX.e.out, .e_peratom.out, .f.out, "
                   ".v.out, .v_peratom.out (and .s.out, the stress, for periodic systems with "
                   "virial labels): labels and predictions per frame/atom, systems appended")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--backend", "-b", default=None, choices=names(),
                   help="framework to evaluate with (default: the model file's own); numpy is "
                   "the slow complex-step reference, for checking, not for speed")


def run(args) -> int:
    from deepmd_md.data.system import find_systems, load_system, remap_types
    from deepmd_md.infer import DeepPot
    from deepmd_md.tools.detail import system_tables, write_detail_files

    dp = DeepPot(args.model, args.backend)
    results, tables = [], []
    for spec in args.system:
        for path in find_systems(spec):
            s = remap_types(load_system(path), dp.get_type_map())
            n = s.nframes if args.numb_test <= 0 else min(args.numb_test, s.nframes)
            box = None if s.box is None else s.box[:n]
            e, f, v = dp.eval(s.coord[:n].reshape(n, -1), box, s.atype)
            results.append(_errors(path, s, n, e, f, v))
            if args.detail_file:
                labels = {k: None if getattr(s, k) is None else getattr(s, k)[:n]
                          for k in ("energy", "force", "virial")}
                tables.append(system_tables(path, s.natoms, {"energy": e, "force": f,
                                                             "virial": v}, labels, box))
    if args.detail_file:  # all systems evaluated: nothing is written if one of them fails
        write_detail_files(args.detail_file, tables)
    summary = _combine(results)
    if args.json:
        print(json.dumps({"systems": results, "weighted": summary}, indent=1))
    else:
        for r in results + ([summary] if len(results) > 1 else []):
            _print_errors(r)
    return 0


def _errors(path, s, n, e, f, v) -> dict:
    nat = s.natoms
    r = {"system": path, "nframes": n, "natoms": nat}
    if s.energy is not None:
        de = e[:, 0] - s.energy[:n]
        r |= {"energy_mae": float(np.abs(de).mean()), "energy_rmse": float(np.sqrt((de**2).mean())),
              "energy_mae_per_atom": float(np.abs(de).mean() / nat),
              "energy_rmse_per_atom": float(np.sqrt((de**2).mean()) / nat)}
    if s.force is not None:
        df = f.reshape(n, -1) - s.force[:n].reshape(n, -1)
        r |= {"force_mae": float(np.abs(df).mean()), "force_rmse": float(np.sqrt((df**2).mean()))}
    if s.virial is not None:
        dv = v - s.virial[:n]
        r |= {"virial_mae": float(np.abs(dv).mean()), "virial_rmse": float(np.sqrt((dv**2).mean())),
              "virial_mae_per_atom": float(np.abs(dv).mean() / nat),
              "virial_rmse_per_atom": float(np.sqrt((dv**2).mean()) / nat)}
        if s.box is not None:  # stress = -virial / volume, as DeePMD-kit reports it
            ds = dv / np.abs(np.linalg.det(s.box[:n].reshape(n, 3, 3)))[:, None]
            r |= {"stress_mae": float(np.abs(ds).mean()),
                  "stress_rmse": float(np.sqrt((ds**2).mean()))}
    return r


def _combine(results: list[dict]) -> dict:
    """Frame-weighted averages (MAE) and root-mean-square combinations (RMSE) over systems."""
    out = {"system": "weighted average", "nframes": sum(r["nframes"] for r in results)}
    for k in {k for r in results for k in r if k.endswith(("mae", "rmse", "atom"))}:
        rs = [r for r in results if k in r]
        w = np.array([r["nframes"] for r in rs], float)
        vals = np.array([r[k] for r in rs])
        out[k] = float(np.sqrt((w * vals**2).sum() / w.sum()) if "rmse" in k
                       else (w * vals).sum() / w.sum())
    return out


def _print_errors(r: dict) -> None:
    print(f"# system: {r['system']}")
    print(f"# number of test data : {r['nframes']}")
    rows = [("Energy MAE", "energy_mae", "eV"), ("Energy RMSE", "energy_rmse", "eV"),
            ("Energy MAE/Natoms", "energy_mae_per_atom", "eV"),
            ("Energy RMSE/Natoms", "energy_rmse_per_atom", "eV"),
            ("Force  MAE", "force_mae", "eV/A"), ("Force  RMSE", "force_rmse", "eV/A"),
            ("Virial MAE", "virial_mae", "eV"), ("Virial RMSE", "virial_rmse", "eV"),
            ("Virial MAE/Natoms", "virial_mae_per_atom", "eV"),
            ("Virial RMSE/Natoms", "virial_rmse_per_atom", "eV"),
            ("Stress MAE", "stress_mae", "eV/A^3"), ("Stress RMSE", "stress_rmse", "eV/A^3")]
    for label, k, unit in rows:
        if k in r:
            print(f"{label:<19s}: {r[k]:e} {unit}")

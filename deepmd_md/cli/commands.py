"""Implementations of the `dpmd` subcommands (argparse namespace in, exit code out)."""

from __future__ import annotations

import json
import os

import numpy as np

from deepmd_md.errors import ConfigError, ModelFileError


def train(args) -> int:
    from deepmd_md.config import load_config, normalize, resolve_auto_sel
    from deepmd_md.train.trainer import train as run

    cfg = normalize(load_config(args.input))
    if args.numb_steps is not None:
        cfg["training"]["numb_steps"] = args.numb_steps
    if cfg["model"]["type_map"] is None:
        raise ConfigError("'model/type_map' is required; list the element names, e.g. [\"O\", \"H\"]")
    cfg = resolve_auto_sel(cfg)
    last = run(cfg, args.backend, restart=args.restart, init_model_path=args.init_model,
               progress=not args.no_progress)
    print(f"training finished; last checkpoint: {last}")
    return 0


def _resolve_checkpoint(path: str) -> str:
    if os.path.isdir(path):
        pointer = os.path.join(path, "checkpoint")
        if not os.path.isfile(pointer):
            raise ModelFileError(f"no checkpoint in {path}: `checkpoint` file not found; "
                                 "train first or pass -c FILE")
        with open(pointer) as f:
            return os.path.join(path, f.read().strip())
    if not os.path.isfile(path):
        raise ModelFileError(f"checkpoint not found: {path}")
    return path


def freeze(args) -> int:
    from deepmd_md.infer.deep_pot import load_model_data
    from deepmd_md.serialize import save_dp

    ckpt = _resolve_checkpoint(args.checkpoint)
    data = load_model_data(ckpt)  # a checkpoint, a .dp, or a .pth (which carries its .dp)
    out = args.output
    if out.endswith(".pth"):
        from deepmd_md.backends.torch.freeze import freeze_pth

        freeze_pth(data, out)
    elif out.endswith(".pt2"):
        try:
            from deepmd_md.backends.torch.aoti import freeze_pt2
        except ImportError as e:
            raise ConfigError(f"cannot write .pt2: {e}") from None
        freeze_pt2(data, out)
    elif out.endswith(".dp"):
        save_dp(data, out)
    else:
        raise ConfigError(f"unknown model format for {out}: use .pth, .pt2 or .dp")
    print(f"frozen {ckpt} -> {out}")
    return 0


def test(args) -> int:
    from deepmd_md.data.system import find_systems, load_system, remap_types
    from deepmd_md.infer import DeepPot

    dp = DeepPot(args.model, args.backend)
    results = []
    for spec in args.system:
        for path in find_systems(spec):
            s = remap_types(load_system(path), dp.get_type_map())
            n = s.nframes if args.numb_test <= 0 else min(args.numb_test, s.nframes)
            e, f, v = dp.eval(s.coord[:n].reshape(n, -1), None if s.box is None else s.box[:n],
                              s.atype)
            results.append(_errors(path, s, n, e, f, v))
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
            ("Virial RMSE/Natoms", "virial_rmse_per_atom", "eV")]
    for label, k, unit in rows:
        if k in r:
            print(f"{label:<19s}: {r[k]:e} {unit}")


def show(args) -> int:
    from deepmd_md.infer.deep_pot import _pt2_load, load_model_data
    from deepmd_md.model.model import message_passing_of, mixed_of, rcut_of, sel_of
    from deepmd_md.tree import flatten

    if args.model.endswith(".pt2"):  # compiled code and its config, no separate weights
        data = {"config": _pt2_load(args.model)[1], "params": None}
    else:
        data = load_model_data(args.model)
    cfg = data["config"]
    print(f"model: {args.model}")
    print(f"type_map: {cfg['type_map']}")
    print(f"descriptor: {json.dumps(cfg['descriptor'])}")
    print(f"fitting_net: {json.dumps(cfg['fitting_net'])}")
    nl = "one list of any type" if mixed_of(cfg) else "per-type blocks"
    print(f"rcut: {rcut_of(cfg)}  sel: {sel_of(cfg)} ({nl})  message passing: "
          f"{'yes' if message_passing_of(cfg) else 'no'}")
    if data["params"] is not None:
        nparam = sum(int(np.asarray(v).size) for v in flatten(data["params"]).values())
        print(f"parameters: {nparam}")
    return 0


def neighbor_stat(args) -> int:
    from deepmd_md.data.neighbor import neighbor_stat as stat
    from deepmd_md.data.system import find_systems

    paths = [p for spec in args.system for p in find_systems(spec)]
    min_dist, max_nbor = stat(paths, args.rcut, args.type_map)
    print(f"min_nbor_dist: {min_dist:.6f}")
    print(f"max_nbor_size: {[int(x) for x in max_nbor]}  (type_map {args.type_map})")
    return 0


def export_gromacs(args) -> int:
    from deepmd_md.gromacs import cli

    return cli(args)


def doc_train_input(args) -> int:
    from deepmd_md.config import make_doc

    print(make_doc())
    return 0

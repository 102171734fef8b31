"""`dpmd train`: train a model from a DeePMD-kit input.json."""

from __future__ import annotations

from deepmd_md.errors import ConfigError

NAME = "train"
HELP = "train a model from a DeePMD-kit input.json"
ORDER = 10


def add_arguments(p) -> None:
    p.add_argument("input", help="input.json (DeePMD-kit v3 schema)")
    p.add_argument("--backend", "-b", default="torch", choices=("torch", "jax"),
                   help="framework to train with (default torch)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--restart", metavar="CKPT", help="continue the run saved in CKPT")
    g.add_argument("--init-model", metavar="MODEL", help="start from MODEL's weights, new run")
    p.add_argument("--numb-steps", type=int, help="override training/numb_steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")



def run(args) -> int:
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

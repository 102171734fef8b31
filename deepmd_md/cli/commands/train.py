"""`dpmd train`: train a model from a DeePMD-kit input.json."""

from __future__ import annotations

from deepmd_md.backends import names
from deepmd_md.errors import ConfigError

NAME = "train"
HELP = "train a model from a DeePMD-kit input.json"
ORDER = 10


def add_arguments(p) -> None:
    p.add_argument("input", help="input.json (DeePMD-kit v3 schema; reference: docs/input.md "
                   "or `dpmd doc-train-input`)")
    p.add_argument("--backend", "-b", default="torch", choices=names(trains=True),
                   help="framework to train with (default torch)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--restart", metavar="CKPT",
                   help="continue the run saved in checkpoint CKPT (same step, optimizer, "
                   "random state; lcurve.out is appended)")
    g.add_argument("--init-model", metavar="MODEL",
                   help="start a new run (step 0, fresh optimizer) from the weights and "
                   "statistics of MODEL, a checkpoint or any model file (its architecture "
                   "is kept; the input's `trainable` flags apply)")
    g.add_argument("--init-frz-model", metavar="MODEL",
                   help="start a new run from a frozen model (.pth, .pt2, .dp): as "
                   "--init-model, DeePMD-kit's name for a frozen file")
    p.add_argument("--numb-steps", type=int, metavar="N", help="override training/numb_steps")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar; the RMSE lines of every disp_freq steps go to stdout")
    p.add_argument("-l", "--log-path", metavar="LOG",
                   help="also write every message (summary, warnings, RMSE lines) to LOG")
    p.add_argument("-v", "--log-level", default="INFO", metavar="LEVEL",
                   help="DEBUG, INFO (default), WARNING or ERROR (or 3, 2, 1, 0 as in "
                   "DeePMD-kit); WARNING hides the summary and progress lines")


def run(args) -> int:
    import time

    from deepmd_md.config import load_config, normalize, resolve_auto_sel
    from deepmd_md.train.log import parse_level
    from deepmd_md.train.trainer import train

    level = parse_level(args.log_level)  # a bad level fails before any work
    cfg = normalize(load_config(args.input))
    if args.numb_steps is not None:
        if args.numb_steps < 0:
            raise ConfigError(f"--numb-steps must be >= 0, got {args.numb_steps}")
        cfg["training"]["numb_steps"] = args.numb_steps
    if cfg["model"]["type_map"] is None:
        raise ConfigError("'model/type_map' is required; list the element names, e.g. [\"O\", \"H\"]")
    if isinstance(cfg["model"]["descriptor"].get("sel"), str) and level <= 20:
        t0 = time.perf_counter()
        print("neighbor statistics of the training systems for sel 'auto' ...", flush=True)
        cfg = resolve_auto_sel(cfg)
        print(f"sel = {cfg['model']['descriptor']['sel']} (in {time.perf_counter() - t0:.1f} s)",
              flush=True)
    else:
        cfg = resolve_auto_sel(cfg)
    train(cfg, args.backend, restart=args.restart,
          init_model_path=args.init_model or args.init_frz_model,
          progress=not args.no_progress, log_path=args.log_path, log_level=level)
    return 0

"""`dpmd compress`: tabulate a model's embedding nets (DeePMD-kit's `dp compress` options)."""

from __future__ import annotations

import os

from deepmd_md.compress import DEFAULT_CHECK_FREQUENCY, DEFAULT_EXTRAPOLATE, DEFAULT_STEP
from deepmd_md.errors import ConfigError

NAME = "compress"
HELP = "compress a model: embedding nets tabulated as fused C++ kernels (faster MD)"
ORDER = 25


def add_arguments(p) -> None:
    p.add_argument("-i", "--input", default="frozen_model.pth",
                   help="the model to compress: any model file (.pth, .pt2, .dp, checkpoint) "
                   "(default frozen_model.pth)")
    p.add_argument("-o", "--output", default="frozen_model_compressed.pth",
                   help="the compressed model; the suffix picks the format as in `dpmd freeze` "
                   "(.pth, .pt2, .dp, ...) (default frozen_model_compressed.pth)")
    p.add_argument("-t", "--training-script", default=None,
                   help="the input.json the model was trained with: the table range comes "
                   "from the minimum neighbor distance of its training systems (default: the "
                   "distance stored in the model, if any)")
    p.add_argument("-s", "--step", type=float, default=DEFAULT_STEP,
                   help="stride of the first table (in the normalised s the embedding net "
                   "takes), which covers the training data's range; the second table, up to "
                   f"--extrapolate x its upper end, uses 10 x step (default {DEFAULT_STEP})")
    p.add_argument("-e", "--extrapolate", type=float, default=DEFAULT_EXTRAPOLATE,
                   help="the second table covers [upper, extrapolate x upper] of s; beyond it "
                   f"the net itself is evaluated (default {DEFAULT_EXTRAPOLATE:g})")
    p.add_argument("-f", "--check-frequency", "--frequency", type=int,
                   default=DEFAULT_CHECK_FREQUENCY, dest="check_frequency",
                   help="every N model evaluations, report on stderr the neighbors seen "
                   "beyond the training data's table (values stay exact); -1: never "
                   f"(default {DEFAULT_CHECK_FREQUENCY})")


def _min_dist_from_input(path: str, config: dict) -> float:
    """The smallest neighbor distance over the training systems of input.json `path`."""
    from deepmd_md.config import load_config
    from deepmd_md.data.neighbor import neighbor_stat
    from deepmd_md.data.system import find_systems
    from deepmd_md.model.model import rcut_of

    inp = load_config(path)
    try:
        spec = inp["training"]["training_data"]["systems"]
    except (KeyError, TypeError):
        raise ConfigError(f"{path}: no training/training_data/systems to take the table "
                          "range from") from None
    base = os.path.dirname(os.path.abspath(path))
    specs = spec if isinstance(spec, list) else [spec]
    systems = []
    for s in specs:
        full = s if os.path.isabs(s.split("#")[0]) else os.path.join(base, s)
        systems += find_systems(full)
    if not systems:
        raise ConfigError(f"{path}: its training systems {specs} hold no data")
    rmin, _ = neighbor_stat(systems, rcut_of(config), config["type_map"])
    if not rmin < float("inf"):
        raise ConfigError(f"{path}: no two atoms of its training systems are within rcut; "
                          "cannot set the table range")
    return float(rmin)


def run(args) -> int:
    import time

    from deepmd_md.compress import compress, sites
    from deepmd_md.formats import WRITABLE, format_of, read_model, write_model

    if format_of(args.output) is None or format_of(args.output).write is None:
        raise ConfigError(f"unknown model format for {args.output}: use {WRITABLE}")
    data = read_model(args.input)
    sites(data["config"], data["params"], data["buffers"])  # a model that cannot: say so first
    if args.training_script:
        rmin = _min_dist_from_input(args.training_script, data["config"])
        where = f"training systems of {args.training_script}"
    elif "min_nbor_dist" in data["buffers"]:
        rmin = float(data["buffers"]["min_nbor_dist"])
        where = "the model"
    elif "compress" in data["config"]:
        rmin = float(data["config"]["compress"]["min_nbor_dist"])
        where = "its earlier compression"
    else:
        raise ConfigError(f"{args.input} does not store its training data's minimum neighbor "
                          "distance: pass the training input with -t input.json")
    print(f"compressing {args.input}: min neighbor distance {rmin:.4f} A ({where}), step "
          f"{args.step:g}, extrapolate {args.extrapolate:g}", flush=True)
    t0 = time.perf_counter()
    out = compress(data, rmin, args.step, args.extrapolate, args.check_frequency,
                   log=lambda s: print(s, flush=True))
    fmt = format_of(args.output)
    if fmt.suffix not in (".pth", ".pt2", ".dp"):
        print(f"note: {fmt.suffix} evaluates the tables with framework ops (same values; the "
              "fused C++ kernel, and the speed-up, are for .pth and .pt2)", flush=True)
    if fmt.slow:
        print(f"writing {args.output} ({fmt.slow}) ...", flush=True)
    write_model(out, args.output)
    print(f"compressed {args.input} -> {args.output} in {time.perf_counter() - t0:.1f} s")
    return 0

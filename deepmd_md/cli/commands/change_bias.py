"""`dpmd change-bias`: refit a model's per-type energy bias on new data (DeePMD-kit's
`dp change-bias`), writing a checkpoint or frozen model."""

from __future__ import annotations

import os

from deepmd_md.backends import names
from deepmd_md.formats import FORMATS

NAME = "change-bias"
HELP = "refit the per-type energy bias of a model or checkpoint on data"
ORDER = 36


def add_arguments(p) -> None:
    p.add_argument("model", metavar="INPUT",
                   help="checkpoint (or a training folder with a `checkpoint` file) or frozen "
                   "model (.pth, .pt2 with weights, .dp)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("-s", "--system", nargs="+", default=None,
                     help="systems or folders searched for them (default: the current folder)")
    src.add_argument("-f", "--datafile", default=None,
                     help="a file listing one system path per line")
    src.add_argument("-b", "--bias-value", nargs="+", type=float, default=None,
                     help="set the bias to these values, one per type in the model's type_map "
                     "order (eV)")
    p.add_argument("-n", "--numb-batch", type=int, default=0,
                   help="frames of each system to use (0 = all)")
    p.add_argument("-m", "--mode", choices=("change", "set"), default="change",
                   help="change: shift the bias by the least-squares fit of the model's energy "
                   "error on the data; set: the least-squares fit of the labels alone "
                   "(default: change)")
    p.add_argument("-o", "--output", default=None,
                   help="output; the suffix picks the format (.pth, .pt2, .dp, or the input "
                   "checkpoint's own suffix, which keeps its training state) (default: "
                   "INPUT with _updated before the suffix)")
    p.add_argument("--backend", default=None, choices=names(),
                   help="framework that evaluates .dp/checkpoints in change mode (default: "
                   "torch)")


# the frozen formats (deepmd_md.formats); any other suffix is a checkpoint, written back whole
FROZEN = tuple(s for s, f in FORMATS.items() if f.write)


def _systems(args) -> list[str]:
    from deepmd_md.tools import ToolError

    if args.datafile is None:
        return args.system or ["."]
    try:
        with open(args.datafile) as fh:
            specs = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
    except OSError as e:
        raise ToolError(f"cannot read datafile {args.datafile}: {e.strerror}") from None
    if not specs:
        raise ToolError(f"datafile {args.datafile} lists no system")
    return specs


def run(args) -> int:
    import numpy as np

    from deepmd_md.cli.commands.freeze import _resolve_checkpoint
    from deepmd_md.infer.deep_pot import load_model_data
    from deepmd_md.serialize import load_dp
    from deepmd_md.tools import ToolError
    from deepmd_md.tools.change_bias import load_systems, new_bias, with_bias

    if not os.path.exists(args.model):
        raise ToolError(f"model not found: {args.model}")
    src = _resolve_checkpoint(args.model)
    stem, suffix = os.path.splitext(src)
    out = args.output or f"{stem}_updated{suffix}"
    out_suffix = os.path.splitext(out)[1]
    is_ckpt = suffix not in FROZEN
    if out_suffix not in FROZEN and not (is_ckpt and out_suffix == suffix):
        raise ToolError(f"cannot write {out}: use .pth, .pt2 or .dp"
                        + (f", or {suffix} for a checkpoint" if is_ckpt else ""))
    if os.path.abspath(out) == os.path.abspath(src):
        raise ToolError(f"output {out} is the input; choose another -o")
    if is_ckpt:  # keep optimizer moments and training state when writing a checkpoint back
        data, trees, extra = load_dp(src, with_extra=True)
    else:
        data, trees, extra = load_model_data(src), {}, {}
    tmap = data["config"]["type_map"]
    systems = [] if args.bias_value else load_systems(_systems(args), tmap, args.numb_batch)
    fit = new_bias(data, args.mode, systems, args.bias_value, model_path=src,
                   backend=args.backend)
    new = with_bias(data, fit["new"])
    _write(new, out, out_suffix in FROZEN, trees, extra)
    fmt = np.array2string
    how = "given values" if args.bias_value else f"{args.mode} mode, {fit['nframes']} frames"
    print(f"energy bias of {tmap} ({how}): {fmt(fit['old'], precision=8)} -> "
          f"{fmt(fit['new'], precision=8)} eV")
    if fit["rmse_per_atom"] is not None:
        print(f"energy RMSE per atom on these data after the change: "
              f"{fit['rmse_per_atom']:.6e} eV")
    print(f"wrote {out}")
    return 0


def _write(data: dict, out: str, frozen: bool, trees: dict, extra: dict) -> None:
    """A frozen format by its suffix (deepmd_md.formats); a checkpoint with its training state.
    Both writers are atomic (temporary name, then rename)."""
    from deepmd_md.formats import format_of, write_model
    from deepmd_md.serialize import save_dp

    if not frozen:
        save_dp(data, out, extra_trees=trees, extra=extra)
        return
    fmt = format_of(out)
    if fmt is not None and fmt.slow:
        print(f"writing {out} ({fmt.slow}) ...", flush=True)
    write_model(data, out)

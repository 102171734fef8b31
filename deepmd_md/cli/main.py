"""`dpmd`: train, freeze, test, show, neighbor-stat, export-gromacs, doc-train-input.

Errors caused by input (DPMDError) print one line `dpmd: error: ...` and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from deepmd_md.errors import DPMDError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpmd", description="Deep potentials: train, freeze, test.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a DeePMD-kit input.json")
    t.add_argument("input", help="input.json (DeePMD-kit v3 schema)")
    t.add_argument("--backend", "-b", default="torch", choices=("torch", "jax"))
    g = t.add_mutually_exclusive_group()
    g.add_argument("--restart", metavar="CKPT", help="continue the run saved in CKPT")
    g.add_argument("--init-model", metavar="MODEL", help="start from MODEL's weights, new run")
    t.add_argument("--numb-steps", type=int, help="override training/numb_steps")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    f = sub.add_parser("freeze", help="freeze a checkpoint to .pth (TorchScript), .pt2 or .dp")
    f.add_argument("-c", "--checkpoint", default=".",
                   help="checkpoint (or .dp/.pth model) file, or a folder whose `checkpoint` "
                   "file names the latest")
    f.add_argument("-o", "--output", default="frozen_model.pth")

    s = sub.add_parser("test", help="energy/force/virial errors of a model on systems")
    s.add_argument("-m", "--model", required=True)
    s.add_argument("-s", "--system", required=True, nargs="+", help="systems or folders of them")
    s.add_argument("-n", "--numb-test", type=int, default=0, help="frames per system (0 = all)")
    s.add_argument("--json", action="store_true", help="print results as JSON")
    s.add_argument("--backend", "-b", default=None, choices=("torch", "jax", "numpy"))

    w = sub.add_parser("show", help="print a model's type_map, descriptor, fitting and sizes")
    w.add_argument("model")

    n = sub.add_parser("neighbor-stat", help="min distance and max neighbors per type")
    n.add_argument("-s", "--system", required=True, nargs="+")
    n.add_argument("-r", "--rcut", type=float, required=True)
    n.add_argument("-t", "--type-map", nargs="+", required=True)

    x = sub.add_parser("export-gromacs", help="write a TorchScript .pt for GROMACS NNPot and print its "
                       "nnpot-* MDP lines (docs/gromacs.md)")
    x.add_argument("model", help="frozen model (.pth, .pt2, .dp) or checkpoint")
    x.add_argument("-o", "--output", default="model.pt", help="the .pt GROMACS loads (nnpot-modelfile)")
    x.add_argument("-n", "--index", help="index file (.ndx) holding --group")
    x.add_argument("-g", "--group", help="index group of the NN atoms (nnpot-input-group)")
    x.add_argument("-p", "--topology", help="topology (.top): the group's elements (atomtypes at.num) "
                   "and charges")
    x.add_argument("-c", "--structure", help="structure (.gro): the group's elements from atom names, "
                   "when no --topology")
    bc = x.add_mutually_exclusive_group()
    bc.add_argument("--no-pbc", action="store_true", help="open boundaries (pbc = no): inputs "
                    "atom-positions, atom-numbers only")
    bc.add_argument("--pair-list", action="store_true", help="take GROMACS' pair list "
                    "(atom-pairs, pair-shifts, nnpot-pair-cutoff) instead of the box")
    x.add_argument("--pair-buffer", type=float, default=0.1, help="nm added to rcut for "
                   "nnpot-pair-cutoff (default 0.1)")
    x.add_argument("--fparam", type=float, nargs="+", help="frame parameters of the model")
    x.add_argument("--aparam", type=float, nargs="+", help="atomic parameters, the same for every atom")

    sub.add_parser("doc-train-input", help="print the input.json reference (markdown)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # torch.export's pytree pickling warns about its own deprecated LeafSpec on every freeze to .pt2:
    # noise for users, nothing they can act on
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    try:
        from deepmd_md.cli import commands

        return getattr(commands, args.command.replace("-", "_"))(args) or 0
    except DPMDError as e:
        print(f"dpmd: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dpmd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`dpmd export-gromacs`: a TorchScript .pt for GROMACS NNPot and its MDP lines (docs/gromacs.md)."""

from __future__ import annotations

NAME = "export-gromacs"
HELP = ("write a TorchScript .pt for GROMACS NNPot and print its nnpot-* MDP lines "
        "(docs/gromacs.md)")
ORDER = 60


def add_arguments(p) -> None:
    p.add_argument("model", help="frozen model (.pth, .pt2, .dp) or checkpoint")
    p.add_argument("-o", "--output", default="model.pt", help="the .pt GROMACS loads (nnpot-modelfile)")
    p.add_argument("-n", "--index", help="index file (.ndx) holding --group")
    p.add_argument("-g", "--group", help="index group of the NN atoms (nnpot-input-group)")
    p.add_argument("-p", "--topology", help="topology (.top): the group's elements (atomtypes at.num) "
                   "and charges")
    p.add_argument("-c", "--structure", help="structure (.gro): the group's elements from atom names, "
                   "when no --topology")
    bc = p.add_mutually_exclusive_group()
    bc.add_argument("--no-pbc", action="store_true", help="open boundaries (pbc = no): inputs "
                    "atom-positions, atom-numbers only")
    bc.add_argument("--pair-list", action="store_true", help="take GROMACS' pair list "
                    "(atom-pairs, pair-shifts, nnpot-pair-cutoff) instead of the box")
    p.add_argument("--pair-buffer", type=float, default=0.1, help="nm added to rcut for "
                   "nnpot-pair-cutoff (default 0.1)")
    p.add_argument("--fparam", type=float, nargs="+", help="frame parameters of the model")
    p.add_argument("--aparam", type=float, nargs="+", help="atomic parameters, the same for every atom")



def run(args) -> int:
    from deepmd_md.gromacs import cli

    return cli(args)

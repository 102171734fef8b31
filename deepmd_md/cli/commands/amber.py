"""`dpmd amber -m MODEL [sander arguments ...]`: sander ML/MM with the model as its external QM
program (docs/amber.md)."""

from __future__ import annotations

import argparse

NAME = "amber"
HELP = ("run AMBER sander with MODEL as the QM region's potential (qm_theory='EXTERN'; "
        "docs/amber.md): dpmd amber -m MODEL -O -i mdin -p prmtop -c inpcrd ...")
ORDER = 65

# options of ours that take values; everything from the first other word on is sander's
_OURS = {"-m": 1, "--model": 1, "--sander": 1, "--threads": 1, "--trace": 1, "--stats": 0,
         "--fparam": "+", "--aparam": "+", "-h": 0, "--help": 0}


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _SanderTail(argparse.ArgumentParser):
    """Parses our options up to the first word that is not one, and gives sander the rest
    untouched (argparse's REMAINDER refuses a rest that starts with an option like -O)."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(args or [])
        k = 0
        while k < len(args):
            opt, eq, _ = args[k].partition("=")
            if opt not in _OURS:
                break
            k += 1
            if eq or _OURS[opt] == 0:
                continue
            if _OURS[opt] == "+":
                while k < len(args) and _number(args[k]):
                    k += 1
            else:
                k += _OURS[opt]
        ns, extra = super().parse_known_args(args[:k], namespace)
        ns.sander_args = list(extra) + args[k:]
        return ns, []


def add_arguments(p) -> None:
    p.__class__ = _SanderTail
    p.usage = "dpmd amber -m MODEL [options] [sander arguments ...]"
    p.epilog = ("Every argument after dpmd's own options goes to sander unchanged, e.g. "
                "dpmd amber -m model.pth -O -i md.in -o md.out -p water.prmtop -c water.inpcrd")
    p.add_argument("-m", "--model", required=True,
                   help="frozen model (.pth, .pt2; a .dp or checkpoint is frozen to .pth first) for "
                   "the QM region; its type_map names the elements it takes")
    p.add_argument("--sander", help="the sander executable (default: `sander` on PATH)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads of the model server (default: OMP_NUM_THREADS, else 1)")
    p.add_argument("--fparam", type=float, nargs="+", help="frame parameters of the model")
    p.add_argument("--aparam", type=float, nargs="+",
                   help="atomic parameters of the model, the same for every QM atom")
    p.add_argument("--trace", help="write every QM-region evaluation to this file, one JSON line "
                   "each: elements, coordinates (A), energy (eV), forces (eV/A)")
    p.add_argument("--stats", action="store_true",
                   help="print the model server's time per step (model, whole request) at the end")
    p.set_defaults(sander_args=[])


def run(args) -> int:
    from deepmd_md.amber import run_sander

    return run_sander(args.model, args.sander_args, sander=args.sander, fparam=args.fparam,
                      aparam=args.aparam, threads=args.threads, trace=args.trace, stats=args.stats)

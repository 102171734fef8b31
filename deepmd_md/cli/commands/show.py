"""`dpmd show`: a model's type map, descriptor, fitting and sizes."""

from __future__ import annotations

import json

import numpy as np

from deepmd_md.errors import ModelFileError

NAME = "show"
HELP = "print a model's type_map, descriptor, fitting and sizes"
ORDER = 40


def add_arguments(p) -> None:
    p.add_argument("model", help="frozen model (.pth, .pt2, .dp) or checkpoint")



def run(args) -> int:
    from deepmd_md.compress import describe
    from deepmd_md.infer.deep_pot import _pt2_load, load_model_data
    from deepmd_md.model.model import message_passing_of, mixed_of, rcut_of, sel_of
    from deepmd_md.tree import flatten

    try:
        data = load_model_data(args.model)
    except ModelFileError:
        if not args.model.endswith(".pt2"):
            raise
        # a package frozen before .pt2 carried its weights: its config is still in the metadata
        data = {"config": _pt2_load(args.model)[1], "params": None}
    cfg = data["config"]
    print(f"model: {args.model}")
    print(f"type_map: {cfg['type_map']}")
    print(f"descriptor: {json.dumps(cfg['descriptor'])}")
    print(f"fitting_net: {json.dumps(cfg['fitting_net'])}")
    nl = "one list of any type" if mixed_of(cfg) else "per-type blocks"
    print(f"rcut: {rcut_of(cfg)}  sel: {sel_of(cfg)} ({nl})  message passing: "
          f"{'yes' if message_passing_of(cfg) else 'no'}")
    print(describe(cfg))
    if data["params"] is not None:
        nparam = sum(int(np.asarray(v).size) for v in flatten(data["params"]).values())
        print(f"parameters: {nparam}")
    else:
        print("parameters: not in this file (compiled code only; freeze it again to include them)")
    return 0

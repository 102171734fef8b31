"""`dpmd model-devi`: model deviation of an ensemble on the frames of systems, in DeePMD-kit
3.2's model_devi.out layout (the statistics of the LAMMPS plugin's out_file)."""

from __future__ import annotations

from deepmd_md.backends import names

NAME = "model-devi"
HELP = "model deviation (force/virial/energy spread) of several models on systems"
ORDER = 35


def add_arguments(p) -> None:
    p.add_argument("-m", "--models", required=True, nargs="+",
                   help="two or more models (.pth, .pt2, .dp or checkpoints) with the same "
                   "type_map")
    p.add_argument("-s", "--system", nargs="+", default=["."],
                   help="systems or folders searched for them (default: the current folder)")
    p.add_argument("-o", "--output", default="model_devi.out",
                   help="output file (default: model_devi.out)")
    p.add_argument("-f", "--frequency", type=int, default=1,
                   help="steps between frames of the trajectory: frame i is written as step "
                   "i*FREQ (default: 1)")
    p.add_argument("--atomic", action="store_true",
                   help="also write each atom's force deviation (one column per atom)")
    p.add_argument("--relative", type=float, default=None, metavar="LEVEL",
                   help="relative force deviation: divide by |mean force| + LEVEL")
    p.add_argument("--relative_v", "--relative-v", dest="relative_v", type=float, default=None,
                   metavar="LEVEL",
                   help="relative virial deviation: divide by |mean virial/natoms| + LEVEL")
    p.add_argument("--backend", "-b", default=None, choices=names(),
                   help="framework to evaluate .dp/checkpoints with (default: torch)")


def run(args) -> int:
    import numpy as np

    from deepmd_md.data.system import find_systems, load_system, remap_types
    from deepmd_md.infer import DeepPot
    from deepmd_md.tools import ToolError, staged_outputs
    from deepmd_md.tools.model_devi import deviation, format_block

    if len(args.models) < 2:
        raise ToolError(f"model-devi needs at least two models (got {len(args.models)}): "
                        "-m m1.pth m2.pth ...")
    if args.frequency < 1:
        raise ToolError(f"-f/--frequency must be a positive number of steps, not "
                        f"{args.frequency}")
    pots = [DeepPot(m, args.backend) for m in args.models]
    tmap = pots[0].get_type_map()
    for m, dp in zip(args.models[1:], pots[1:], strict=True):
        if dp.get_type_map() != tmap:
            raise ToolError(f"models have different type maps: {args.models[0]} {tmap}, {m} "
                            f"{dp.get_type_map()}; model deviation compares models of the same "
                            "elements in the same order")
    blocks = []
    for spec in args.system:
        for path in find_systems(spec):
            s = remap_types(load_system(path), tmap)
            x = s.coord.reshape(s.nframes, -1)
            outs = [dp.eval(x, s.box, s.atype) for dp in pots]
            devi = deviation(*(np.stack([o[i] for o in outs]) for i in range(3)),
                             relative=args.relative, relative_v=args.relative_v)
            steps = np.arange(s.nframes) * args.frequency
            blocks.append(format_block(path, steps, devi, args.atomic))
            print(f"{path}: {s.nframes} frames, max devi_f {devi['max_devi_f'].max():.3e}")
    with staged_outputs() as stage, open(stage(args.output), "w") as fh:
        fh.write("".join(blocks))
    print(f"wrote {args.output}")
    return 0

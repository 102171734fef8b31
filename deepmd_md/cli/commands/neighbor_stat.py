"""`dpmd neighbor-stat`: minimum distance and maximum neighbors per type."""

from __future__ import annotations

NAME = "neighbor-stat"
HELP = "min distance and max neighbors per type"
ORDER = 50


def add_arguments(p) -> None:
    p.add_argument("-s", "--system", required=True, nargs="+", help="systems or folders of them")
    p.add_argument("-r", "--rcut", type=float, required=True, help="cutoff radius (Å)")
    p.add_argument("-t", "--type-map", nargs="+", required=True, help="element names, in type order")



def run(args) -> int:
    from deepmd_md.data.neighbor import neighbor_stat as stat
    from deepmd_md.data.system import find_systems

    paths = [p for spec in args.system for p in find_systems(spec)]
    min_dist, max_nbor = stat(paths, args.rcut, args.type_map)
    print(f"min_nbor_dist: {min_dist:.6f}")
    print(f"max_nbor_size: {[int(x) for x in max_nbor]}  (type_map {args.type_map})")
    return 0

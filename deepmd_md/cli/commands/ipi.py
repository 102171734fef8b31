"""`dpmd ipi`: an i-PI socket client (DeePMD-kit's `dp_ipi`), its input.json as dp_ipi's."""

from __future__ import annotations

NAME = "ipi"
HELP = "serve energies, forces and virials to an i-PI server (path-integral / classical MD)"
ORDER = 65


def add_arguments(p) -> None:
    p.add_argument("input", help="dp_ipi-style JSON: graph_file, coord_file, atom_type, "
                   "use_unix, host, port, verbose (see docs/ipi.md)")
    p.add_argument("--wait", type=float, default=10.0,
                   help="seconds to keep retrying the connection while i-PI starts "
                   "(default 10; 0: try once)")


def run(args) -> int:
    from deepmd_md.ipi import run as run_client

    return run_client(args.input, wait=args.wait)

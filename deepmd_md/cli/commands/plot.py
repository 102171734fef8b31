"""`dpmd plot`: the learning curve of lcurve.out, or parity plots of `dpmd test -d` detail
files, as a PNG (needs matplotlib: pip install deepmd-md[plot])."""

from __future__ import annotations

NAME = "plot"
HELP = "plot lcurve.out (learning curve) or detail files (parity) to a PNG"
ORDER = 60


def add_arguments(p) -> None:
    p.add_argument("lcurve", nargs="*", default=None,
                   help="lcurve.out file(s) to plot (default: lcurve.out unless -d is given)")
    p.add_argument("-d", "--detail-file", default=None, metavar="PREFIX",
                   help="parity plot of PREFIX.e_peratom.out, .f.out and .v_peratom.out "
                   "(from dpmd test -d PREFIX) instead of a learning curve")
    p.add_argument("-o", "--output", default=None,
                   help="PNG to write (default: lcurve.png, or PREFIX.parity.png with -d)")
    p.add_argument("--size", default=None, metavar="WxH",
                   help="image size in pixels (default: 1200x800 for lcurve, 500x500 per "
                   "panel for -d)")
    p.add_argument("--dpi", type=int, default=100, help="dots per inch (default: 100)")


def _size(text: str | None, default):
    from deepmd_md.tools import ToolError

    if text is None:
        return default
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ToolError(f"--size {text}: give WIDTHxHEIGHT in pixels, e.g. 1200x800") from None
    if w < 100 or h < 100:
        raise ToolError(f"--size {text}: at least 100x100 pixels")
    return w, h


def run(args) -> int:
    from deepmd_md.tools import ToolError
    from deepmd_md.tools.plot import plot_lcurve, plot_parity

    if args.dpi < 10:
        raise ToolError(f"--dpi {args.dpi}: give at least 10")
    if args.detail_file:
        if args.lcurve:
            raise ToolError("give either lcurve files or -d PREFIX, not both")
        out = args.output or f"{args.detail_file}.parity.png"
        plot_parity(args.detail_file, out, _size(args.size, None), args.dpi)
    else:
        out = args.output or "lcurve.png"
        plot_lcurve(args.lcurve or ["lcurve.out"], out, _size(args.size, (1200, 800)),
                    args.dpi)
    print(f"wrote {out}")
    return 0

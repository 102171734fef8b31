"""`dpmd`: the command line. Subcommands live one per module in deepmd_md/cli/commands/.

Errors caused by input (DPMDError) print one line `dpmd: error: ...` and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from deepmd_md import __version__
from deepmd_md.errors import DPMDError


def _parser() -> tuple[argparse.ArgumentParser, dict]:
    from deepmd_md.cli.registry import command_modules

    p = argparse.ArgumentParser(prog="dpmd", description="Deep potentials: train, freeze, test, "
                                "and run them in MD engines.")
    p.add_argument("--version", action="version", version=f"dpmd (deepmd_md) {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runs = {}
    for mod in command_modules():
        mod.add_arguments(sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP))
        runs[mod.NAME] = mod.run
    return p, runs


def main(argv: list[str] | None = None) -> int:
    parser, runs = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # torch.export's pytree pickling warns about its own deprecated LeafSpec on every freeze to .pt2:
    # noise for users, nothing they can act on
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    try:
        return runs[args.command](args) or 0
    except DPMDError as e:
        print(f"dpmd: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dpmd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

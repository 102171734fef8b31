"""The `dpmd` subcommands: one module each in `deepmd_md/cli/commands/`, found by name.

A command module defines
    NAME: str                      the subcommand (`model-devi`)
    HELP: str                      one line for `dpmd -h`
    add_arguments(p) -> None       its argparse options (every option with help text)
    run(args) -> int               the work; raise DPMDError subclasses for bad input
and imports heavy packages (frameworks, matplotlib) inside `run` only, so `dpmd -h` stays fast.
Adding a command = adding a file; nothing else lists them.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from deepmd_md.cli import commands as _pkg


def command_modules() -> list[ModuleType]:
    """Every command module, in the order `dpmd -h` lists them (module ORDER, then name)."""
    mods = [importlib.import_module(f"{_pkg.__name__}.{m.name}")
            for m in pkgutil.iter_modules(_pkg.__path__) if not m.name.startswith("_")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))

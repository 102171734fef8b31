"""One module per `dpmd` subcommand (see deepmd_md/cli/registry.py for the interface)."""

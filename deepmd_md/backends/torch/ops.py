"""dpmd::ghost_exchange, the message-passing op of frozen PyTorch models (C++, in
libdpmd_torch_ops.so; contract in docs/core_contract.md).

A frozen message-passing model calls the op between its layers instead of gathering by
`mapping` itself, so that an engine can put its own exchange there (LAMMPS: MPI forward and
reverse communication of feature rows). handle 0 means "in this process, by mapping"; the C++
core passes the address of a dpmd_exchange.
"""

from __future__ import annotations

import torch

OPS_LIB = "libdpmd_torch_ops.so"
_loaded = False


def load_ops(required: bool = True) -> None:
    """Register dpmd::ghost_exchange in this process (idempotent). Without the library: a
    clear error when required, else nothing (models that pass no messages load without it)."""
    global _loaded
    if _loaded:
        return
    if not hasattr(torch.ops.dpmd, "ghost_exchange"):
        from deepmd_md.lmp import native_lib

        path = native_lib(OPS_LIB)
        if path is None:
            if not required:
                return
            raise RuntimeError(f"{OPS_LIB} (the message-passing op of frozen PyTorch models) is not "
                               "built: reinstall deepmd_md with its C++ parts (`make install`)")
        torch.ops.load_library(str(path))
    _loaded = True


class OpExchange:
    """The comm of model/comm.py as the frozen graph's op: ghost rows by `handle`'s exchange.

    mapping: [nf, nall] owners (used when handle is 0); handle: [1] int64."""

    def __init__(self, mapping, handle):
        load_ops()
        self.mapping, self.handle = mapping, handle

    def __call__(self, node_local):
        """[nf, nloc, *f] -> [nf, nall, *f]"""
        return torch.ops.dpmd.ghost_exchange(node_local, self.mapping, self.handle)

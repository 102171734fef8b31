"""The ghost-exchange seam of message-passing descriptors.

A message-passing descriptor is a sequence of layers; each layer takes node features of local
AND ghost atoms ([nf, nall, d]) and returns node features of local atoms ([nf, nloc, d]).
Between layers the descriptor calls `comm(g_local)` to get the extended rows back:

- in one process (training, Python inference, one LAMMPS rank) a ghost's row is its owner's
  row: a gather by `mapping` (`MappingExchange`); autodiff of the gather sums ghost gradients
  back onto the owners, which is exactly the reverse exchange;
- in a frozen model it is the op dpmd::ghost_exchange (backends/torch/ops.py), which an engine
  answers across MPI ranks: forward exchange of ghost rows between layers, reverse sum of their
  gradients on the way back (docs/core_contract.md).

No descriptor knows which one it got.
"""

from __future__ import annotations

from deepmd_md.model.env import gather_rows


class MappingExchange:
    """In-process exchange: mapping [nf, nall] (owner index < nloc of each extended atom)."""

    def __init__(self, mapping):
        self.mapping = mapping

    def __call__(self, node_local):
        """node_local: [nf, nloc, *f] -> [nf, nall, *f] (ghost rows copy their owners')."""
        return gather_rows(node_local, self.mapping)


def require_comm(comm, name: str):
    if comm is None:
        raise ValueError(f"descriptor {name} passes messages between atoms and needs a ghost "
                         "exchange: call the model with `mapping` (forward_lower) or a comm")
    return comm

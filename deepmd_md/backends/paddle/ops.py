"""deepmd_md's Paddle custom operators (C++, libdpmd_paddle_ops.so: core/backends/paddle/):

- dpmd_ghost_exchange(g [nf, nloc, *f], mapping [nf, nall], handle [1] i64) -> [nf, nall, *f],
  the message-passing op (docs/core_contract.md); its grad op is the reverse exchange. handle 0
  means "in this process, by mapping"; the C++ core passes the address of a dpmd_exchange, so a
  frozen `.json` runs on any number of LAMMPS ranks;
- dpmd_tabulate / dpmd_tabulate_fusion (+ grad ops), the kernels of compressed models
  (kernels/tabulate.h), registered with deepmd_md/kernels/tabulate.py's KERNELS.

Each function takes eager Paddle tensors or the tracer's Duals (backends/paddle/trace.py): on a
Dual the NumPy example side runs the array-API reference and the static side records the op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepmd_md.backends.paddle import import_paddle

paddle = import_paddle()

OPS_LIB = "libdpmd_paddle_ops.so"
# the standalone build of docs/backend_paddle.md, when the installed package has no library
_DEV_LIB = Path(__file__).resolve().parents[3] / "build" / "paddle_ops" / OPS_LIB
_state: dict = {}


def ops_path() -> Path | None:
    from deepmd_md.lmp import native_lib

    path = native_lib(OPS_LIB)
    if path is None and _DEV_LIB.is_file():
        path = _DEV_LIB
    return path


def load_ops(required: bool = True) -> bool:
    """Register the operators in this process (idempotent). Without the library: a clear error
    when required, else False (programs without the ops freeze and run without it)."""
    if "loaded" not in _state:
        path = ops_path()
        if path is not None:
            from paddle.utils.cpp_extension.extension_utils import (
                load_op_meta_info_and_register_op,
            )

            load_op_meta_info_and_register_op(str(path))
        _state["loaded"] = path is not None
    if required and not _state["loaded"]:
        raise RuntimeError(f"{OPS_LIB} (deepmd_md's Paddle operators: message passing across "
                           "ranks, compressed models) is not built: reinstall deepmd_md with its "
                           "C++ parts (`make install`)")
    return _state["loaded"]


def _run(name: str, *args):
    """One output of custom op `name` (eager tensors or static Values)."""
    return paddle._C_ops._run_custom_op(name, *args)[0]


def _is_dual(x) -> bool:
    from deepmd_md.backends.paddle.trace import is_dual

    return is_dual(x)


def _side(tree, side: str):
    from deepmd_md.backends.paddle.trace import unwrap

    return unwrap(tree, side)


def _call(name: str, reference, *args):
    """Op `name` on tensors, or on Duals: `reference` (NumPy) on the example side."""
    if not any(_is_dual(a) for a in args):
        return _run(name, *args)
    from deepmd_md.backends.paddle.trace import Dual

    return Dual(reference(*_side(args, "e")), _run(name, *_side(args, "s")))


# -- ghost exchange ---------------------------------------------------------------------------------


class OpExchange:
    """The comm of model/comm.py as dpmd_ghost_exchange. mapping [nf, nall] i64, handle [1] i64
    (tensors or Duals). `widths` lists the columns of each call (the metadata's exchange.widths)."""

    def __init__(self, mapping, handle):
        load_ops()
        self.mapping, self.handle = mapping, handle
        self.widths: list[int] = []

    def __call__(self, node_local):
        """[nf, nloc, *f] -> [nf, nall, *f]"""
        self.widths.append(int(np.prod([int(n) for n in node_local.shape[2:]])))
        return _call("dpmd_ghost_exchange", _gather, node_local, self.mapping, self.handle)


def _gather(g, mapping, handle):
    """NumPy reference of the exchange in one process: ghost rows are their owners'."""
    return np.take_along_axis(g, mapping.reshape(*mapping.shape, *[1] * (g.ndim - 2)), axis=1)


# -- tabulated embedding nets (registry entries of deepmd_md/kernels/tabulate.py) --------------------


def accepts_tabulate(x) -> bool:
    """Registry predicate: Paddle tensors and traced Duals, when the ops are built."""
    return (isinstance(x, paddle.Tensor) or _is_dual(x)) and load_ops(required=False)


def _table(tab: dict):
    return tuple(t if isinstance(t, paddle.Tensor) or _is_dual(t) else paddle.to_tensor(t)
                 for t in (tab["coef"], tab["grid"], tab["net"]))


def tabulate(tab: dict, net: dict, activation: str, s):
    """dpmd_tabulate: G [*, M] at s [*] (net and activation are in tab["net"])."""
    from deepmd_md.kernels import tabulate as ref

    def reference(coef, grid, flat, s_e):
        return np.asarray(ref.tabulate({"coef": coef, "grid": grid, "net": flat},
                                       _side(net, "e"), activation, s_e))

    return _call("dpmd_tabulate", reference, *_table(tab), s)


def fusion(tab: dict, net: dict, activation: str, s, em):
    """dpmd_tabulate_fusion: sum_j G(s[b, j])^T em[b, j] [B, M, C] for s [B, J], em [B, J, C]."""
    from deepmd_md.kernels import tabulate as ref

    def reference(coef, grid, flat, s_e, em_e):
        return np.asarray(ref.fusion({"coef": coef, "grid": grid, "net": flat},
                                     _side(net, "e"), activation, s_e, em_e))

    return _call("dpmd_tabulate_fusion", reference, *_table(tab), s, em)

"""DpmdGhostExchange, the message-passing op of frozen TensorFlow models (C, libdpmd_tf_ops.so;
contract in docs/core_contract.md and docs/backend_tensorflow.md).

A frozen message-passing model calls it between layers instead of gathering by `mapping`, so
that an engine can put its own exchange there (LAMMPS: MPI forward/reverse communication of
feature rows). handle 0 means "in this process, by mapping"; the C++ core passes the address of
a dpmd_exchange. The gradient of the op is DpmdGhostExchangeReverse (registered here), so the
frozen graph's tf.gradients holds the reverse exchange.

The same library holds the ops of compressed models, DpmdTabulate and DpmdTabulateFusion
(core/backends/tensorflow/tabulate_op.cc, the fused C++ kernel of kernels/tabulate.cc that the
PyTorch ops call too), with their gradients DpmdTabulateGrad / DpmdTabulateFusionGrad registered
here; deepmd_md/kernels/tabulate.py dispatches TFArrays to `tabulate` and `fusion` below.
Gradients are first order: a gradient of the *Grad ops raises (never zeros).
"""

from __future__ import annotations

import os

from deepmd_md.backends.tensorflow.xp_tf import TFArray, tf

OPS_LIB = "libdpmd_tf_ops.so"
_ops = None


def load_ops():
    """The op module (tf.load_op_library), or None when libdpmd_tf_ops.so is not built.
    DEEPMD_MD_TF_OPS=/path/libdpmd_tf_ops.so loads that file instead of the installed one (a
    development build; the C++ backend always loads the one beside it)."""
    global _ops
    if _ops is None:
        from deepmd_md.lmp import native_lib

        path = os.environ.get("DEEPMD_MD_TF_OPS") or native_lib(OPS_LIB)
        if path is None:
            return None
        _ops = tf.load_op_library(str(path))
        _register_gradients()
    return _ops


def _register_gradients() -> None:
    @tf.RegisterGradient("DpmdGhostExchange")
    def _grad(op, dy):
        x, mapping, handle = op.inputs
        nloc = tf.cast(tf.shape(x)[1], tf.int64)
        dx = _ops.dpmd_ghost_exchange_reverse(dy, mapping, handle, nloc)
        dx.set_shape(x.shape)
        return [dx, None, None]

    if not has_tabulate():
        return

    @tf.RegisterGradient("DpmdTabulate")
    def _tab_grad(op, dy):
        coef, grid, net, s = op.inputs
        return [None, None, None, _ops.dpmd_tabulate_grad(coef, grid, net, s, dy)]

    @tf.RegisterGradient("DpmdTabulateFusion")
    def _fusion_grad(op, dy):
        coef, grid, net, s, em = op.inputs
        ds, dem = _ops.dpmd_tabulate_fusion_grad(coef, grid, net, s, em, dy)
        return [None, None, None, ds, dem]

    for name in ("DpmdTabulateGrad", "DpmdTabulateFusionGrad"):
        tf.RegisterGradient(name)(_no_second_order)


def _no_second_order(op, *grads):
    raise RuntimeError(f"{op.type}: second derivatives are not implemented (a compressed model is "
                       "for inference: forces and virials; train the uncompressed model)")


def has_tabulate() -> bool:
    """Whether the loaded library holds the ops of compressed models (one built before them
    does not: the model math then runs the array-API reference)."""
    return _ops is not None and hasattr(_ops, "dpmd_tabulate_fusion")


def accepts_tabulate(x) -> bool:
    """Registry predicate of deepmd_md/kernels/tabulate.py: TFArrays, when the ops are built."""
    return isinstance(x, TFArray) and load_ops() is not None and has_tabulate()


def _tensor(x):
    return x.t if isinstance(x, TFArray) else tf.convert_to_tensor(x)


def _table(tab: dict):
    return _tensor(tab["coef"]), _tensor(tab["grid"]), _tensor(tab["net"])


def tabulate(tab: dict, net: dict, activation: str, s):
    """DpmdTabulate: G [*, M] at s [*] (TFArrays; net and activation are in tab["net"])."""
    return TFArray(_ops.dpmd_tabulate(*_table(tab), s.t))


def fusion(tab: dict, net: dict, activation: str, s, em):
    """DpmdTabulateFusion: sum_j G(s[b, j])^T em[b, j] [B, M, C] for s [B, J], em [B, J, C]."""
    return TFArray(_ops.dpmd_tabulate_fusion(*_table(tab), s.t, em.t))


class OpExchange:
    """The comm of model/comm.py as the graph's op. mapping [nf, nall], handle [1] int64."""

    def __init__(self, mapping, handle):
        self.ops = load_ops()
        self.mapping, self.handle = mapping, handle

    def __call__(self, node_local):
        """TFArray [nf, nloc, *f] -> [nf, nall, *f]"""
        x = node_local.t
        y = self.ops.dpmd_ghost_exchange(x, self.mapping, self.handle)
        y.set_shape([x.shape[0], self.mapping.shape[1], *x.shape[2:]])
        return TFArray(y)

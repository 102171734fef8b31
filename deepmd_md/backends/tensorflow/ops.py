"""DpmdGhostExchange, the message-passing op of frozen TensorFlow models (C, libdpmd_tf_ops.so;
contract in docs/core_contract.md and docs/backend_tensorflow.md).

A frozen message-passing model calls it between layers instead of gathering by `mapping`, so
that an engine can put its own exchange there (LAMMPS: MPI forward/reverse communication of
feature rows). handle 0 means "in this process, by mapping"; the C++ core passes the address of
a dpmd_exchange. The gradient of the op is DpmdGhostExchangeReverse (registered here), so the
frozen graph's tf.gradients holds the reverse exchange.
"""

from __future__ import annotations

from deepmd_md.backends.tensorflow.xp_tf import TFArray, tf

OPS_LIB = "libdpmd_tf_ops.so"
_ops = None


def load_ops():
    """The op module (tf.load_op_library), or None when libdpmd_tf_ops.so is not built."""
    global _ops
    if _ops is None:
        from deepmd_md.lmp import native_lib

        path = native_lib(OPS_LIB)
        if path is None:
            return None
        _ops = tf.load_op_library(str(path))

        @tf.RegisterGradient("DpmdGhostExchange")
        def _grad(op, dy):
            x, mapping, handle = op.inputs
            nloc = tf.cast(tf.shape(x)[1], tf.int64)
            dx = _ops.dpmd_ghost_exchange_reverse(dy, mapping, handle, nloc)
            dx.set_shape(x.shape)
            return [dx, None, None]

    return _ops


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

"""Paddle adapter: tensors, paddle.grad (double backward for force training), nothing else.

The model math is the shared array-API code, run on Paddle through the namespace shim
(backends/paddle/xp.py), registered here so that model code never names Paddle.
"""

from __future__ import annotations

import numpy as np

from deepmd_md import keys
from deepmd_md.backends.common import efv_from_grads, total_energy
from deepmd_md.backends.paddle import import_paddle
from deepmd_md.backends.paddle import xp as pxp
from deepmd_md.model.model import atomic_outputs
from deepmd_md.model.xp import register_namespace
from deepmd_md.train.loss import ener_loss
from deepmd_md.train.optim import adam_update, frozen_mask
from deepmd_md.tree import flatten, tree_map

paddle = import_paddle()
register_namespace(pxp.is_array, pxp)
paddle.set_device("cpu")

name = "paddle"


def _tensor(x, trainable: bool = False):
    t = x if isinstance(x, paddle.Tensor) else paddle.to_tensor(np.asarray(x))
    if trainable and pxp.isdtype(t.dtype, "real floating"):
        t = t.detach()
        t.stop_gradient = False
    return t


def asarray(tree, trainable: bool = False):
    return tree_map(lambda x: _tensor(x, trainable), tree)


def to_numpy(tree):
    return tree_map(lambda t: t.detach().numpy() if isinstance(t, paddle.Tensor) else t, tree)


def _leaf(x):
    """A fresh leaf of x that gradients are taken with respect to."""
    t = _tensor(x).detach()
    t.stop_gradient = False
    return t


def efv(config, params, buffers, coord, prep, create_graph: bool = False) -> dict:
    """Energy, atomic energy, force and virial. coord: [nf, nat, 3] tensor."""
    coord = _leaf(coord)
    strain = _leaf(paddle.zeros([coord.shape[0], 3, 3], dtype=coord.dtype))
    e, ae = total_energy(config, params, buffers, coord, strain, prep)
    g_coord, g_strain = paddle.grad([e], [coord, strain], create_graph=create_graph)
    return efv_from_grads(ae, g_coord, g_strain)


def evaluate(config, params, buffers, coord, prep) -> dict:
    """Inference: NumPy in, NumPy out."""
    return to_numpy(efv(config, params, buffers, _tensor(coord), _prep(prep)))


def evaluate_lower(config, params, buffers, ext_coord, ext_atype, nlist, mapping=None) -> dict:
    """forward_lower on NumPy inputs: atom_energy [nf, nloc], extended_force [nf, nall, 3]."""
    ext = _leaf(ext_coord)
    ae = atomic_outputs(config, params, buffers, ext, _tensor(ext_atype), _tensor(nlist),
                        mapping=None if mapping is None else _tensor(mapping))["energy"]
    (g,) = paddle.grad([paddle.sum(ae)], [ext])
    return {keys.ATOM_ENERGY: ae.detach().numpy(), keys.EXT_FORCE: -g.numpy()}


class Trainer:
    """Holds trainable tensors and Adam moments; `step` = loss, backward, Adam (eager)."""

    def __init__(self, config: dict, params_np: dict, buffers_np: dict, compile: bool = False,
                 max_grad_norm: float | None = None):
        del compile  # eager only: paddle.jit's to_static does not cover double backward here
        self.config = config
        self.max_grad_norm = max_grad_norm
        self.params = asarray(params_np, trainable=True)
        self.buffers = asarray(buffers_np)
        mask = frozen_mask(config, params_np)
        self.frozen = mask if any(flatten(mask).values()) else None

    def loss(self, batch: dict, prep: dict, pref: dict, train: bool):
        b = asarray({k: v for k, v in batch.items() if v is not None})  # box None: nopbc
        pred = efv(self.config, self.params, self.buffers, b[keys.COORD], _prep(prep),
                   create_graph=train)
        return ener_loss(pred, b, pref)

    def step(self, batch, prep, pref, opt_state, lr: float):
        loss, metrics = self.loss(batch, prep, pref, train=True)
        leaves = _leaves(self.params)
        grads = paddle.grad([loss], leaves, allow_unused=True)
        grads = [paddle.zeros_like(x) if g is None else g for g, x in zip(grads, leaves,
                                                                          strict=True)]
        it = iter(grads)
        grad_tree = tree_map(lambda _: next(it), self.params)
        with paddle.no_grad():
            new, opt_state = adam_update(self.params, grad_tree, opt_state, lr, self.frozen,
                                         self.max_grad_norm)
        self.params = tree_map(_leaf, new)
        return opt_state, {k: float(v) for k, v in metrics.items()}

    def evaluate_metrics(self, batch, prep, pref):
        _, metrics = self.loss(batch, prep, pref, train=False)
        return {k: float(v) for k, v in metrics.items()}

    def params_numpy(self):
        return to_numpy(self.params)


def _prep(prep: dict) -> dict:
    """Arrays to tensors; the static type split stays a tuple."""
    return {k: v if k in keys.STATIC_PREP else _tensor(v) for k, v in prep.items()}


def _leaves(tree) -> list:
    out: list = []
    tree_map(out.append, tree)
    return out

"""TensorFlow adapter: TFArray leaves (xp_tf), tf.GradientTape, tf.function; no model math.

Inference and training run as tf.function graphs (one trace per input shape, like jax.jit);
the model code sees `TFArray`s through the namespace registered below.
"""

from __future__ import annotations

import numpy as np

from deepmd_md import keys
from deepmd_md.backends.common import efv_from_grads, total_energy
from deepmd_md.backends.tensorflow import xp_tf
from deepmd_md.backends.tensorflow.xp_tf import TFArray, tf
from deepmd_md.model.model import atomic_outputs
from deepmd_md.model.xp import register_namespace
from deepmd_md.train.loss import ener_loss
from deepmd_md.train.optim import adam_leaf, adam_scalars, clip_by_global_norm, frozen_mask
from deepmd_md.tree import flatten, tree_map

register_namespace(xp_tf.is_array, xp_tf)

name = "tensorflow"


def asarray(tree, trainable: bool = False):
    """NumPy leaves -> TFArray leaves (dtypes kept)."""
    return tree_map(lambda x: x if isinstance(x, TFArray) else TFArray(tf.constant(np.asarray(x))),
                    tree)


def to_numpy(tree):
    return tree_map(lambda x: x.t.numpy() if isinstance(x, TFArray) else
                    (x.numpy() if isinstance(x, tf.Tensor) else x), tree)


def _raw(tree):
    """TFArray leaves -> tf.Tensor leaves (what tf.function takes)."""
    return tree_map(lambda x: x.t if isinstance(x, TFArray) else x, tree)


def _wrap(tree):
    return tree_map(lambda x: TFArray(x) if isinstance(x, tf.Tensor | tf.Variable) else x, tree)


def efv(config, params, buffers, coord, prep) -> dict:
    """Energy, atomic energy, force, virial (TFArrays); coord: TFArray [nf, nat, 3].
    Under an outer GradientTape the result stays differentiable w.r.t. params."""
    c = coord.t
    strain = tf.zeros(tf.stack([tf.shape(c)[0], 3, 3]), dtype=c.dtype)
    with tf.GradientTape() as tape:
        tape.watch([c, strain])
        e, ae = total_energy(config, params, buffers, TFArray(c), TFArray(strain), prep)
    g_c, g_s = tape.gradient(e.t, [c, strain],
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return efv_from_grads(ae, TFArray(g_c), TFArray(g_s))


def lower(config, params, buffers, ext, atype, nlist, mapping) -> tuple:
    """forward_lower on tf.Tensors: (atom_energy [nf, nloc], extended_force [nf, nall, 3])."""
    with tf.GradientTape() as tape:
        tape.watch(ext)
        ae = atomic_outputs(config, params, buffers, TFArray(ext), TFArray(atype),
                            TFArray(nlist), mapping=None if mapping is None else TFArray(mapping),
                            )["energy"].t
        e = tf.reduce_sum(ae)
    g = tape.gradient(e, ext, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return ae, -g


_CACHE: dict = {}


def _compiled(kind: str, config):
    """One tf.function per (entry, model config); it retraces per input shape."""
    key = (kind, id(config))
    if key not in _CACHE:
        for k in [k for k in _CACHE if k[0] == kind]:
            del _CACHE[k]
        if kind == "efv":
            def fn(p, b, c, pr, static):
                out = efv(config, _wrap(p), _wrap(b), TFArray(c), {**_wrap(pr), **dict(static)})
                return _raw(out)
        else:
            def fn(p, b, ext, at, nl, mp):
                return lower(config, _wrap(p), _wrap(b), ext, at, nl, mp)
        _CACHE[key] = tf.function(fn, autograph=False, reduce_retracing=True)
    return _CACHE[key]


def evaluate(config, params, buffers, coord, prep) -> dict:
    """Inference: NumPy in, NumPy out (energy, atom_energy, force, virial)."""
    arrays, static = _split_prep(prep)
    out = _compiled("efv", config)(_raw(params), _raw(buffers), tf.constant(np.asarray(coord)),
                                   arrays, static)
    return {k: v.numpy() for k, v in out.items()}


def evaluate_lower(config, params, buffers, ext_coord, ext_atype, nlist, mapping=None) -> dict:
    """forward_lower on NumPy inputs: atom_energy [nf, nloc], extended_force [nf, nall, 3]."""
    ae, f = _compiled("lower", config)(
        _raw(params), _raw(buffers), tf.constant(np.asarray(ext_coord)),
        tf.constant(np.asarray(ext_atype, dtype=np.int64)),
        tf.constant(np.asarray(nlist, dtype=np.int64)),
        None if mapping is None else tf.constant(np.asarray(mapping, dtype=np.int64)))
    return {keys.ATOM_ENERGY: ae.numpy(), keys.EXT_FORCE: f.numpy()}


class Trainer:
    """Trainable tensors and Adam moments; `step` is one tf.function (loss, grads of the force
    loss through a nested tape, Adam), traced once per system shape."""

    def __init__(self, config: dict, params_np: dict, buffers_np: dict, compile: bool = True,
                 max_grad_norm: float | None = None):
        del compile  # always a tf.function
        self.config = config
        self.params = asarray(params_np)
        self.buffers = asarray(buffers_np)
        mask = frozen_mask(config, params_np)
        fz = list(flatten(mask).values())
        frozen = fz if any(fz) else None
        buffers = self.buffers

        def loss_fn(params, batch, prep, pref):
            pred = efv(config, _wrap(params), buffers, TFArray(batch[keys.COORD]), prep)
            return ener_loss(pred, _wrap(batch), _wrap(pref))

        def step(leaves, m, v, batch, prep, pref, lr_c1, c2, static):
            prep = {**_wrap(prep), **dict(static)}
            with tf.GradientTape() as tape:
                tape.watch(leaves)
                params = _unflat(self._struct, leaves)
                loss, metrics = loss_fn(params, batch, prep, pref)
            grads = tape.gradient(loss.t, leaves,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads = [g.t for g in clip_by_global_norm([TFArray(g) for g in grads],
                                                      max_grad_norm, frozen)]
            new_p, new_m, new_v = [], [], []
            for i, (p, g, mi, vi) in enumerate(zip(leaves, grads, m, v, strict=True)):
                if frozen is not None and frozen[i]:
                    new_p.append(p), new_m.append(mi), new_v.append(vi)
                    continue
                a, b, c = adam_leaf(TFArray(p), TFArray(g), TFArray(mi), TFArray(vi),
                                    TFArray(lr_c1), TFArray(c2))
                new_p.append(a.t), new_m.append(b.t), new_v.append(c.t)
            return new_p, new_m, new_v, _raw(metrics)

        def evaluate(leaves, batch, prep, pref, static):
            prep = {**_wrap(prep), **dict(static)}
            return _raw(loss_fn(_unflat(self._struct, leaves), batch, prep, pref)[1])

        self._struct = params_np
        self._step = tf.function(step, autograph=False, reduce_retracing=True)
        self._eval = tf.function(evaluate, autograph=False, reduce_retracing=True)

    def step(self, batch, prep, pref, opt_state, lr: float):
        lr_c1, c2 = adam_scalars(opt_state["t"] + 1, lr)
        arrays, static = _split_prep(prep)
        p, m, v, metrics = self._step(
            _leaves(self.params), _leaves(opt_state["m"]), _leaves(opt_state["v"]),
            _batch(batch), arrays, _f(pref), tf.constant(lr_c1, tf.float64),
            tf.constant(c2, tf.float64), static)
        self.params = _unflat(self.params, [TFArray(x) for x in p])
        opt_state = {"m": _unflat(opt_state["m"], [TFArray(x) for x in m]),
                     "v": _unflat(opt_state["v"], [TFArray(x) for x in v]),
                     "t": opt_state["t"] + 1}
        return opt_state, {k: float(x) for k, x in metrics.items()}

    def evaluate_metrics(self, batch, prep, pref):
        arrays, static = _split_prep(prep)
        m = self._eval(_leaves(self.params), _batch(batch), arrays, _f(pref), static)
        return {k: float(x) for k, x in m.items()}

    def params_numpy(self):
        return to_numpy(self.params)


def _leaves(tree) -> list:
    out: list = []
    tree_map(out.append, tree)
    return [x.t if isinstance(x, TFArray) else x for x in out]


def _unflat(tree, leaves):
    it = iter(leaves)
    return tree_map(lambda _: _as_arr(next(it)), tree)


def _as_arr(x):
    return x if isinstance(x, TFArray) else TFArray(x)


def _split_prep(prep: dict):
    """(arrays, static): static = ((key, tuple), ...), compile-time constants."""
    arrays = {k: tf.constant(np.asarray(v)) for k, v in prep.items()
              if k not in keys.STATIC_PREP}
    return arrays, tuple((k, prep[k]) for k in keys.STATIC_PREP if k in prep)


_BATCH_KEYS = (keys.COORD, keys.LABEL_ENERGY, keys.LABEL_FORCE, keys.LABEL_VIRIAL,
               keys.FIND_VIRIAL)


def _batch(batch: dict) -> dict:
    return {k: tf.constant(np.asarray(v)) for k, v in batch.items()
            if v is not None and k in _BATCH_KEYS}


def _f(pref: dict) -> dict:
    return {k: tf.constant(v, tf.float64) for k, v in pref.items()}

"""JAX adapter: jnp arrays, jax.grad and jax.jit (one compile per system shape)."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)  # fp64 models need it; fp32 models stay fp32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from deepmd_md import keys  # noqa: E402
from deepmd_md.backends.common import efv_from_grads, total_energy  # noqa: E402
from deepmd_md.backends.jax.savedmodel import bucket  # noqa: E402
from deepmd_md.model.model import atomic_outputs  # noqa: E402
from deepmd_md.train.loss import ener_loss  # noqa: E402
from deepmd_md.train.optim import adam_update, frozen_mask  # noqa: E402
from deepmd_md.tree import flatten, tree_map  # noqa: E402

name = "jax"


def asarray(tree, trainable: bool = False):
    return tree_map(lambda x: jnp.asarray(np.asarray(x)), tree)


def to_numpy(tree):
    return tree_map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, tree)


def efv(config, params, buffers, coord, prep) -> dict:
    """Energy, atomic energy, force, virial; differentiable w.r.t. params (for training)."""
    strain = jnp.zeros((coord.shape[0], 3, 3), dtype=coord.dtype)

    def etot(c, s):
        return total_energy(config, params, buffers, c, s, prep)

    (_, ae), (g_c, g_s) = jax.value_and_grad(etot, argnums=(0, 1), has_aux=True)(coord, strain)
    return efv_from_grads(ae, g_c, g_s)


_EVAL_CACHE: dict = {}


def evaluate(config, params, buffers, coord, prep) -> dict:
    """Inference (jit-compiled, cached per model config): NumPy in, NumPy out."""
    key = id(config)
    if key not in _EVAL_CACHE:
        _EVAL_CACHE.clear()
        _EVAL_CACHE[key] = jax.jit(lambda p, b, c, pr: efv(config, p, b, c, pr))
    out = _EVAL_CACHE[key](params, buffers, jnp.asarray(coord), asarray(prep))
    return to_numpy(out)


_LOWER_CACHE: dict = {}


def evaluate_lower(config, params, buffers, ext_coord, ext_atype, nlist, mapping=None) -> dict:
    """forward_lower on NumPy inputs: atom_energy [nf, nloc], extended_force [nf, nall, 3]."""
    key = id(config)
    if key not in _LOWER_CACHE:
        _LOWER_CACHE.clear()

        def lower(p, b, ext, at, nl, mp):
            def etot(x):
                ae = atomic_outputs(config, p, b, x, at, nl, mapping=mp)["energy"]
                return jnp.sum(ae), ae

            (_, ae), g = jax.value_and_grad(etot, has_aux=True)(ext)
            return ae, -g

        _LOWER_CACHE[key] = jax.jit(lower)
    # jit compiles once per shape, and the ghost count changes with every frame: pad the
    # ghosts to the SavedModel's size buckets (one compile per bucket, not per frame).
    # Padded ghosts are listed by nobody, so they change nothing (force 0, sliced off).
    nall, nloc = ext_coord.shape[1], nlist.shape[1]
    pad = nloc + bucket(nall - nloc) - nall

    def padded(x, value=0):
        x = np.asarray(x)
        return x if pad <= 0 else np.concatenate(
            [x, np.full((x.shape[0], pad, *x.shape[2:]), value, x.dtype)], axis=1)

    ae, f = _LOWER_CACHE[key](params, buffers, jnp.asarray(padded(ext_coord)),
                              jnp.asarray(padded(ext_atype, -1)), jnp.asarray(nlist),
                              None if mapping is None else jnp.asarray(padded(mapping)))
    return {keys.ATOM_ENERGY: np.asarray(ae), keys.EXT_FORCE: np.asarray(f)[:, :nall]}


class Trainer:
    """Trainable arrays and a jitted step (loss, grad, Adam) per model; the static type split
    (atoms per type) is a compile-time constant, one compile per system shape."""

    def __init__(self, config: dict, params_np: dict, buffers_np: dict, compile: bool = True,
                 max_grad_norm: float | None = None):
        del compile  # always jit-compiled
        self.config = config
        self.params = asarray(params_np)
        self.buffers = asarray(buffers_np)
        mask = frozen_mask(config, params_np)
        self.frozen = mask if any(flatten(mask).values()) else None

        def loss_fn(params, batch, prep, pref, static):
            prep = {**prep, **dict(static)}
            pred = efv(config, params, self.buffers, batch[keys.COORD], prep)
            return ener_loss(pred, batch, pref)

        def step(params, opt_state, batch, prep, pref, lr, static):
            (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, batch, prep, pref, static)
            params, opt_state = adam_update(params, grads, opt_state, lr, self.frozen,
                                            max_grad_norm)
            return params, opt_state, metrics

        self._step = jax.jit(step, static_argnames=("static",))
        self._eval = jax.jit(lambda p, b, pr, pref, static: loss_fn(p, b, pr, pref, static)[1],
                             static_argnames=("static",))

    def step(self, batch, prep, pref, opt_state, lr: float):
        arrays, static = _split_prep(prep)
        self.params, opt_state, metrics = self._step(
            self.params, opt_state, _batch(batch), arrays, _f(pref), jnp.asarray(lr),
            static=static)
        return opt_state, {k: float(v) for k, v in metrics.items()}

    def evaluate_metrics(self, batch, prep, pref):
        arrays, static = _split_prep(prep)
        m = self._eval(self.params, _batch(batch), arrays, _f(pref), static=static)
        return {k: float(v) for k, v in m.items()}

    def params_numpy(self):
        return to_numpy(self.params)


def _split_prep(prep: dict):
    """(arrays, static): static = hashable ((key, tuple), ...) of compile-time constants."""
    arrays = {k: jnp.asarray(v) for k, v in prep.items() if k not in keys.STATIC_PREP}
    return arrays, tuple((k, prep[k]) for k in keys.STATIC_PREP if k in prep)


def _batch(batch: dict) -> dict:
    return {k: jnp.asarray(v) for k, v in batch.items() if v is not None and k in _BATCH_KEYS}


def _f(pref: dict) -> dict:
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in pref.items()}


_BATCH_KEYS = (keys.COORD, keys.LABEL_ENERGY, keys.LABEL_FORCE, keys.LABEL_VIRIAL,
               keys.FIND_VIRIAL)

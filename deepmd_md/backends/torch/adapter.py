"""PyTorch adapter: tensors, autograd (double backward for force training), nothing else."""

from __future__ import annotations

import os

import numpy as np
import torch

from deepmd_md import keys
from deepmd_md.backends.common import efv_from_grads, total_energy
from deepmd_md.model.model import atomic_outputs
from deepmd_md.train.loss import ener_loss
from deepmd_md.train.optim import adam_scalars, adam_update, frozen_mask
from deepmd_md.tree import flatten, tree_map

name = "torch"


def asarray(tree, trainable: bool = False):
    def leaf(x):
        t = torch.as_tensor(np.asarray(x))
        return t.requires_grad_(True) if trainable and t.is_floating_point() else t

    return tree_map(leaf, tree)


def to_numpy(tree):
    return tree_map(lambda t: t.detach().cpu().numpy() if torch.is_tensor(t) else t, tree)


def efv(config, params, buffers, coord, prep, create_graph: bool = False) -> dict:
    """Energy, atomic energy, force and virial. coord: [nf, nat, 3] tensor."""
    coord = coord.detach().requires_grad_(True)
    strain = torch.zeros((coord.shape[0], 3, 3), dtype=coord.dtype, requires_grad=True)
    e, ae = total_energy(config, params, buffers, coord, strain, prep)
    g_coord, g_strain = torch.autograd.grad(e, [coord, strain], create_graph=create_graph)
    return efv_from_grads(ae, g_coord, g_strain)


def evaluate(config, params, buffers, coord, prep) -> dict:
    """Inference: NumPy in, NumPy out."""
    out = efv(config, params, buffers, torch.as_tensor(coord), _prep(prep))
    return to_numpy(out)


def evaluate_lower(config, params, buffers, ext_coord, ext_atype, nlist, mapping=None) -> dict:
    """forward_lower on NumPy inputs: atom_energy [nf, nloc], extended_force [nf, nall, 3]."""
    ext = torch.as_tensor(ext_coord).requires_grad_(True)
    ae = atomic_outputs(config, params, buffers, ext, torch.as_tensor(ext_atype),
                        torch.as_tensor(nlist),
                        mapping=None if mapping is None else torch.as_tensor(mapping))["energy"]
    (g,) = torch.autograd.grad(ae.sum(), [ext])
    return {keys.ATOM_ENERGY: ae.detach().numpy(), keys.EXT_FORCE: -g.numpy()}


class Trainer:
    """Holds trainable tensors and Adam moments; `step` = loss, backward, Adam."""

    def __init__(self, config: dict, params_np: dict, buffers_np: dict, compile: bool = False,
                 max_grad_norm: float | None = None):
        self.config = config
        self.max_grad_norm = max_grad_norm
        keep_freed_memory()
        self.params = asarray(params_np, trainable=True)
        self.buffers = asarray(buffers_np)
        mask = frozen_mask(config, params_np)
        self.frozen = mask if any(flatten(mask).values()) else None
        self.compiled = None
        if compile:
            from deepmd_md.backends.torch.compiled import CompiledStep

            fz = _leaves(self.frozen) if self.frozen is not None else None
            self.compiled = CompiledStep(config, self.params, self.buffers, efv, _rebuild,
                                         fz or [False] * len(_leaves(self.params)),
                                         max_grad_norm)

    def loss(self, batch: dict, prep: dict, pref: dict, train: bool):
        b = asarray({k: v for k, v in batch.items() if v is not None})  # box None: nopbc
        pred = efv(self.config, self.params, self.buffers, b[keys.COORD], _prep(prep),
                   create_graph=train)
        return ener_loss(pred, b, pref)

    def step(self, batch, prep, pref, opt_state, lr: float):
        leaves = _leaves(self.params)
        if self.compiled is not None:
            lr_c1, c2 = adam_scalars(opt_state["t"] + 1, lr)
            loss, metrics, new, m, v = self.compiled(
                leaves, _leaves(opt_state["m"]), _leaves(opt_state["v"]), batch, prep, pref,
                lr_c1, c2)
            self.params = _rebuild(self.params, (t.requires_grad_(True) for t in new))
            opt_state = {"m": _rebuild(opt_state["m"], iter(m)),
                         "v": _rebuild(opt_state["v"], iter(v)), "t": opt_state["t"] + 1}
            return opt_state, {k: float(val) for k, val in metrics.items()}
        loss, metrics = self.loss(batch, prep, pref, train=True)
        grads = param_grads(loss, leaves)
        grad_tree = _rebuild(self.params, iter(grads))
        with torch.no_grad():
            new, opt_state = adam_update(self.params, grad_tree, opt_state, lr, self.frozen,
                                         self.max_grad_norm)
        self.params = tree_map(lambda t: t.detach().requires_grad_(True), new)
        return opt_state, {k: float(v.detach()) for k, v in metrics.items()}

    def evaluate_metrics(self, batch, prep, pref):
        loss, metrics = self.loss(batch, prep, pref, train=False)
        return {k: float(v.detach()) for k, v in metrics.items()}

    def params_numpy(self):
        return to_numpy(self.params)


def keep_freed_memory() -> None:
    """Let glibc keep freed large blocks for reuse (as the core does for inference, see
    docs/lammps.md): a training step allocates and frees hundreds of [nloc, nnei, width]
    tensors (22 MB each in the water DPA-1), which glibc otherwise unmaps and page-faults in
    again; measured 7-11 % of the CPU time of an se_atten_v2 step. Freed memory then stays
    mapped (the step's peak RSS is unchanged). Skipped when the user tunes malloc or sets
    DPMD_MD_NO_MALLOC_TUNING, and off glibc."""
    env = os.environ
    if ("malloc" in env.get("GLIBC_TUNABLES", "") or "MALLOC_MMAP_THRESHOLD_" in env
            or "MALLOC_TRIM_THRESHOLD_" in env or "DPMD_MD_NO_MALLOC_TUNING" in env):
        return
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return
    # M_MMAP_THRESHOLD (-3) first: setting any threshold ends glibc's dynamic adjustment, and
    # a trim threshold alone would leave every block over 128 KiB to mmap
    if mallopt(-3, 1 << 30):
        mallopt(-1, 0x7FFFFFFF)  # M_TRIM_THRESHOLD


def param_grads(loss, leaves) -> list:
    """dloss/dleaf; zeros for a parameter the loss does not reach (e.g. a GNN's last edge and
    angle updates, which no energy depends on), as the other backends give."""
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]


def _prep(prep: dict) -> dict:
    """Arrays to tensors; the static type split stays a tuple."""
    return {k: v if k in keys.STATIC_PREP else torch.as_tensor(v) for k, v in prep.items()}


def _leaves(tree):
    out = []
    tree_map(out.append, tree)
    return out


def _rebuild(tree, it):
    return tree_map(lambda _: next(it), tree)

"""The torch training step compiled whole: loss, forces by autograd, gradients, Adam update.

Force training differentiates twice (forces = -dE/dx inside the loss, then d loss/d params), and
in eager mode most of a step is memory-bound elementwise work on [nloc*nnei, M] tensors of the
embedding net's forward, backward and double backward. Here the step is traced once per shape
signature with make_fx, which records the aten ops the autograd engine runs (both backward
passes included), and the resulting graph, which holds no autograd any more, is compiled by
Inductor: the elementwise chains fuse into a few loops around the matmuls.

The traced function is the eager step itself (adapter.efv + ener_loss + autograd.grad +
optim.adam_leaf), so the compiled step computes the same numbers (tests/test_compiled.py: lcurve
and weights after 4 steps to 1e-9 relative). Compilation took 54-103 s per signature on a cold
cache here; Inductor caches it on disk (TORCHINDUCTOR_CACHE_DIR): 7-28 s on a rerun.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from deepmd_md import keys
from deepmd_md.backends.torch.adapter import param_grads
from deepmd_md.backends.torch.fx_rewrite import fast_tanh
from deepmd_md.train.loss import ener_loss
from deepmd_md.train.optim import adam_leaf, clip_by_global_norm

_PREFS = ("e", "f", "v")


class CompiledStep:
    """One training step, loss to Adam update, one compiled graph per signature:
    (leaves, m, v, batch, prep, pref, lr_c1, c2) -> (loss, metrics, leaves, m, v).

    leaves, m, v: parameter tensors and Adam moments in tree order; batch/prep: as Trainer.loss
    takes them (NumPy); pref ({"e", "f", "v"}) and the Adam scalars (optim.adam_scalars) are
    passed as 0-d tensors so that their schedules never recompile; frozen: one bool per leaf.
    """

    def __init__(self, config: dict, params, buffers, efv, rebuild, frozen: list[bool],
                 max_norm: float | None = None):
        self.config, self.params, self.buffers = config, params, buffers
        self.max_norm = max_norm
        self.efv, self.rebuild, self.frozen = efv, rebuild, frozen
        self.graphs: dict = {}

    def __call__(self, leaves, m, v, batch: dict, prep: dict, pref: dict, lr_c1: float,
                 c2: float):
        bnames = tuple(k for k, v in batch.items() if v is not None and k in _BATCH_KEYS)
        pnames = tuple(k for k in prep if k not in keys.STATIC_PREP)
        static = tuple((k, prep[k]) for k in keys.STATIC_PREP if k in prep)
        bt = [torch.as_tensor(np.asarray(batch[k])) for k in bnames]
        pt = [torch.as_tensor(prep[k]) for k in pnames]
        pr = [torch.tensor(float(x), dtype=torch.float64)
              for x in [pref[k] for k in _PREFS] + [lr_c1, c2]]
        sig = (bnames, pnames, static, tuple((t.shape, t.dtype) for t in bt + pt),
               tuple((t.shape, t.dtype) for t in leaves))
        fn = self.graphs.get(sig)
        if fn is None:
            fn = self.graphs[sig] = self._compile(bnames, pnames, dict(static), leaves, bt, pt, pr)
        loss, rmse_e, rmse_f, rmse_v, new, m, v = fn([t.detach() for t in leaves], m, v, bt, pt, pr)
        return loss, {"rmse_e": rmse_e, "rmse_f": rmse_f, "rmse_v": rmse_v}, new, m, v

    def _compile(self, bnames, pnames, static, leaves, bt, pt, pr):
        def step(leaves, ms, vs, bt, pt, pr):
            leaves = [t.detach().requires_grad_(True) for t in leaves]
            params = self.rebuild(self.params, iter(leaves))
            b = dict(zip(bnames, bt, strict=True))
            p = dict(zip(pnames, pt, strict=True), **static)
            pred = self.efv(self.config, params, self.buffers, b[keys.COORD], p, create_graph=True)
            loss, met = ener_loss(pred, b, dict(zip(_PREFS, pr[:3], strict=True)))
            grads = clip_by_global_norm(param_grads(loss, leaves), self.max_norm, self.frozen)
            new = [(x, m, v) if fz else adam_leaf(x.detach(), g, m, v, pr[3], pr[4])
                   for x, g, m, v, fz in zip(leaves, grads, ms, vs, self.frozen, strict=True)]
            return (loss, met["rmse_e"], met["rmse_f"], met["rmse_v"], [n[0].detach() for n in new],
                    [n[1] for n in new], [n[2] for n in new])

        t0 = time.perf_counter()
        print(f"compiling the training step for {tuple(bt[0].shape)} coordinates "
              "(once per shape; cached on disk for later runs) ...", file=sys.stderr, flush=True)
        # distinct tensors for every input: make_fx maps inputs by identity, so a tensor passed
        # twice would become one placeholder (m and v merged)
        args = ([t.detach().clone() for t in leaves], [torch.zeros_like(t) for t in leaves],
                [torch.zeros_like(t) for t in leaves], bt, pt, pr)
        gm = make_fx(step, tracing_mode="real")(*args)
        fast_tanh(gm)
        fn = torch.compile(gm, dynamic=False, fullgraph=True)
        fn(*args)  # compile now, so the timing says so
        print(f"compiled in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        return fn


# label fields the loss reads; index fields (system/frame) stay out of the graph's inputs
_BATCH_KEYS = (keys.COORD, keys.LABEL_ENERGY, keys.LABEL_FORCE, keys.LABEL_VIRIAL,
               keys.FIND_VIRIAL)

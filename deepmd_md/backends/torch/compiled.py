"""The torch training step compiled whole: loss, forces by autograd, parameter gradients.

Force training differentiates twice (forces = -dE/dx inside the loss, then d loss/d params), and
in eager mode most of a step is memory-bound elementwise work on [nloc*nnei, M] tensors of the
embedding net's forward, backward and double backward. Here the step is traced once per shape
signature with make_fx, which records the aten ops the autograd engine runs (both backward
passes included), and the resulting graph, which holds no autograd any more, is compiled by
Inductor: the elementwise chains fuse into a few loops around the matmuls.

The traced function is the eager step itself (adapter.efv + ener_loss + autograd.grad), so the
compiled step computes the same numbers (tests/test_compiled.py: gradients to 1e-10).
Compilation costs about a minute per signature on a cold cache; Inductor caches it on disk
(TORCHINDUCTOR_CACHE_DIR), so a rerun of the same model and data compiles in seconds.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from deepmd_md import keys
from deepmd_md.train.loss import ener_loss

_PREFS = ("e", "f", "v")


class CompiledStep:
    """(leaves, batch, prep, pref) -> (loss, metrics, grads), one compiled graph per signature.

    leaves: the parameter tensors in tree order; batch/prep: as Trainer.loss takes them (NumPy);
    pref: {"e", "f", "v"} floats, passed as 0-d tensors so that their schedule never recompiles.
    """

    def __init__(self, config: dict, params, buffers, efv, rebuild):
        self.config, self.params, self.buffers = config, params, buffers
        self.efv, self.rebuild = efv, rebuild
        self.graphs: dict = {}

    def __call__(self, leaves, batch: dict, prep: dict, pref: dict):
        bnames = tuple(k for k, v in batch.items() if v is not None and k in _BATCH_KEYS)
        pnames = tuple(k for k in prep if k not in keys.STATIC_PREP)
        static = tuple((k, prep[k]) for k in keys.STATIC_PREP if k in prep)
        bt = [torch.as_tensor(np.asarray(batch[k])) for k in bnames]
        pt = [torch.as_tensor(prep[k]) for k in pnames]
        pr = [torch.tensor(float(pref[k]), dtype=torch.float64) for k in _PREFS]
        sig = (bnames, pnames, static, tuple((t.shape, t.dtype) for t in bt + pt),
               tuple((t.shape, t.dtype) for t in leaves))
        fn = self.graphs.get(sig)
        if fn is None:
            fn = self.graphs[sig] = self._compile(bnames, pnames, dict(static), leaves, bt, pt, pr)
        loss, rmse_e, rmse_f, rmse_v, grads = fn([t.detach() for t in leaves], bt, pt, pr)
        return loss, {"rmse_e": rmse_e, "rmse_f": rmse_f, "rmse_v": rmse_v}, grads

    def _compile(self, bnames, pnames, static, leaves, bt, pt, pr):
        def step(leaves, bt, pt, pr):
            leaves = [t.detach().requires_grad_(True) for t in leaves]
            params = self.rebuild(self.params, iter(leaves))
            b = dict(zip(bnames, bt, strict=True))
            p = dict(zip(pnames, pt, strict=True), **static)
            pred = self.efv(self.config, params, self.buffers, b[keys.COORD], p, create_graph=True)
            loss, m = ener_loss(pred, b, dict(zip(_PREFS, pr, strict=True)))
            grads = torch.autograd.grad(loss, leaves)
            return loss, m["rmse_e"], m["rmse_f"], m["rmse_v"], list(grads)

        t0 = time.perf_counter()
        print(f"compiling the training step for {tuple(bt[0].shape)} coordinates "
              "(once per shape; cached on disk for later runs) ...", file=sys.stderr, flush=True)
        gm = make_fx(step, tracing_mode="real")([t.detach() for t in leaves], bt, pt, pr)
        fn = torch.compile(gm, dynamic=False, fullgraph=True)
        fn([t.detach() for t in leaves], bt, pt, pr)  # compile now, so the timing says so
        print(f"compiled in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        return fn


# label fields the loss reads; index fields (system/frame) stay out of the graph's inputs
_BATCH_KEYS = (keys.COORD, keys.LABEL_ENERGY, keys.LABEL_FORCE, keys.LABEL_VIRIAL,
               keys.FIND_VIRIAL)

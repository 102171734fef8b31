"""Freeze to an AOTInductor package `.pt2` (compiled C++ for this CPU's ISA).

The shared model math is traced symbolically (make_fx, forces by autograd inside the trace),
exported with every size dynamic and compiled. Contract (docs/lammps.md): positional inputs
(coord [1, nall, 3] f64, atype [1, nall] i64, then per type t nlist_t [1, nloc, nnei_t] i64,
then per type t idx_t [natoms_t] i64: model.atomic_outputs_blocked's inputs), outputs
(atom_energy [1, nloc], energy [1], extended_force [1, nall, 3], virial [1, 9],
extended_virial [1, nall, 9]); metadata JSON under the package metadata key `deepmd_md.metadata`
(with "blocked": true).

Sizes must stay symbolic through make_fx: a size read as a Python int anywhere in the traced
code fixes it to the example's value; _check_not_specialised refuses such a trace instead of
compiling a package that only fits the example.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch

from deepmd_md.backends.torch.adapter import asarray
from deepmd_md.backends.torch.freeze import metadata
from deepmd_md.backends.torch.fx_rewrite import fast_tanh
from deepmd_md.model.model import atomic_outputs_blocked
from deepmd_md.serialize import atomic_write


def _blocked_fn(data: dict):
    """(coord, atype, nlist_0..nlist_{nt-1}, idx_0..idx_{nt-1}) -> the five outputs."""
    cfg = data["config"]
    params, buffers = asarray(data["params"]), asarray(data["buffers"])
    nt = len(cfg["type_map"])

    def fn(coord, atype, *blocks):
        x = coord.detach().requires_grad_(True)
        ae = atomic_outputs_blocked(cfg, params, buffers, x, atype, list(blocks[:nt]),
                                    list(blocks[nt:]))["energy"].to(torch.float64)
        (g,) = torch.autograd.grad(ae.sum(), [x])
        force = -g
        av = x.unsqueeze(-1) * force.unsqueeze(-2)
        nf = coord.shape[0]
        return (ae, ae.sum(-1), force, av.sum(1).reshape(nf, 9), av.reshape(nf, -1, 9))

    return fn


def _check_not_specialised(gm, dims: dict) -> None:
    """Fail if tracing fixed a dynamic size to the example's value (a size read as a Python
    int somewhere in the model code): the graph would silently hold that constant.
    dims: name -> (input index, axis)."""
    vals = [n.meta.get("val") for n in gm.graph.nodes if n.op == "placeholder"]
    shape_env = getattr(getattr(vals[0], "fake_mode", None), "shape_env", None)
    if shape_env is None or not hasattr(shape_env, "replace"):
        return  # no symbolic shape environment to inspect (other torch versions)
    fixed = [f"{name}={int(e)}" for name, (i, ax) in dims.items()
             if (e := shape_env.replace(vals[i].shape[ax].node.expr)).is_number]
    if fixed:
        raise RuntimeError(f"cannot export a .pt2: tracing specialised {', '.join(fixed)} "
                           "(run with TORCH_LOGS=+dynamic to see where)")


def freeze_pt2(data: dict, path: str) -> None:
    """Export and compile `data` to an AOTInductor package at `path` (atomically)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    fn = _blocked_fn(data)
    g = torch.Generator().manual_seed(0)
    nt = len(data["config"]["type_map"])
    nall, nloc = 17, 7 + 2 * nt
    coord = torch.rand(1, nall, 3, generator=g, dtype=torch.float64) * 3.0
    atype = torch.arange(nall).remainder(nt).reshape(1, nall)
    # distinct example sizes, none 0 or 1, so that no two dims are traced as equal
    nlists = [torch.randint(-1, nall, (1, nloc, 5 + 2 * t), generator=g) for t in range(nt)]
    center = [torch.nonzero(atype[0, :nloc] == t)[:, 0] for t in range(nt)]
    inputs = (coord, atype, *nlists, *center)
    gm = make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*inputs)
    dims = {"nall": (0, 1), "nloc": (2, 1)}
    dims.update({f"nnei_{t}": (2 + t, 2) for t in range(nt)})
    dims.update({f"natoms_{t}": (2 + nt + t, 0) for t in range(nt)})
    _check_not_specialised(gm, dims)
    fast_tanh(gm)
    dall, dloc = torch.export.Dim("nall", min=1), torch.export.Dim("nloc", min=1)
    dyn = [{1: dall}, {1: dall}]
    dyn += [{1: dloc, 2: torch.export.Dim(f"nnei_{t}", min=0)} for t in range(nt)]
    dyn += [{0: torch.export.Dim(f"natoms_{t}", min=0)} for t in range(nt)]
    ep = torch.export.export(gm, inputs, dynamic_shapes=tuple(dyn))
    meta = dict(metadata(data), format="deepmd_md.pt2")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.pt2")
        torch._inductor.aoti_compile_and_package(
            ep, package_path=out,
            inductor_configs={"aot_inductor.metadata": {"deepmd_md.metadata": json.dumps(meta)}})
        with open(out, "rb") as f:
            blob = f.read()
    atomic_write(path, lambda tmp: open(tmp, "wb").write(blob))

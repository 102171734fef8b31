"""Freeze to an AOTInductor package `.pt2` (compiled C++ for this CPU's ISA).

The shared model math is traced symbolically (make_fx, forces by autograd inside the trace),
exported with every size dynamic and compiled. Contract (docs/lammps.md): positional inputs
coord [1, nall, 3] f64, atype [1, nall] i64, then
- models with the per-type fast path (metadata "blocked": true): per type t nlist_t
  [1, nloc, nnei_t] i64, then per type t idx_t [natoms_t] i64 (model.atomic_outputs_blocked's
  inputs);
- every other model (mixed-type, hybrid, message-passing; "blocked": false), forward_lower's:
  nlist [1, nloc, nnei] i64 raw (any order, -1 padded, neighbors beyond rcut allowed; the
  core's padded rows), mapping [1, nall] i64 (owner < nloc of each extended atom; other
  models ignore it), and for message-passing models comm [1] i64 (the handle of
  dpmd::ghost_exchange: 0 = ghosts take their owners' features by mapping, else the address
  of the engine's dpmd_exchange, docs/core_contract.md) and atom_weight [1, nloc] f64 (energy =
  sum of weight x atom energy; ones unless the engine widened its ghost shell instead);
outputs (atom_energy [1, nloc], energy [1], extended_force [1, nall, 3], virial [1, 9],
extended_virial [1, nall, 9]); metadata JSON under the package metadata key `deepmd_md.metadata`,
the model section (config) under `deepmd_md.config` (Python's DeepPot reads it), and the whole
model as a `.dp` in the archive record `extra/deepmd_md/model.dp.b64` (base64) (so `dpmd test/show/freeze`,
`--init-model` and the other backends read a `.pt2` like any model file).

Sizes must stay symbolic through make_fx: a size read as a Python int anywhere in the traced
code fixes it to the example's value; _check_not_specialised refuses such a trace instead of
compiling a package that only fits the example.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from deepmd_md.backends.torch.adapter import asarray
from deepmd_md.backends.torch.freeze import metadata
from deepmd_md.backends.torch.fx_rewrite import fast_tanh
from deepmd_md.backends.torch.ops import OpExchange
from deepmd_md.model.model import (
    atomic_outputs,
    atomic_outputs_blocked,
    message_passing_of,
    sel_of,
    supports_blocked,
)
from deepmd_md.serialize import atomic_write, load_dp, save_dp


def _blocked_fn(data: dict):
    """(coord, atype, nlist_0..nlist_{nt-1}, idx_0..idx_{nt-1}) -> the five outputs."""
    cfg = data["config"]
    params, buffers = asarray(data["params"]), asarray(data["buffers"])
    nt = len(cfg["type_map"])

    def fn(coord, atype, *blocks):
        x = coord.detach().requires_grad_(True)
        ae = atomic_outputs_blocked(cfg, params, buffers, x, atype, list(blocks[:nt]),
                                    list(blocks[nt:]))["energy"]
        return _derive(x, ae)

    return fn


def _derive(x, ae, weight=None):
    """(atom_energy, energy, extended_force, virial, extended_virial) from ae [nf, nloc];
    weight [nf, nloc]: energy = sum of weight x ae, forces its gradient."""
    ae = ae.to(torch.float64)
    we = ae if weight is None else ae * weight
    (g,) = torch.autograd.grad(we.sum(), [x])
    force = -g
    av = x.unsqueeze(-1) * force.unsqueeze(-2)
    nf = x.shape[0]
    return (ae, we.sum(-1), force, av.sum(1).reshape(nf, 9), av.reshape(nf, -1, 9))


def _lower_fn(data: dict):
    """(coord, atype, nlist, mapping[, comm, atom_weight]) -> the five outputs: forward_lower
    on a raw list (message-passing models only: comm [1] int64, the handle of
    dpmd::ghost_exchange; atom_weight [1, nloc] f64, as FrozenModel.forward_lower's)."""
    cfg = data["config"]
    params, buffers = asarray(data["params"]), asarray(data["buffers"])
    # format_nlist needs >= max(sel) columns: pad by that many always (a branch on the width
    # would fix it to the example's value)
    pad_width = max(sel_of(cfg))

    def fn(coord, atype, nlist, mapping, *mp):
        x = coord.detach().requires_grad_(True)
        pad = torch.full((nlist.shape[0], nlist.shape[1], pad_width), -1, dtype=nlist.dtype)
        nl = torch.cat([nlist, pad], dim=2)
        exchange = OpExchange(mapping, mp[0]) if mp else None
        ae = atomic_outputs(cfg, params, buffers, x, atype, nl, raw_nlist=True,
                            mapping=mapping, comm=exchange)["energy"]
        return _derive(x, ae, mp[1] if mp else None)

    return fn


def _take_along_axis(x, indices, /, *, axis: int = -1):
    """array_api_compat's take_along_axis without torch.take_along_dim, whose C++ body reads
    every size as an int (it fixed nloc and nnei to the example's values in a symbolic trace):
    broadcast, then torch.gather."""
    axis = axis % x.ndim
    idx = torch.where(indices < 0, indices + x.shape[axis], indices)
    xs, js = list(x.shape), list(idx.shape)
    xs[axis] = js[axis] = 1
    shape = list(torch.broadcast_shapes(tuple(xs), tuple(js)))
    return torch.gather(x.expand(shape[:axis] + [x.shape[axis]] + shape[axis + 1:]), axis,
                        idx.expand(shape[:axis] + [idx.shape[axis]] + shape[axis + 1:]))


def _by_type_masked(params, desc, atype, act, ntypes):
    """fitting._by_type_gather without data-dependent shapes: every type's net on every atom,
    its own atoms' values kept (ntypes x the fitting work; no other change). The gather's
    nonzero sizes, reshaped back to [1, nloc], made export require nloc >= 2."""
    from deepmd_md.model.nn import apply_net

    out = torch.zeros_like(desc[..., 0])
    for t in range(ntypes):
        e = apply_net(params[f"t{t}"], desc, act, embedding=False, final_linear=True)[..., 0]
        out = torch.where(atype == t, e, out)
    return out


@contextlib.contextmanager
def _symbolic_friendly():
    """While tracing the raw (forward_lower) entry: the calls of the model code whose shapes
    depend on sizes or data replaced by equivalents that keep every size symbolic, nloc = 1
    included (the blocked entry needs neither: its inputs are sorted already)."""
    import array_api_compat.torch as xp

    from deepmd_md.model import fitting

    patches = [(xp, "take_along_axis", _take_along_axis),
               (fitting, "_by_type_gather", _by_type_masked)]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    try:
        for mod, name, new in patches:
            setattr(mod, name, new)
        yield
    finally:
        for mod, name, old in saved:
            setattr(mod, name, old)


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
    """Export and compile `data` to an AOTInductor package at `path` (atomically): the
    blocked entry point when the model has one, else forward_lower's (module docstring)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    g = torch.Generator().manual_seed(0)
    nt = len(data["config"]["type_map"])
    nall, nloc = 17, 7 + 2 * nt
    coord = torch.rand(1, nall, 3, generator=g, dtype=torch.float64) * 3.0
    atype = torch.arange(nall).remainder(nt).reshape(1, nall)
    dall, dloc = torch.export.Dim("nall", min=1), torch.export.Dim("nloc", min=1)
    dyn = [{1: dall}, {1: dall}]
    # distinct example sizes, none 0 or 1, so that no two dims are traced as equal
    if supports_blocked(data["config"]):
        fn = _blocked_fn(data)
        nlists = [torch.randint(-1, nall, (1, nloc, 5 + 2 * t), generator=g) for t in range(nt)]
        center = [torch.nonzero(atype[0, :nloc] == t)[:, 0] for t in range(nt)]
        inputs = (coord, atype, *nlists, *center)
        dims = {"nall": (0, 1), "nloc": (2, 1)}
        dims.update({f"nnei_{t}": (2 + t, 2) for t in range(nt)})
        dims.update({f"natoms_{t}": (2 + nt + t, 0) for t in range(nt)})
        dyn += [{1: dloc, 2: torch.export.Dim(f"nnei_{t}", min=0)} for t in range(nt)]
        dyn += [{0: torch.export.Dim(f"natoms_{t}", min=0)} for t in range(nt)]
    else:
        fn = _lower_fn(data)
        nlist = torch.randint(-1, nall, (1, nloc, 9), generator=g)
        mapping = torch.arange(nall).remainder(nloc).reshape(1, nall)
        inputs = (coord, atype, nlist, mapping)
        dims = {"nall": (0, 1), "nloc": (2, 1), "nnei": (2, 2), "nall (mapping)": (3, 1)}
        dyn += [{1: dloc, 2: torch.export.Dim("nnei", min=0)}, {1: dall}]
        if message_passing_of(data["config"]):
            inputs += (torch.zeros(1, dtype=torch.int64), torch.ones(1, nloc, dtype=torch.float64))
            dims["nloc (atom_weight)"] = (5, 1)
            dyn += [None, {1: dloc}]
    with _symbolic_friendly():
        gm = make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*inputs)
    _check_not_specialised(gm, dims)
    fast_tanh(gm)
    ep = torch.export.export(gm, inputs, dynamic_shapes=tuple(dyn))
    meta = dict(metadata(data), format="deepmd_md.pt2")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.pt2")
        torch._inductor.aoti_compile_and_package(
            ep, package_path=out,
            inductor_configs={"aot_inductor.metadata": {
                "deepmd_md.metadata": json.dumps(meta),
                "deepmd_md.config": json.dumps(data["config"])}})
        final = os.path.join(tmp, "final.pt2")
        _with_weights(out, final, data)
        with open(final, "rb") as f:
            blob = f.read()
    atomic_write(path, lambda tmp: open(tmp, "wb").write(blob))


# the backend-neutral model, so every tool reads a .pt2; base64 because torch reads extra/ records
# back as text
DP_RECORD = "extra/deepmd_md/model.dp.b64"


def _with_weights(src: str, dst: str, data: dict) -> None:
    """Copy the AOTInductor archive `src` to `dst` adding the model's `.dp` as an extra record:
    compiled code alone cannot be re-frozen, tested on another backend or fine-tuned."""
    from torch.export.pt2_archive._package import PT2ArchiveReader, PT2ArchiveWriter

    dp = os.path.join(os.path.dirname(dst), "model.dp")
    save_dp({k: data[k] for k in ("config", "params", "buffers")}, dp)
    reader = PT2ArchiveReader(src)
    with open(dp, "rb") as f:
        dp_bytes = f.read()
    writer = PT2ArchiveWriter(dst)
    for name in reader.get_file_names():
        if not writer.has_record(name):  # the writer adds its own format/version records
            writer.write_bytes(name, reader.read_bytes(name))
    writer.write_bytes(DP_RECORD, base64.b64encode(dp_bytes))
    writer.close()


def read_pt2_model_data(path: str) -> dict:
    """The `.dp` model inside a `.pt2` (ModelData); ValueError when the package has none."""
    from torch.export.pt2_archive._package import PT2ArchiveReader

    reader = PT2ArchiveReader(path)
    if DP_RECORD not in reader.get_file_names():
        raise ValueError("it holds compiled code only (frozen before packages carried their weights)")
    with tempfile.TemporaryDirectory() as tmp:
        dp = os.path.join(tmp, "model.dp")
        with open(dp, "wb") as f:
            f.write(base64.b64decode(reader.read_bytes(DP_RECORD)))
        return load_dp(dp)


def drop_extracted() -> None:
    """Remove the folders AOTInductor's loader unpacked its packages into (/tmp/aotinductor_*).

    The loader deletes its folder only in its destructor, so every process that ends without
    it (an error exit, a killed run) leaves ~2.5 MB behind. Once loaded, the compiled code is
    mapped and the constants are in memory: the files are not read again, so they go now.
    Only folders of code this process has mapped are touched."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: the loader's destructor cleans up as before
        return
    for d in set(re.findall(r"(/\S*/aotinductor_\w+)/", maps)):
        shutil.rmtree(d, ignore_errors=True)


def load_pt2(path: str):
    """(callable package, model config, metadata) of a `.pt2` written by freeze_pt2."""
    from deepmd_md.backends.torch.ops import load_ops

    load_ops(required=False)  # message-passing packages call dpmd::ghost_exchange
    # the C++ loader itself: torch._inductor's Python wrapper (aoti_load_package) costs ~90 MB of
    # imports per process, more than half of what LAMMPS needs for a whole se_e2_a run
    loader = torch._C._aoti.AOTIModelPackageLoader(path, "model", False, 1, -1)
    drop_extracted()
    meta = loader.get_metadata()

    def pkg(*inputs):  # flat tensors in, flat outputs (our packages take and return tuples)
        return loader.run(list(inputs))

    if "deepmd_md.config" not in meta:
        raise ValueError("no deepmd_md.config in the package metadata (written by an older "
                         "deepmd_md; freeze it again)")
    return pkg, json.loads(meta["deepmd_md.config"]), json.loads(meta["deepmd_md.metadata"])


def eval_pt2(pkg, config: dict, ext_coord, ext_atype, nlist, mapping) -> dict:
    """forward_lower's outputs (NumPy) of one frame from our formatted nlist [1, nloc, nnei]
    (a valid raw list too) and mapping [1, nall]; blocked packages get per-type blocks."""
    import numpy as np

    from deepmd_md.model.frames import blocked_inputs

    t = [torch.as_tensor(np.ascontiguousarray(x)) for x in (ext_coord, ext_atype)]
    nloc = nlist.shape[1]
    if supports_blocked(config):
        nlists, center = blocked_inputs(nlist, np.asarray(ext_atype)[:, :nloc], sel_of(config))
        t += [torch.as_tensor(np.ascontiguousarray(x)) for x in (*nlists, *center)]
    else:
        t += [torch.as_tensor(np.ascontiguousarray(x)) for x in (nlist, mapping)]
        if message_passing_of(config):
            t += [torch.zeros(1, dtype=torch.int64), torch.ones(1, nloc, dtype=torch.float64)]
    out = pkg(*t)
    return {"atom_energy": out[0].numpy(), "extended_force": out[2].numpy()}

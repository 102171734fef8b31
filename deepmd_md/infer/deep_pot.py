"""DeepPot: evaluate a `.pth`, `.pt2`, `.dp` or checkpoint with DeePMD-kit's shapes.

`.pth` runs its TorchScript `forward_lower`, `.pt2` its compiled package (on our neighbor
list, as the engines call it); `.dp`/`.ckpt` run the shared model math on a chosen
backend (torch, jax or numpy, the complex-step reference). Input checks (NaN coordinates, bad
types, more neighbors than sel) are the same for every format.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

from deepmd_md import keys
from deepmd_md.errors import ConfigError, DataError, ModelFileError
from deepmd_md.infer.chunks import chunked_lower
from deepmd_md.model.frames import blocked_inputs, prepare_frames
from deepmd_md.model.model import message_passing_of, rcut_of, sel_of
from deepmd_md.serialize import load_dp


def load_model_data(path: str) -> dict:
    """ModelData of any model file (deepmd_md.formats.read_model)."""
    from deepmd_md.formats import read_model

    return read_model(path)


def _pth_extra(path: str):
    if not os.path.isfile(path):
        raise ModelFileError(f"model file not found: {path}")
    import torch

    from deepmd_md.backends.torch.ops import load_ops

    load_ops(required=False)  # message-passing models call dpmd::ghost_exchange
    extra = {"metadata.json": "", "model.dp": ""}
    try:
        module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    except Exception as e:  # torch raises RuntimeError/ValueError subclasses for bad archives
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        from deepmd_md.formats import READABLE

        raise ModelFileError(f"cannot load {path}: not a TorchScript model ({first}); deepmd_md "
                             f"reads {READABLE}") from None
    if not extra["metadata.json"]:
        raise ModelFileError(f"{path} is a TorchScript file but not a deepmd_md model")
    with tempfile.TemporaryDirectory() as tmp:
        dp = os.path.join(tmp, "model.dp")
        with open(dp, "wb") as f:
            f.write(extra["model.dp"])
        data = load_dp(dp)
    return module, data, json.loads(extra["metadata.json"])


def _pt2_load(path: str):
    if not os.path.isfile(path):
        raise ModelFileError(f"model file not found: {path}")
    from deepmd_md.backends.torch.aoti import load_pt2

    try:
        pkg, config, _ = load_pt2(path)
    except Exception as e:  # torch raises RuntimeError subclasses for bad packages
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"cannot load {path}: not a deepmd_md .pt2 package ({first})") \
            from None
    return pkg, config


ATOMS_PER_CALL = 256  # measured: 192-256 atoms per call is fastest (memory-bound)
# local atoms per call in a large frame, the C++ core's default (kDefaultChunk); DPMD_MD_CHUNK
# overrides both (0 = all at once). Peak memory, 1,536-atom water, se_e2_a .pth: 0.55 GB, 1.1 GB
# unchunked (benchmarks/inference_memory.py)
CHUNK_ATOMS = 128


def _chunk_atoms() -> int:
    env = os.environ.get("DPMD_MD_CHUNK", "").strip()
    return int(env) if env.isdigit() else CHUNK_ATOMS


class DeepPot:
    """A potential: `DeepPot(path).eval(coord [nf, nat*3], box [nf, 9] | None, atype [nat])`."""

    _reference_noted = False  # the numpy backend's "slow reference" note, once per process

    def __init__(self, path: str, backend: str | None = None):
        self.path = str(path)
        self._module = self._pt2 = None
        src = self.path
        if self.path.endswith(".pt"):  # a GROMACS module (export-gromacs): the model it carries
            from deepmd_md.gromacs import extract_model

            self._unpacked = tempfile.TemporaryDirectory()
            src = extract_model(self.path, self._unpacked.name)
        from deepmd_md.interop import is_deepmd_kit

        if src.endswith(".pth") and backend in (None, "torch") and not is_deepmd_kit(src):
            self._module, self.data, _ = _pth_extra(src)
            self.backend = "torch"
        elif src.endswith(".pt2") and backend in (None, "torch"):
            self._pt2, config = _pt2_load(src)
            self.data = {"config": config}
            self.backend = "torch"
        else:
            self.data = load_model_data(src)
            self.backend = backend or _own_backend(src)
            self._adapter = _adapter(self.backend)
            if self._adapter is not None:
                self._params = self._adapter.asarray(self.data["params"])
                self._buffers = self._adapter.asarray(self.data["buffers"])
        self.config = self.data["config"]

    def get_type_map(self) -> list[str]:
        return list(self.config["type_map"])

    def get_ntypes(self) -> int:
        return len(self.config["type_map"])

    def get_rcut(self) -> float:
        return rcut_of(self.config)

    def get_sel(self) -> list[int]:
        return sel_of(self.config)

    def eval(self, coord, box, atype, atomic: bool = False):
        """coord: [nf, nat*3] (or [nf, nat, 3]); box: [nf, 9] | None; atype: [nat] or [nf, nat].

        Returns (energy [nf, 1], force [nf, nat, 3], virial [nf, 9]) and, with atomic=True,
        also (atom_energy [nf, nat, 1], atom_virial [nf, nat, 9]), as DeePMD-kit's DeepPot.
        """
        coord, box, atype = self._check(coord, box, atype)
        nf, nat = coord.shape[0], coord.shape[1]
        lower = self._lower()
        if lower is None and atomic:
            raise ConfigError("the numpy reference backend computes no per-atom virial; "
                              "use backend='torch' or 'jax' for atomic=True")
        # frames grouped up to ATOMS_PER_CALL atoms, larger frames in chunks of local atoms (as
        # the C++ core does): memory stays bounded whatever nf and nat are
        step = max(1, ATOMS_PER_CALL // max(nat, 1))
        chunk = 0 if message_passing_of(self.config) else _chunk_atoms()
        parts = []
        for i in range(0, nf, step):
            sl = slice(i, i + step)
            b = None if box is None else box[sl]
            prep = prepare_frames(self.config, coord[sl], atype[sl], b)  # also checks sel
            if lower is None:
                parts.append(self._reference(coord[sl], atype[sl], b, i, nf))
                continue
            mapping = prep[keys.MAPPING]
            ext = np.take_along_axis(coord[sl], mapping[..., None], axis=1) + prep[keys.SHIFT]
            lo = chunked_lower(lower, ext, prep[keys.EXT_ATYPE], prep[keys.NLIST], mapping, chunk)
            parts.append(fold_lower(lo, ext, mapping, nat))
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        res = [out[keys.ENERGY].reshape(nf, 1), out[keys.FORCE].reshape(nf, nat, 3),
               out[keys.VIRIAL].reshape(nf, 9)]
        if atomic:
            res += [out[keys.ATOM_ENERGY].reshape(nf, nat, 1),
                    out[keys.ATOM_VIRIAL].reshape(nf, nat, 9)]
        return tuple(np.asarray(r, dtype=np.float64) for r in res)

    def _check(self, coord, box, atype):
        coord = np.array(coord, dtype=np.float64)  # a private, writable copy
        nf = coord.shape[0]
        coord = coord.reshape(nf, -1, 3)
        nat = coord.shape[1]
        atype = np.asarray(atype, dtype=np.int64)
        atype = np.ascontiguousarray(np.broadcast_to(atype.reshape(-1, nat), (nf, nat)))
        if not np.isfinite(coord).all():
            f, i = np.argwhere(~np.isfinite(coord))[0][:2]
            raise DataError(f"coordinates are not finite (frame {f}, atom {i})")
        bad = (atype < 0) | (atype >= self.get_ntypes())
        if bad.any():
            raise DataError(
                f"atom type {int(atype[bad][0])} is outside the model's type_map "
                f"{self.get_type_map()} (valid: 0..{self.get_ntypes() - 1})")
        if box is not None:
            box = np.asarray(box, dtype=np.float64).reshape(nf, 9)
            if not np.isfinite(box).all():
                raise DataError("box is not finite")
        return coord, box, atype

    def _reference(self, coord, atype, box, first: int, nf: int) -> dict:
        """The NumPy complex-step reference, frame by frame with progress on stderr: each frame
        costs 3 nat + 10 model evaluations (minutes for 192 atoms), which users must not
        mistake for a hang."""
        from deepmd_md.backends.numpy.reference import evaluate

        if not DeepPot._reference_noted:
            DeepPot._reference_noted = True
            print("deepmd_md: backend 'numpy' is the complex-step reference (3 x atoms + 10 "
                  "model evaluations per frame): exact but slow; use 'torch' or 'jax' for speed",
                  file=sys.stderr, flush=True)
        parts = []
        for k in range(coord.shape[0]):
            t0 = time.perf_counter()
            b = None if box is None else box[k:k + 1]
            parts.append(evaluate(self.data, coord[k:k + 1], atype[k:k + 1], b))
            print(f"deepmd_md: numpy reference: frame {first + k + 1}/{nf} "
                  f"({coord.shape[1]} atoms) in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def _lower(self):
        """This model's forward_lower as a chunks.Lower (NumPy in, NumPy out), or None for the
        NumPy reference (it has no lower entry: complex-step forces on whole frames)."""
        if self._pt2 is not None:
            from deepmd_md.backends.torch.aoti import eval_pt2

            def pt2(ext, eatype, nlist, mapping):  # the package takes one frame
                outs = [eval_pt2(self._pt2, self.config, ext[f:f + 1], eatype[f:f + 1],
                                 nlist[f:f + 1], mapping[f:f + 1]) for f in range(ext.shape[0])]
                return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

            return pt2
        if self._module is not None:
            return self._pth_lower
        if self._adapter is None:
            return None

        def data(ext, eatype, nlist, mapping):
            return self._adapter.evaluate_lower(self.config, self._params, self._buffers, ext,
                                                eatype, nlist, mapping=mapping)

        return data

    def _pth_lower(self, ext, eatype, nlist, mapping) -> dict:
        """The TorchScript module: the engines' per-type entry (forward_blocked, frame by frame)
        when it has one, else forward_lower."""
        import torch

        # the interpreting executor, as the core runs .pth (backend_torch.cc): same numbers,
        # without the optimizing one's extra saved intermediates (DPA-2: ~40% less memory)
        with torch.jit.optimized_execution(False):
            return self._pth_call(ext, eatype, nlist, mapping)

    def _pth_call(self, ext, eatype, nlist, mapping) -> dict:
        import torch

        if not hasattr(self._module, "forward_blocked"):
            out = self._module.forward_lower(torch.as_tensor(ext), torch.as_tensor(eatype),
                                             torch.as_tensor(nlist), torch.as_tensor(mapping),
                                             None, None, False)
            return {k: v.detach().numpy() for k, v in out.items()}
        nloc, outs = nlist.shape[1], []
        for f in range(ext.shape[0]):
            nls, center = blocked_inputs(nlist[f:f + 1], eatype[f:f + 1, :nloc], self.get_sel())
            t = [torch.as_tensor(np.ascontiguousarray(x)) for x in (*nls, *center)]
            o = self._module.forward_blocked(torch.as_tensor(ext[f:f + 1]),
                                             torch.as_tensor(eatype[f:f + 1]),
                                             t[:len(nls)], t[len(nls):], False)
            outs.append({k: o[k].detach().numpy() for k in (keys.ATOM_ENERGY, keys.EXT_FORCE)})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def fold_lower(lo: dict, ext_coord, mapping, nat: int) -> dict:
    """forward_lower outputs -> forward outputs: ghost forces/virials summed onto their owners.

    lo: atom_energy [nf, nat], extended_force [nf, nall, 3]; ext_coord: [nf, nall, 3]."""
    ef = lo[keys.EXT_FORCE]
    nf = ef.shape[0]
    ev = (ext_coord[..., :, None] * ef[..., None, :]).reshape(nf, -1, 9)
    force = np.zeros((nf, nat, 3))
    av = np.zeros((nf, nat, 9))
    for f in range(nf):
        np.add.at(force[f], mapping[f], ef[f])
        np.add.at(av[f], mapping[f], ev[f])
    ae = lo[keys.ATOM_ENERGY]
    return {keys.ENERGY: ae.sum(-1), keys.ATOM_ENERGY: ae, keys.FORCE: force,
            keys.VIRIAL: av.sum(1), keys.ATOM_VIRIAL: av}


def _own_backend(path: str) -> str:
    """The framework a frozen file was written for (a .pb runs on TensorFlow, a .json on Paddle,
    a .savedmodel on JAX); torch for backend-neutral files (.dp, checkpoints)."""
    from deepmd_md.backends import REGISTRY
    from deepmd_md.formats import format_of

    fmt = format_of(path)
    name = fmt.backend if fmt is not None else ""
    return name if name in REGISTRY and REGISTRY[name].adapter else "torch"


def _adapter(name: str):
    from deepmd_md.backends import load_adapter

    return load_adapter(name)

"""DeepPot: evaluate a `.pth`, `.pt2`, `.dp` or checkpoint with DeePMD-kit's shapes.

`.pth` runs its TorchScript `forward_lower`, `.pt2` its compiled package (on our neighbor
list, as the engines call it); `.dp`/`.ckpt` run the shared model math on a chosen
backend (torch, jax or numpy, the complex-step reference). Input checks (NaN coordinates, bad
types, more neighbors than sel) are the same for every format.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from deepmd_md import keys
from deepmd_md.errors import ConfigError, DataError, ModelFileError
from deepmd_md.model.frames import prepare_frames
from deepmd_md.model.model import rcut_of, sel_of
from deepmd_md.serialize import load_dp


def load_model_data(path: str) -> dict:
    """ModelData of any model file (.pth carries its .dp inside)."""
    if path.endswith(".pth"):
        return _pth_extra(path)[1]
    if path.endswith(".pt2"):
        return _pt2_model_data(path)
    return load_dp(path)


def _pt2_model_data(path: str) -> dict:
    if not os.path.isfile(path):
        raise ModelFileError(f"model file not found: {path}")
    try:
        from deepmd_md.backends.torch.aoti import read_pt2_model_data
    except ImportError as e:
        raise ModelFileError(f"cannot read {path}: a .pt2 needs PyTorch ({e})") from None
    try:
        return read_pt2_model_data(path)
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}; this tool needs the weights: freeze the checkpoint "
                             "again, or use the .pth or .dp frozen from it") from None
    except RuntimeError as e:  # torch's zip reader on a file that is no archive
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"cannot read {path}: not a .pt2 package ({first})") from None


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
        raise ModelFileError(f"cannot load {path}: not a TorchScript model ({first})") from None
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


class DeepPot:
    """A potential: `DeepPot(path).eval(coord [nf, nat*3], box [nf, 9] | None, atype [nat])`."""

    def __init__(self, path: str, backend: str | None = None):
        self.path = str(path)
        self._module = self._pt2 = None
        if self.path.endswith(".pth") and backend in (None, "torch"):
            self._module, self.data, _ = _pth_extra(self.path)
            self.backend = "torch"
        elif self.path.endswith(".pt2") and backend in (None, "torch"):
            self._pt2, config = _pt2_load(self.path)
            self.data = {"config": config}
            self.backend = "torch"
        else:
            self.data = load_model_data(self.path)
            self.backend = backend or "torch"
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
        # a few thousand atoms per call: memory stays bounded whatever nf is
        step = max(1, ATOMS_PER_CALL // max(nat, 1))
        parts = []
        for i in range(0, nf, step):
            sl = slice(i, i + step)
            b = None if box is None else box[sl]
            prep = prepare_frames(self.config, coord[sl], atype[sl], b)  # also checks sel
            if self._pt2 is not None:
                parts.append(self._eval_pt2(coord[sl], prep))
            elif self._module is not None:
                parts.append(self._eval_pth(coord[sl], prep))
            else:
                parts.append(self._eval_data(coord[sl], atype[sl], b, prep, atomic))
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

    def _eval_pth(self, coord, prep) -> dict:
        """The frozen module's forward_lower on our neighbor list (a few candidates per atom
        instead of forward's all-pairs search), folded onto owners like every other path."""
        import torch

        mapping = prep[keys.MAPPING]
        ext = np.take_along_axis(coord, mapping[..., None], axis=1) + prep[keys.SHIFT]
        out = self._module.forward_lower(torch.as_tensor(ext), torch.as_tensor(prep[keys.EXT_ATYPE]),
                                         torch.as_tensor(prep[keys.NLIST]), torch.as_tensor(mapping),
                                         None, None, False)
        lo = {k: v.detach().numpy() for k, v in out.items()}
        return fold_lower(lo, ext, mapping, coord.shape[1])

    def _eval_pt2(self, coord, prep) -> dict:
        """The compiled package frame by frame (it takes one frame), folded like the others."""
        from deepmd_md.backends.torch.aoti import eval_pt2

        mapping = prep[keys.MAPPING]
        ext = np.take_along_axis(coord, mapping[..., None], axis=1) + prep[keys.SHIFT]
        outs = [eval_pt2(self._pt2, self.config, ext[f:f + 1], prep[keys.EXT_ATYPE][f:f + 1],
                         prep[keys.NLIST][f:f + 1], mapping[f:f + 1])
                for f in range(coord.shape[0])]
        lo = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        return fold_lower(lo, ext, mapping, coord.shape[1])

    def _eval_data(self, coord, atype, box, prep, atomic=False) -> dict:
        if self._adapter is None:
            from deepmd_md.backends.numpy.reference import evaluate

            if atomic:
                raise ConfigError("the numpy reference backend computes no per-atom virial; "
                                  "use backend='torch' or 'jax' for atomic=True")
            return evaluate(self.data, coord, atype, box)
        mapping = prep[keys.MAPPING]
        ext = np.take_along_axis(coord, mapping[..., None], axis=1) + prep[keys.SHIFT]
        lo = self._adapter.evaluate_lower(self.config, self._params, self._buffers, ext,
                                          prep[keys.EXT_ATYPE], prep[keys.NLIST],
                                          mapping=mapping)
        return fold_lower(lo, ext, mapping, coord.shape[1])


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


def _adapter(name: str):
    if name == "numpy":
        return None
    from deepmd_md.train.trainer import load_backend

    return load_backend(name)

"""Training/validation data with per-frame neighbor data prepared once (NumPy)."""

from __future__ import annotations

import dataclasses

import numpy as np

from deepmd_md import keys
from deepmd_md.data.batch import DataSampler, iterate_frames
from deepmd_md.data.system import find_systems, load_system, remap_types
from deepmd_md.model.frames import pad_nlist, prepare_frames, trim_nlist
from deepmd_md.model.model import sel_of, supports_blocked


class PreparedData:
    """Systems remapped to the model's type_map, with neighbor data for every frame.

    prep[i][key]: per-frame arrays of system i (mapping [nf, nall], shift [nf, nall, 3], ...),
    so a batch's neighbor data is an index away and never recomputed.
    """

    def __init__(self, model_config: dict, systems_spec, batch_size, sys_probs=None,
                 auto_prob="prob_sys_size", uniform: bool = False):
        paths = find_systems(systems_spec)
        tm = model_config["type_map"]
        self.systems = [_sorted_by_type(remap_types(load_system(p), tm)) for p in paths]
        self.sampler = DataSampler(self.systems, batch_size, sys_probs, auto_prob)
        self.config = model_config
        self.prep, self.widths = [], []
        for s in self.systems:
            p = prepare_frames(model_config, s.coord,
                               np.broadcast_to(s.atype, (s.nframes, s.natoms)), s.box)
            widths = None
            if supports_blocked(model_config):  # typed: drop slots empty in every frame
                p[keys.NLIST], widths = trim_nlist(p[keys.NLIST], sel_of(model_config))
            self.prep.append(p)
            self.widths.append(widths)
        if uniform:
            self._uniform_shapes()

    def _uniform_shapes(self):
        """Pad every system's nlist to the same per-type widths, and the extended atoms of
        systems with the same atom count to the same nall, so that a compiled step serves them
        all. Padded slots are empty (-1) and padded extended atoms are never neighbors, so the
        results do not change; a little more work for the systems that needed less."""
        widths = (None if self.widths[0] is None
                  else tuple(int(w) for w in np.max(self.widths, axis=0)))
        nall: dict = {}
        for s, p in zip(self.systems, self.prep, strict=True):
            nall[s.natoms] = max(nall.get(s.natoms, 0), p[keys.MAPPING].shape[1])
        for i, (s, p) in enumerate(zip(self.systems, self.prep, strict=True)):
            if widths is not None:
                p[keys.NLIST] = pad_nlist(p[keys.NLIST], self.widths[i], widths)
                self.widths[i] = widths
            extra = nall[s.natoms] - p[keys.MAPPING].shape[1]
            for k in (keys.MAPPING, keys.SHIFT, keys.EXT_ATYPE):
                pad = [(0, 0)] * p[k].ndim
                pad[1] = (0, extra)
                p[k] = np.pad(p[k], pad)

    def batch_prep(self, batch: dict) -> dict:
        i = int(batch[keys.SYSTEM_INDEX][0])
        frames = batch[keys.FRAME_INDEX]
        out = {k: v[frames] for k, v in self.prep[i].items()}
        counts = np.bincount(self.systems[i].atype, minlength=len(self.config["type_map"]))
        out[keys.TYPE_SPLIT] = tuple(int(c) for c in counts)
        if self.widths[i] is not None:
            out[keys.NLIST_WIDTHS] = self.widths[i]
        return out

    def sample(self, rng: np.random.Generator):
        b = self.sampler.sample(rng)
        return b, self.batch_prep(b)

    def all_batches(self, batch_size: int | None = None):
        """Every frame once, system by system: (batch, prep) pairs."""
        for i, s in enumerate(self.systems):
            bs = batch_size or self.sampler.batch_sizes[i]
            for b in iterate_frames(s, bs, i):
                yield b, self.batch_prep(b)

    def stat_frames(self, nbatch: int = 10):
        """Frames used for statistics: the first nbatch batches' worth of each system, with
        the nlist at its full sel width (statistics count every sel slot, empty ones as 0)."""
        sel = sel_of(self.config)
        for i, s in enumerate(self.systems):
            n = min(s.nframes, nbatch * self.sampler.batch_sizes[i])
            p = {k: v[:n] for k, v in self.prep[i].items()}
            if self.widths[i] is not None:
                p[keys.NLIST] = pad_nlist(p[keys.NLIST], self.widths[i], sel)
            yield s, p, s.coord[:n]


_FRAME_FIELDS = ("coord", "box", "energy", "force", "virial")


def _sorted_by_type(s):
    """The same system with atoms ordered by type (stable), so each fitting net sees only its
    own atoms; labels are permuted with the coordinates, nothing is lost."""
    order = np.argsort(s.atype, kind="stable")
    if np.all(order == np.arange(s.natoms)):
        return s
    perm = {"atype": s.atype[order], "coord": s.coord[:, order]}
    if s.force is not None:
        perm["force"] = s.force[:, order]
    return dataclasses.replace(s, **perm)


def compute_stats(model_config: dict, data: PreparedData) -> dict:
    """Env-matrix mean/std and per-type energy bias from the training data -> buffers dict."""
    from deepmd_md.data.stats import energy_bias
    from deepmd_md.model.frames import extended_coord
    from deepmd_md.model.model import descriptor_kind, model_dtype
    from deepmd_md.tree import tree_map2

    ntypes = len(model_config["type_map"])
    dcfg = model_config["descriptor"]
    kind = descriptor_kind(model_config)
    sums = None
    for _, prep, coord in data.stat_frames(model_config.get("data_stat_nbatch", 10)):
        ext = extended_coord(coord, np.zeros((coord.shape[0], 3, 3)), prep[keys.MAPPING],
                             prep[keys.SHIFT])
        part = kind.stat_sums(dcfg, ext, prep[keys.EXT_ATYPE], prep[keys.NLIST], ntypes)
        sums = part if sums is None else tree_map2(np.add, sums, part)
    dtype = model_dtype(model_config)
    stats = {"descriptor": kind.stats_from_sums(dcfg, sums, dtype,
                                                model_config.get("data_stat_protect", 1e-2))}
    n = model_config.get("data_bias_nsample", 10)  # the first n frames of each system
    firsts = [dataclasses.replace(s, **{k: getattr(s, k)[:n] for k in _FRAME_FIELDS
                                        if getattr(s, k) is not None}) for s in data.systems]
    bias = energy_bias(firsts, ntypes, model_config["fitting_net"].get("rcond"))
    stats["bias_atom_e"] = np.asarray(bias, dtype=dtype)
    return stats

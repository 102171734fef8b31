"""Batch sizes, system probabilities and batches drawn from a list of systems.

A batch holds frames of ONE system (systems differ in atom count), as DeePMD-kit does, and each
system is walked in shuffled epochs (every frame once per epoch). All randomness comes from the
`np.random.Generator` passed to `sample`; `DataSampler.state()` (small: generator states and
cursors) and `rng.bit_generator.state` in a checkpoint make a restart draw the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from deepmd_md import keys
from deepmd_md.data.system import System
from deepmd_md.errors import ConfigError

__all__ = [
    "resolve_batch_size",
    "resolve_batch_sizes",
    "system_probabilities",
    "make_batch",
    "DataSampler",
    "iterate_frames",
    "SYSTEM_INDEX",
    "FRAME_INDEX",
    "FIND_ENERGY",
    "FIND_FORCE",
]

SYSTEM_INDEX, FRAME_INDEX = keys.SYSTEM_INDEX, keys.FRAME_INDEX
FIND_ENERGY, FIND_FORCE = keys.FIND_ENERGY, keys.FIND_FORCE


def resolve_batch_size(spec, natoms: int, sys_index: int | None = None) -> int:
    """Batch size of one system of `natoms` atoms.

    spec: int; "auto" (= "auto:32"); "auto:N" -> smallest bs with bs * natoms >= N;
    a list -> spec[sys_index] (each entry any of the above).
    """
    where = "training/training_data/batch_size"
    if isinstance(spec, (list, tuple)):
        if sys_index is None or sys_index >= len(spec):
            raise ConfigError(
                f"{where}: list of {len(spec)} batch sizes but system {sys_index} has none; "
                "give one batch size per system"
            )
        spec = spec[sys_index]
    if isinstance(spec, bool):
        raise ConfigError(f"{where}: expected int, 'auto' or 'auto:N', got {spec!r}")
    if isinstance(spec, (int, np.integer)):
        if spec < 1:
            raise ConfigError(f"{where}: batch size must be >= 1, got {spec}")
        return int(spec)
    if isinstance(spec, str) and (spec == "auto" or spec.startswith("auto:")):
        try:
            rule = 32 if spec == "auto" else int(spec.split(":", 1)[1])
        except ValueError:
            rule = 0
        if rule < 1:
            raise ConfigError(f"{where}: bad '{spec}'; use 'auto' or 'auto:N' with integer N >= 1")
        return max(1, -(-rule // int(natoms)))
    raise ConfigError(f"{where}: expected int, 'auto' or 'auto:N', got {spec!r}")


def resolve_batch_sizes(spec, natoms: Sequence[int]) -> list[int]:
    """One batch size per system; a list spec must have one entry per system."""
    if isinstance(spec, (list, tuple)) and len(spec) != len(natoms):
        raise ConfigError(
            f"batch_size: list of {len(spec)} entries for {len(natoms)} systems; "
            "give one per system or a single value"
        )
    return [resolve_batch_size(spec, n, i) for i, n in enumerate(natoms)]


def _prob_sys_size_ext(rule: str, nbatches: np.ndarray) -> np.ndarray:
    """'prob_sys_size;0:2:0.5;2:4:0.5': blocks [stt, end) share `weight`, size-weighted inside."""
    nsys = nbatches.shape[0]
    probs = np.zeros(nsys)
    for block in rule.split(";")[1:]:
        try:
            stt, end, weight = block.split(":")
            stt, end, weight = int(stt), int(end), float(weight)
        except ValueError:
            raise ConfigError(
                f"auto_prob: bad block '{block}' in '{rule}'; use stt_idx:end_idx:weight"
            ) from None
        if not 0 <= stt < end <= nsys or weight < 0:
            raise ConfigError(f"auto_prob: block '{block}' out of range for {nsys} systems")
        nb = nbatches[stt:end].astype(np.float64)
        probs[stt:end] += weight * nb / nb.sum()
    if probs.sum() <= 0:
        raise ConfigError(f"auto_prob: '{rule}' gives every system zero probability")
    return probs / probs.sum()


def system_probabilities(
    nframes: Sequence[int],
    batch_sizes: Sequence[int],
    sys_probs: Sequence[float] | None = None,
    auto_prob: str = "prob_sys_size",
) -> np.ndarray:
    """[nsys] probabilities of picking each system; sys_probs (if given) wins over auto_prob.

    prob_sys_size: proportional to the number of batches of a system (nframes // bs, at least 1).
    """
    nsys = len(nframes)
    if sys_probs is not None:
        p = np.asarray(sys_probs, dtype=np.float64)
        if p.shape != (nsys,) or (p < 0).any() or p.sum() <= 0:
            raise ConfigError(
                f"sys_probs: need {nsys} non-negative numbers (one per system), got {list(p)}"
            )
        return p / p.sum()
    nbatches = np.maximum(np.asarray(nframes) // np.asarray(batch_sizes), 1)
    if auto_prob == "prob_uniform":
        return np.full(nsys, 1.0 / nsys)
    if auto_prob == "prob_sys_size":
        return nbatches / nbatches.sum()
    if auto_prob.startswith("prob_sys_size;"):
        return _prob_sys_size_ext(auto_prob, nbatches)
    raise ConfigError(
        f"auto_prob: unknown '{auto_prob}'; use prob_uniform, prob_sys_size or "
        "prob_sys_size;stt:end:weight;..."
    )


def make_batch(system: System, frames: np.ndarray, sys_index: int = 0) -> dict:
    """Batch dict of `frames` ([bs] int) of `system`; missing labels are zeros with find_* = 0."""
    frames = np.asarray(frames, dtype=np.int64)
    bs, nat = frames.shape[0], system.natoms
    out = {
        keys.COORD: system.coord[frames],
        keys.ATYPE: np.broadcast_to(system.atype, (bs, nat)).copy(),
        keys.BOX: None if system.box is None else system.box[frames],
        SYSTEM_INDEX: np.full(bs, sys_index, dtype=np.int64),
        FRAME_INDEX: frames,
    }
    for key, find, src, shape in (
        (keys.LABEL_ENERGY, FIND_ENERGY, system.energy, (bs,)),
        (keys.LABEL_FORCE, FIND_FORCE, system.force, (bs, nat, 3)),
        (keys.LABEL_VIRIAL, keys.FIND_VIRIAL, system.virial, (bs, 9)),
    ):
        out[key] = np.zeros(shape) if src is None else src[frames]
        out[find] = 0.0 if src is None else 1.0
    return out


class DataSampler:
    """Draws training batches: pick a system by probability, then its next bs frames in a
    shuffled epoch (DeePMD-kit's order: every frame once per epoch, reshuffled each epoch).

    systems: list of System (types already remapped to the model's type_map).
    batch_size: int, "auto", "auto:N" or a list with one per system.
    """

    def __init__(
        self,
        systems: Sequence[System],
        batch_size=1,
        sys_probs: Sequence[float] | None = None,
        auto_prob: str = "prob_sys_size",
    ):
        if not systems:
            raise ConfigError("systems: no training system given; list at least one")
        self.systems = list(systems)
        self.batch_sizes = resolve_batch_sizes(batch_size, [s.natoms for s in self.systems])
        self.probs = system_probabilities(
            [s.nframes for s in self.systems], self.batch_sizes, sys_probs, auto_prob
        )
        self._epochs: dict = {}  # system -> {"gen": bit-generator state, "cursor": next frame}
        self._cache: dict = {}

    def sample(self, rng: np.random.Generator) -> dict:
        """One batch (see make_batch) using only `rng` (and the epoch state) for randomness."""
        isys = int(rng.choice(len(self.systems), p=self.probs))
        system, bs = self.systems[isys], self.batch_sizes[isys]
        nf = system.nframes
        if bs > nf:  # more frames wanted than exist: whole permutations, then a partial one
            reps = -(-bs // nf)
            frames = np.concatenate([rng.permutation(nf) for _ in range(reps)])[:bs]
            return make_batch(system, frames, isys)
        ep = self._epochs.get(isys)
        if ep is None or ep["cursor"] + bs > nf:  # a new epoch (a short tail is skipped)
            gen = np.random.default_rng(int(rng.integers(2**63)))
            ep = self._epochs[isys] = {"gen": gen.bit_generator.state, "cursor": 0}
        order = self._order(isys, ep)
        frames = order[ep["cursor"] : ep["cursor"] + bs]
        ep["cursor"] += bs
        return make_batch(system, frames, isys)

    def _order(self, isys: int, ep: dict) -> np.ndarray:
        """The epoch's frame order, regenerated from its generator state (cached)."""
        key = (isys, str(ep["gen"]))
        if self._cache.get(isys, (None,))[0] != key:
            gen = np.random.default_rng()
            gen.bit_generator.state = ep["gen"]
            self._cache[isys] = (key, gen.permutation(self.systems[isys].nframes))
        return self._cache[isys][1]

    def state(self) -> dict:
        """Epoch state per system (JSON-able), for checkpoints."""
        return {str(i): dict(ep) for i, ep in self._epochs.items()}

    def load_state(self, state: dict) -> None:
        self._epochs = {int(i): dict(ep) for i, ep in state.items()}


def iterate_frames(system: System, batch_size: int, sys_index: int = 0) -> Iterator[dict]:
    """Consecutive batches over all frames in order (the last one may be smaller)."""
    for start in range(0, system.nframes, batch_size):
        frames = np.arange(start, min(start + batch_size, system.nframes))
        yield make_batch(system, frames, sys_index)

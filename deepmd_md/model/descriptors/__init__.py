"""Descriptors: one module per family, registered by `type`; the model sees only this interface.

A descriptor module defines, for its normalised config `cfg` (the `descriptor` section):

    TYPES: tuple[str, ...]                 the `type` names it serves (aliases resolved by config)
    mixed_types(cfg) -> bool               nlist form: False = type-blocked (block t holds sel[t]
                                           slots of type-t neighbors), True = one block of the
                                           nearest neighbors of any type, nearest first
    rcut(cfg) -> float                     cutoff of the nlist it is given (its largest)
    sel(cfg) -> list[int]                  nlist widths: one per type, or [n] when mixed
    out_dim(cfg, ntypes) -> int            width of D
    message_passing(cfg) -> bool           True: needs ghost features (comm), see model/comm.py
    receptive_field(cfg) -> float          how far an atom's energy sees (rcut x layers for GNNs)
    init_params(cfg, ntypes, rng, dtype) -> params tree (NumPy)
    init_stats(cfg, ntypes, dtype) -> stats tree (NumPy; buffers["descriptor"])
    stat_sums(cfg, ext_coord, ext_atype, nlist, ntypes) -> tree of NumPy sums (add over frames)
    stats_from_sums(cfg, sums, dtype, protection) -> stats tree
    compute(cfg, params, stats, ext_coord, ext_atype, nlist, comm=None, widths=None)
        -> D [nf, nloc, out_dim]          (array API; nlist formatted per mixed_types/rcut/sel;
                                           comm: model/comm.py exchange, for message passing)

Optional: `compute_blocked` (engines' per-type fast path, typed descriptors only), `check(cfg,
ntypes)` (consistency checks raising ConfigError), `sel_key(cfg)` (the input key setting the
nlist width, e.g. "repflow/e_sel", named in "sel too small" errors; default "sel").
Adding a descriptor = one module + one line in `_MODULES`; nothing else in the code names
descriptor types.
"""

from __future__ import annotations

import importlib

from deepmd_md.errors import ConfigError

_MODULES = ("se_e2", "se_atten", "dpa2", "dpa3", "hybrid")
_REGISTRY: dict = {}


def _load() -> dict:
    if not _REGISTRY:
        for name in _MODULES:
            try:
                mod = importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as e:  # a family still being written
                if e.name != f"{__name__}.{name}":
                    raise
                continue
            for t in mod.TYPES:
                _REGISTRY[t] = mod
    return _REGISTRY


def registered() -> tuple[str, ...]:
    return tuple(_load())


def kind(cfg: dict):
    """The module serving descriptor config `cfg`."""
    reg = _load()
    t = cfg.get("type")
    if t not in reg:
        raise ConfigError(f"descriptor type {t!r} is not implemented (known: {', '.join(reg)})")
    return reg[t]


def format_for(cfg: dict, ext_coord, ext_atype, candidates):
    """The nlist `compute` expects, from raw candidates [nf, nloc, *] (any order, -1 padded)."""
    from deepmd_md.model.env import format_nlist

    k = kind(cfg)
    return format_nlist(ext_coord, ext_atype, candidates, k.rcut(cfg), k.sel(cfg),
                        mixed=k.mixed_types(cfg))


def schemas() -> tuple[dict, dict]:
    """(type -> its Args, alias -> type) over every registered descriptor module."""
    choices, alias, seen = {}, {}, set()
    for mod in _load().values():
        if id(mod) in seen:
            continue
        seen.add(id(mod))
        choices.update(mod.schema())
        alias.update(getattr(mod, "ALIASES", {}))
    return choices, alias

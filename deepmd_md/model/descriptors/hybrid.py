"""`hybrid`: several descriptors side by side, their outputs concatenated (DeePMD-kit's
`{"type": "hybrid", "list": [...]}`).

The model's nlist is at the largest cutoff and wide enough for every member (typed members only:
per-type blocks of the largest sel; else one distance-sorted block of the largest total sel);
each member formats its own list from it (format_nlist re-sorts and re-blocks, so typed and
mixed members combine). Parameters and statistics: one subtree
per member, "0", "1", ... (lists in the tree)."""

from __future__ import annotations

from deepmd_md.errors import ConfigError
from deepmd_md.model import descriptors
from deepmd_md.model.xp import array_namespace

TYPES = ("hybrid",)
ALIASES: dict = {}


def _members(cfg: dict):
    return [(descriptors.kind(c), c) for c in cfg["list"]]


def mixed_types(cfg: dict) -> bool:
    """Mixed when any member is (then one fitting net for all types, as DeePMD-kit)."""
    return any(k.mixed_types(c) for k, c in _members(cfg))


def rcut(cfg: dict) -> float:
    return max(k.rcut(c) for k, c in _members(cfg))


def sel(cfg: dict) -> list[int]:
    """Typed members only: per type, the largest member sel; else one block as wide as the
    largest member's total."""
    if mixed_types(cfg):
        return [max(sum(k.sel(c)) for k, c in _members(cfg))]
    return [max(col) for col in zip(*(k.sel(c) for k, c in _members(cfg)), strict=True)]


def out_dim(cfg: dict, ntypes: int) -> int:
    return sum(k.out_dim(c, ntypes) for k, c in _members(cfg))


def message_passing(cfg: dict) -> bool:
    return any(k.message_passing(c) for k, c in _members(cfg))


def receptive_field(cfg: dict) -> float:
    return max(k.receptive_field(c) for k, c in _members(cfg))


def check(cfg: dict, ntypes: int | None) -> None:
    if not cfg["list"]:
        raise ConfigError("'model/descriptor/list' of a hybrid descriptor is empty")
    for i, (k, c) in enumerate(_members(cfg)):
        if c["type"] == "hybrid":
            raise ConfigError(f"'model/descriptor/list/{i}': a hybrid inside a hybrid; "
                              "list its members directly")
        if hasattr(k, "check"):
            k.check(c, ntypes)


def init_params(cfg: dict, ntypes: int, rng, dtype) -> list:
    return [k.init_params(c, ntypes, rng, dtype) for k, c in _members(cfg)]


def init_stats(cfg: dict, ntypes: int, dtype) -> list:
    return [k.init_stats(c, ntypes, dtype) for k, c in _members(cfg)]


def _member_nlist(k, c, ext_coord, ext_atype, nlist):
    from deepmd_md.model.env import format_nlist

    return format_nlist(ext_coord, ext_atype, nlist, k.rcut(c), k.sel(c),
                        mixed=k.mixed_types(c))


def stat_sums(cfg: dict, ext_coord, ext_atype, nlist, ntypes: int) -> list:
    return [k.stat_sums(c, ext_coord, ext_atype, _member_nlist(k, c, ext_coord, ext_atype, nlist),
                        ntypes) for k, c in _members(cfg)]


def stats_from_sums(cfg: dict, sums: list, dtype, protection: float = 1e-2) -> list:
    return [k.stats_from_sums(c, s, dtype, protection)
            for (k, c), s in zip(_members(cfg), sums, strict=True)]


def compute(cfg: dict, params, stats, ext_coord, ext_atype, nlist, comm=None, widths=None):
    """[nf, nloc, sum of the members' out_dim]: each member on its own formatted nlist."""
    xp = array_namespace(ext_coord)
    outs = [k.compute(c, p, s, ext_coord, ext_atype,
                      _member_nlist(k, c, ext_coord, ext_atype, nlist), comm=comm)
            for (k, c), p, s in zip(_members(cfg), params, stats, strict=True)]
    return xp.concat(outs, axis=-1)


def schema() -> dict:
    from deepmd_md.config.schema import REQUIRED, Arg

    def member_variant():
        from deepmd_md.config.args import DESCRIPTOR

        return DESCRIPTOR

    return {"hybrid": (
        Arg("list", "list[dict]", REQUIRED, "The member descriptors (each a descriptor section, "
            "any type but hybrid); their outputs are concatenated.", variant=member_variant),
    )}

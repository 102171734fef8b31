"""Two-body embedding descriptors se_e2_a (full env matrix) and se_e2_r (radial only).

Math (Zhang et al. 2018, DeePMD-kit v2/v3 papers): for center i with normalised env rows R_ij,
G_ij = N_{t_j}(s_ij) (or N_{t_i,t_j} without type_one_side), T_i = G_i^T R_i / nnei [M1, 4] and
D_i = T_i T_i[:M2]^T [M1, M2] (se_e2_a), or D_i = sum_j G_ij / nnei [M1] (se_e2_r).
The neighbor list must be type-blocked (see env.format_nlist): block t = sel[t] slots of type t.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from deepmd_md.errors import ConfigError
from deepmd_md.kernels import env_mat
from deepmd_md.kernels.tabulate import fusion
from deepmd_md.model.descriptors.stats import env_stat_sums, env_stats_from_sums, init_env_stats
from deepmd_md.model.nn import apply_embedding_fm, init_net
from deepmd_md.model.xp import array_namespace

TYPES = ("se_e2_a", "se_e2_r")


ALIASES = {"se_a": "se_e2_a", "se_r": "se_e2_r"}


def schema() -> dict:
    return {"se_e2_a": _args(angular=True), "se_e2_r": _args(angular=False)}


def is_radial(cfg: dict) -> bool:
    return cfg["type"] == "se_e2_r"


def mixed_types(cfg: dict) -> bool:
    return False


def rcut(cfg: dict) -> float:
    return float(cfg["rcut"])


def sel(cfg: dict) -> list[int]:
    return list(cfg["sel"])


def message_passing(cfg: dict) -> bool:
    return False


def receptive_field(cfg: dict) -> float:
    return float(cfg["rcut"])


def check(cfg: dict, ntypes: int | None) -> None:
    """Cutoffs in order; one sel per type (ntypes None: type_map not known yet)."""
    if cfg["rcut_smth"] >= cfg["rcut"]:
        raise ConfigError(f"'model/descriptor/rcut_smth' ({cfg['rcut_smth']}) must be smaller "
                          f"than 'model/descriptor/rcut' ({cfg['rcut']})")
    sel = cfg["sel"]
    if ntypes is not None and isinstance(sel, list) and len(sel) != ntypes:
        raise ConfigError(f"'model/descriptor/sel' has {len(sel)} entries but 'model/type_map' "
                          f"has {ntypes} types; give one sel per type")


def out_dim(cfg: dict, ntypes: int = 0) -> int:
    m1 = cfg["neuron"][-1]
    return m1 if is_radial(cfg) else m1 * cfg["axis_neuron"]


def net_keys(cfg: dict, ntypes: int) -> list[str]:
    """Names of the embedding nets: 't{j}' per neighbor type, or 't{i}_{j}' per type pair."""
    if cfg.get("type_one_side", True):
        return [f"t{j}" for j in range(ntypes)]
    return [f"t{i}_{j}" for i in range(ntypes) for j in range(ntypes)]


def init_params(cfg: dict, ntypes: int, rng: np.random.Generator, dtype) -> dict:
    sizes = [1, *cfg["neuron"]]
    return {k: init_net(rng, sizes, cfg["resnet_dt"], dtype, embedding=True) for k in net_keys(cfg, ntypes)}


def init_stats(cfg: dict, ntypes: int, dtype) -> dict:
    return init_env_stats(ntypes, is_radial(cfg), dtype)


def normalised_env(cfg: dict, stats: dict, ext_coord, ext_atype, nlist):
    """(env - davg[t_i]) / dstd[t_i]: [nf, nloc, nnei, 4|1]. Empty slots equal a neighbor at rcut.

    Compressed models (tabulated nets) take the framework's fused op where there is one
    (deepmd_md/kernels/env_mat.py: first order, like the tabulation ops); others the array math."""
    return env_mat.normalised(ext_coord, ext_atype, nlist, stats["davg"], stats["dstd"],
                              cfg["rcut_smth"], cfg["rcut"],
                              fused=stats.get("compress") is not None)


def compute(cfg: dict, params: dict, stats: dict, ext_coord, ext_atype, nlist, comm=None,
            widths=None):
    """Descriptor D: [nf, nloc, out_dim(cfg)].

    ext_coord: [nf, nall, 3]; ext_atype: [nf, nall]; nlist: [nf, nloc, sum(widths)] type-blocked.
    widths: slots kept per type (static, <= sel) when the caller dropped trailing slots that are
    empty in every atom; their exact contribution (each equals a neighbor at rcut) is added back
    in closed form, so the result equals the full-sel descriptor.
    """
    sel = list(cfg["sel"])
    widths = sel if widths is None else list(widths)
    fused = _fused(cfg, stats, ext_coord)
    env = None if fused else normalised_env(cfg, stats, ext_coord, ext_atype, nlist)
    nloc = nlist.shape[1]
    atype = ext_atype[:, :nloc]
    blocks, start = [], 0
    for tj, width in enumerate(widths):
        # padded slots inside the block are computed like real empty slots: no mask needed
        rows = (_Rows(ext_coord, ext_atype, nlist[:, :, start : start + width], False) if fused
                else env[:, :, start : start + width, :])
        blocks.append((rows, None, sel[tj] - width))
        start += width
    return _reduce(cfg, params, stats, atype, blocks)


def compute_blocked(cfg: dict, params: dict, stats: dict, ext_coord, ext_atype, nlists):
    """compute() from one neighbor list per type, each of any width (dynamic shapes).

    nlists[t]: [nf, nloc, w_t], w_t <= sel[t], type-t neighbors inside rcut (-1 padded).
    Padded slots are masked out and all sel[t] - count empty slots of each atom are added in
    closed form, so no size is read as a number: the trace keeps every width symbolic.
    """
    xp = array_namespace(ext_coord)
    sel = list(cfg["sel"])
    nloc = nlists[0].shape[1]
    atype = ext_atype[:, :nloc]
    blocks = []
    fused = _fused(cfg, stats, ext_coord)
    for tj, nl in enumerate(nlists):
        if fused:  # the op skips the padded slots itself
            mask = xp.astype(nl >= 0, ext_coord.dtype)  # [nf, nloc, w]
            blocks.append((_Rows(ext_coord, ext_atype, nl, True), mask,
                           sel[tj] - xp.sum(mask, axis=-1)))
            continue
        env = normalised_env(cfg, stats, ext_coord, ext_atype, nl)
        mask = xp.astype(nl >= 0, env.dtype)  # [nf, nloc, w]
        blocks.append((env, mask, sel[tj] - xp.sum(mask, axis=-1)))
    return _reduce(cfg, params, stats, atype, blocks)


class _Rows(NamedTuple):
    """A type block left to the fused compressed se_e2_a op (env rows never leave it):
    nlist [nf, nloc, w]; skip_empty: padded slots add nothing (their mask is 0)."""

    ext_coord: object
    ext_atype: object
    nlist: object
    skip_empty: bool


def _fused(cfg: dict, stats: dict, ext_coord) -> bool:
    """Compressed se_e2_a on a framework with the one-op block (kernels/env_mat.py)."""
    return (stats.get("compress") is not None and not is_radial(cfg)
            and env_mat.kernel_for(ext_coord, "se_a") is not None)


def _fused_part(cfg: dict, stats: dict, tab: dict, net: dict, rows: _Rows, mask):
    """G^T R [nf, nloc, M1, 4] of a _Rows block: the op, or (a library without it) the env
    rows and the tabulation op."""
    part = env_mat.se_a_block(tab, rows.ext_coord, rows.ext_atype, rows.nlist, stats["davg"],
                              stats["dstd"], cfg["rcut_smth"], cfg["rcut"], rows.skip_empty)
    if part is not None:
        return part
    env = normalised_env(cfg, stats, rows.ext_coord, rows.ext_atype, rows.nlist)
    return _tabulated(cfg, tab, net, env, mask)


def _reduce(cfg: dict, params: dict, stats: dict, atype, blocks):
    """G^T R / nnei (or sum G / nnei) over type blocks, then D.

    blocks[tj] = (env [nf, nloc, w, c] or a _Rows left to the fused op, mask [nf, nloc, w] or
    None, n_empty: int or [nf, nloc]): empty slots left out of env, each adding the closed-form
    empty-slot term."""
    xp = array_namespace(atype)
    sel = list(cfg["sel"])
    ntypes = len(sel)
    one_side = cfg.get("type_one_side", True)
    act = cfg["activation_function"]
    tables = stats.get("compress")  # tabulated nets (dpmd compress), by net name
    acc = None
    for tj, (block, mask, n_empty) in enumerate(blocks):
        for ti in [None] if one_side else range(ntypes):
            net = params[f"t{tj}"] if one_side else params[f"t{ti}_{tj}"]
            if tables is not None:  # compressed: the fused tabulate + contract kernel
                tab = tables[f"t{tj}" if one_side else f"t{ti}_{tj}"]
                part = (_fused_part(cfg, stats, tab, net, block, mask)
                        if isinstance(block, _Rows) else _tabulated(cfg, tab, net, block, mask))
            else:
                nf, nloc, w = block.shape[:3]
                s = xp.reshape(block[..., 0], (1, nf * nloc * w))
                g = apply_embedding_fm(net, s, act)  # [M1, pairs]
                g = xp.permute_dims(xp.reshape(g, (g.shape[0], nf, nloc, w)), (1, 2, 0, 3))
                if is_radial(cfg):  # g: [nf, nloc, M1, w]
                    part = xp.sum(g if mask is None else g * mask[:, :, None, :], axis=3)
                else:
                    rows = block if mask is None else block * mask[..., None]
                    part = xp.matmul(g, rows)  # [nf, nloc, M1, 4]
            if not isinstance(n_empty, int):  # per atom: [nf, nloc] -> broadcast over M1(, 4)
                term = _empty_slot_term(cfg, net, stats, atype, act)
                part = part + xp.reshape(n_empty, (*n_empty.shape, *([1] * (term.ndim - 2)))) * term
            elif n_empty > 0:
                part = part + n_empty * _empty_slot_term(cfg, net, stats, atype, act)
            if ti is not None:
                sel_i = xp.reshape(atype == ti, (*atype.shape, *([1] * (part.ndim - 2))))
                part = xp.where(sel_i, part, xp.zeros_like(part))
            acc = part if acc is None else acc + part
    acc = acc / sum(sel)
    if is_radial(cfg):
        return acc
    m2 = cfg["axis_neuron"]
    d = xp.matmul(acc, xp.matrix_transpose(acc[:, :, :m2, :]))  # [nf, nloc, M1, M2]
    return xp.reshape(d, (d.shape[0], d.shape[1], d.shape[2] * m2))


def _tabulated(cfg: dict, tab: dict, net: dict, block, mask):
    """G^T R [nf, nloc, M1, 4] (or sum G [nf, nloc, M1]) of one type block by the tabulated
    net (deepmd_md/kernels/tabulate.py): block [nf, nloc, w, c], mask [nf, nloc, w] or None."""
    xp = array_namespace(block)
    nf, nloc, w, c = block.shape
    s = xp.reshape(block[..., 0], (nf * nloc, w))
    if is_radial(cfg):
        em = xp.ones_like(s) if mask is None else xp.reshape(mask, (nf * nloc, w))
        em = em[..., None]
    else:
        em = block if mask is None else block * mask[..., None]
        em = xp.reshape(em, (nf * nloc, w, c))
    out = fusion(tab, net, cfg["activation_function"], s, em)  # [nf * nloc, M1, c]
    shape = (nf, nloc, out.shape[1]) if is_radial(cfg) else (nf, nloc, out.shape[1], c)
    return xp.reshape(out, shape)


def _empty_slot_term(cfg, net, stats, atype, act):
    """Contribution of one empty slot to G^T R (or sum G) per local atom: [nf, nloc, M1(, 4)].

    An empty slot's normalised row is -davg/dstd of the center type (env = 0)."""
    xp = array_namespace(atype)
    row = -stats["davg"] / stats["dstd"]  # [nt, c]
    g = xp.matrix_transpose(apply_embedding_fm(net, xp.matrix_transpose(row[:, :1]), act))  # [nt, M1]
    term = g if is_radial(cfg) else g[:, :, None] * row[:, None, :]  # [nt, M1(, 4)]
    flat = xp.take(term, xp.reshape(atype, (-1,)), axis=0)
    return xp.reshape(flat, (*atype.shape, *term.shape[1:]))


def stat_sums(cfg: dict, ext_coord, ext_atype, nlist, ntypes: int) -> np.ndarray:
    return env_stat_sums(ext_coord, ext_atype, nlist, cfg["rcut_smth"], cfg["rcut"], ntypes)


def stats_from_sums(cfg: dict, sums: np.ndarray, dtype, protection: float = 1e-2) -> dict:
    return env_stats_from_sums(sums, is_radial(cfg), dtype, protection,
                               cfg.get("set_davg_zero", False))


# -- input keys --------------------------------------------------------------------------------

SEL_DOC = (
    "Neighbors kept per neighbor type: a list with one int per type (at least the largest "
    "count within rcut), or 'auto' / 'auto:factor' = neighbor-stat maximum x factor (1.1), "
    "rounded up to a multiple of 4."
)


def _args(angular: bool) -> tuple:
    # imported here: deepmd_md.config builds its schema from this registry (import cycle)
    from deepmd_md.config.common import (
        U,
        activation,
        check_neuron,
        check_nonneg,
        check_positive,
        check_sel,
        precision,
    )
    from deepmd_md.config.schema import Arg

    args = [
        Arg("sel", "list[int]|str", "auto", SEL_DOC, check=check_sel),
        Arg("rcut", "float", 6.0, "Cut-off radius (Å).", check=check_positive),
        Arg("rcut_smth", "float", 0.5, "Where the smooth switch to zero starts (Å).",
            check=check_nonneg),
        Arg("neuron", "list[int]", [10, 20, 40], "Embedding-net hidden layer sizes.",
            check=check_neuron),
    ]  # fmt: skip
    if angular:
        args.append(
            Arg("axis_neuron", "int", 4, "Columns of the embedding matrix kept for the "
                "symmetry-preserving product (M2).", alias=("n_axis_neuron",),
                check=check_positive)
        )  # fmt: skip
    args += [
        activation("embedding net"),
        Arg("resnet_dt", "bool", False, "Scale the residual connections by a trainable dt."),
        Arg("type_one_side", "bool", False,
            "One embedding net per neighbor type (true) or per (center, neighbor) type pair."),
        precision("embedding net"),
        Arg("trainable", "bool", True, "Whether the embedding-net parameters are trained."),
        Arg("seed", "int|None", None, "Seed of the parameter initialisation."),
        Arg("exclude_types", "list[list[int]]", [], "Type pairs without interaction.",
            status=U),
        Arg("env_protection", "float", 0.0, "Protection added to distances in the environment "
            "matrix normalisation.", status=U),
        Arg("set_davg_zero", "bool", False,
            "Use a zero mean in the environment-matrix normalisation."),
    ]  # fmt: skip
    return tuple(args)

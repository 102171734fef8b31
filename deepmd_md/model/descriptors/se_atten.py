"""DPA-1: the attention-based descriptor se_atten (alias dpa1) and se_atten_v2.

Math (Zhang et al., npj Comput. Mater. 2024; DeePMD-kit's "Descriptor se_atten" docs), for a
center i with its nnei = sel nearest neighbors of any type (nearest first, padded):

    R_ij = (env_ij - davg[t_i]) / dstd[t_i]            normalised env rows (s, s x/r, s y/r, s z/r)
    G_ij = N([R_ij,0, A_j(, A_i)])                     tebd_input_mode "concat"
    G_ij = N(R_ij,0) (1 + N_t([A_j(, A_i)]) [sw_ij])   "strip" ([sw]: smooth_type_embedding)
    G <- G + LayerNorm(attention(G)),  attn_layer times (see attention.py)
    T_i = G_i^T R_i / nnei,  D_i = T_i T_i[:M2]^T  [M1 x M2],  then [D_i, A_i] (concat_output_tebd)

A = the type embedding (type_embedding.py). se_atten_v2 is se_atten with tebd_input_mode
"strip" and smooth_type_embedding true, neither settable.

Empty slots, as DeePMD-kit's (black-box probes): R = -davg/dstd, the type of extended atom 0 of
the frame, no attention from or (masked attention) to them; the smooth attention gives them
logit -20. An excluded type pair (exclude_types) is an empty slot whose R row is 0.
Consequences shared with DeePMD-kit: without smooth_type_embedding the energy is not
continuous at rcut; with davg != 0 (set_davg_zero false) the concat mode depends on the type
of atom 0 (not permutation invariant) and exclude_types is not continuous at rcut.
"""

from __future__ import annotations

import numpy as np

from deepmd_md.kernels.tabulate import tabulate
from deepmd_md.model import type_embedding
from deepmd_md.model.descriptors import attention
from deepmd_md.model.descriptors.stats import env_stat_sums, env_stats_from_sums, init_env_stats
from deepmd_md.model.env import env_matrix, gather_neighbors, neighbor_vectors, switch
from deepmd_md.model.nn import apply_net, init_net
from deepmd_md.model.xp import array_namespace

TYPES = ("se_atten", "se_atten_v2")
ALIASES = {"dpa1": "se_atten"}


def is_v2(cfg: dict) -> bool:
    return cfg["type"] == "se_atten_v2"


def strip(cfg: dict) -> bool:
    """Type embedding through its own net (True) or concatenated to the radial input."""
    if is_v2(cfg):
        return True
    old = cfg.get("stripped_type_embedding")  # deprecated; decides when set
    return bool(old) if old is not None else cfg.get("tebd_input_mode", "concat") == "strip"


def smooth(cfg: dict) -> bool:
    return is_v2(cfg) or bool(cfg.get("smooth_type_embedding", False))


def mixed_types(cfg: dict) -> bool:
    return True


def rcut(cfg: dict) -> float:
    return float(cfg["rcut"])


def nsel(cfg: dict) -> int:
    s = cfg["sel"]
    return int(s) if isinstance(s, int) else int(sum(s))


def sel(cfg: dict) -> list[int]:
    return [nsel(cfg)]


def message_passing(cfg: dict) -> bool:
    return False


def receptive_field(cfg: dict) -> float:
    return float(cfg["rcut"])


def out_dim(cfg: dict, ntypes: int = 0) -> int:
    d = cfg["neuron"][-1] * cfg["axis_neuron"]
    return d + cfg["tebd_dim"] if cfg.get("concat_output_tebd", True) else d


def check(cfg: dict, ntypes: int | None) -> None:
    from deepmd_md.errors import ConfigError

    if isinstance(cfg["sel"], str):
        return
    if cfg["axis_neuron"] > cfg["neuron"][-1]:
        raise ConfigError(f"model/descriptor/axis_neuron ({cfg['axis_neuron']}) must be <= the "
                          f"last embedding width neuron[-1] ({cfg['neuron'][-1]})")
    if nsel(cfg) < 1:
        raise ConfigError("model/descriptor/sel must keep at least one neighbor")


# -- parameters --------------------------------------------------------------------------------


def _tebd_in(cfg: dict) -> int:
    """Width of the type-embedding part of a pair's input: A_j, or [A_j, A_i]."""
    return cfg["tebd_dim"] * (1 if cfg.get("type_one_side", False) else 2)


def init_params(cfg: dict, ntypes: int, rng: np.random.Generator, dtype) -> dict:
    neuron, dt = list(cfg["neuron"]), cfg["resnet_dt"]
    ng = neuron[-1]
    params = {
        "type_embedding": type_embedding.init_params(cfg["tebd_dim"], ntypes, rng, dtype,
                                                     use_bias=cfg.get("use_tebd_bias", False)),
    }
    if strip(cfg):
        params["embedding"] = init_net(rng, [1, *neuron], dt, dtype, embedding=True)
        params["embedding_strip"] = init_net(rng, [_tebd_in(cfg), *neuron], dt, dtype,
                                             embedding=True)
    else:
        params["embedding"] = init_net(rng, [1 + _tebd_in(cfg), *neuron], dt, dtype,
                                       embedding=True)
    params["attention"] = [attention.init_layer(ng, cfg["attn"], rng, dtype,
                                                cfg.get("trainable_ln", True))
                           for _ in range(cfg["attn_layer"])]
    return params


def init_stats(cfg: dict, ntypes: int, dtype) -> dict:
    return init_env_stats(ntypes, False, dtype)


def stat_sums(cfg: dict, ext_coord, ext_atype, nlist, ntypes: int) -> np.ndarray:
    return env_stat_sums(ext_coord, ext_atype, nlist, cfg["rcut_smth"], cfg["rcut"], ntypes)


def stats_from_sums(cfg: dict, sums: np.ndarray, dtype, protection: float = 1e-2) -> dict:
    return env_stats_from_sums(sums, False, dtype, protection, cfg.get("set_davg_zero", False))


# -- compute -----------------------------------------------------------------------------------


def _pair_embedding(cfg: dict, params: dict, table, atype, ntype, ss, sw, tab=None):
    """G [nf, nloc, nnei, M1] from normalised s [nf, nloc, nnei] and types ([nf, nloc],
    [nf, nloc, nnei]). tab: the radial net's table (compressed models, strip mode)."""
    xp = array_namespace(ss)
    act = cfg["activation_function"]
    one_side = cfg.get("type_one_side", False)
    nf, nloc, nnei = ss.shape
    if not strip(cfg):
        parts = [ss[..., None], type_embedding.lookup(table, ntype)]
        if not one_side:
            ti = type_embedding.lookup(table, atype)[:, :, None, :]
            parts.append(xp.broadcast_to(ti, (nf, nloc, nnei, ti.shape[-1])))
        return apply_net(params["embedding"], xp.concat(parts, axis=-1), act, embedding=True)
    if tab is not None:
        gs = tabulate(tab, params["embedding"], act, ss)
    else:
        gs = apply_net(params["embedding"], ss[..., None], act, embedding=True)
    # the type net on every (neighbor, center) type pair, then a gather
    table = table[:-1]  # an empty slot has a real type (see compute): no padding row
    ntp = table.shape[0]
    if one_side:
        tt = apply_net(params["embedding_strip"], table, act, embedding=True)  # [ntp, M1]
        idx = ntype
    else:
        tj = xp.reshape(xp.broadcast_to(table[:, None, :], (ntp, ntp, table.shape[1])),
                        (ntp * ntp, -1))
        ti = xp.reshape(xp.broadcast_to(table[None, :, :], (ntp, ntp, table.shape[1])),
                        (ntp * ntp, -1))
        tt = apply_net(params["embedding_strip"], xp.concat([tj, ti], axis=-1), act,
                       embedding=True)  # [ntp * ntp, M1], row tj * ntp + ti
        idx = ntype * ntp + atype[:, :, None]
    g_t = xp.reshape(xp.take(tt, xp.reshape(idx, (-1,)), axis=0), (nf, nloc, nnei, -1))
    if smooth(cfg):
        g_t = g_t * sw[..., None]
    return gs + gs * g_t


def _excluded(cfg: dict, atype, ext_atype, nlist):
    """[nf, nloc, nnei] true where (center, neighbor) is an excluded type pair (either order)."""
    pairs = cfg.get("exclude_types") or []
    if not pairs:
        return None
    xp = array_namespace(nlist)
    ti = atype[:, :, None]
    tj = gather_neighbors(ext_atype, nlist)
    out = xp.zeros(nlist.shape, dtype=xp.bool)
    for a, b in pairs:
        out = out | ((ti == a) & (tj == b)) | ((ti == b) & (tj == a))
    return out & (nlist >= 0)


def compute(cfg: dict, params: dict, stats: dict, ext_coord, ext_atype, nlist, comm=None,
            widths=None):
    """Descriptor D: [nf, nloc, out_dim(cfg)]; nlist [nf, nloc, nsel] nearest first, -1 padded."""
    xp = array_namespace(ext_coord)
    nf, nloc, nnei = nlist.shape
    ntypes = stats["davg"].shape[0]
    atype = ext_atype[:, :nloc]
    excluded = _excluded(cfg, atype, ext_atype, nlist)
    if excluded is not None:  # an excluded pair is an empty slot whose env row is 0
        nlist = xp.where(excluded, -xp.ones_like(nlist), nlist)
    mask = nlist >= 0
    env = env_matrix(ext_coord, nlist, cfg["rcut_smth"], cfg["rcut"])  # [nf, nloc, nnei, 4]
    flat = xp.reshape(atype, (-1,))
    avg = xp.reshape(xp.take(stats["davg"], flat, axis=0), (nf, nloc, 1, 4))
    std = xp.reshape(xp.take(stats["dstd"], flat, axis=0), (nf, nloc, 1, 4))
    rr = (env - avg) / std
    if excluded is not None:
        rr = xp.where(excluded[..., None], xp.zeros_like(rr), rr)
    # switch of each slot (0 for empty slots)
    diff = neighbor_vectors(ext_coord, nlist)
    r2 = xp.where(mask, xp.sum(diff * diff, axis=-1), xp.ones(mask.shape, dtype=diff.dtype))
    sw = xp.where(mask, switch(xp.sqrt(r2), cfg["rcut_smth"], cfg["rcut"]),
                  xp.zeros(mask.shape, dtype=diff.dtype))
    table = type_embedding.embed_table(params["type_embedding"], ntypes, "linear")
    # an empty slot takes the type of extended atom 0 of its frame, as DeePMD-kit's (its G only
    # matters where davg != 0, or through a non-smooth strip type net)
    ntype = gather_neighbors(ext_atype, nlist)
    tab = stats["compress"]["embedding"] if "compress" in stats else None
    gg = _pair_embedding(cfg, params, table, atype, ntype, rr[..., 0], sw, tab)
    if params["attention"]:
        gg = attention.apply(cfg, params["attention"], gg, rr, mask, sw, smooth(cfg))
    t = xp.matmul(xp.matrix_transpose(gg), rr) / nnei  # [nf, nloc, M1, 4]
    m2 = cfg["axis_neuron"]
    d = xp.matmul(t, xp.matrix_transpose(t[:, :, :m2, :]))  # [nf, nloc, M1, M2]
    d = xp.reshape(d, (nf, nloc, d.shape[2] * m2))
    if cfg.get("concat_output_tebd", True):
        d = xp.concat([d, type_embedding.lookup(table, atype)], axis=-1)
    return d


# -- input keys --------------------------------------------------------------------------------

SEL_DOC = (
    "Neighbors kept per atom, of any type (nearest first): an int, a list (only its sum "
    "matters), or 'auto' / 'auto:factor' = neighbor-stat maximum x factor (1.1), rounded up "
    "to a multiple of 4."
)


def _check_lmax(value) -> str | None:
    if value not in (None, 1):
        return "only lmax 1 (the default) is supported by deepmd_md"
    return None


def _check_sel(value) -> str | None:
    from deepmd_md.config.common import check_sel

    return check_sel([value] if isinstance(value, int) else value)


def _args(v2: bool) -> tuple:
    # imported here: deepmd_md.config builds its schema from this registry (import cycle)
    from deepmd_md.config.common import (
        U,
        activation,
        check_neuron,
        check_nonneg,
        check_positive,
        precision,
    )
    from deepmd_md.config.schema import Arg

    args = [
        Arg("sel", "int|list[int]|str", "auto", SEL_DOC, check=_check_sel),
        Arg("rcut", "float", 6.0, "Cut-off radius (Å).", check=check_positive),
        Arg("rcut_smth", "float", 0.5, "Where the smooth switch to zero starts (Å).",
            check=check_nonneg),
        Arg("neuron", "list[int]", [10, 20, 40], "Embedding-net hidden layer sizes.",
            check=check_neuron),
        Arg("axis_neuron", "int", 4, "Columns of the embedding matrix kept for the "
            "symmetry-preserving product (M2).", alias=("n_axis_neuron",), check=check_positive),
        Arg("lmax", "int|None", None, "Maximum angular degree of the moment basis (DeePMD-kit "
            "PyTorch); only 1 (the plain se_atten descriptor).", check=_check_lmax),
        activation("embedding net"),
        Arg("resnet_dt", "bool", False, "Scale the residual connections by a trainable dt."),
        Arg("type_one_side", "bool", False, "Type embedding of the neighbor only (true) or of "
            "the neighbor and the center (false) in the embedding input."),
        precision("embedding net"),
        Arg("trainable", "bool", True, "Whether the descriptor parameters are trained."),
        Arg("seed", "int|None", None, "Seed of the parameter initialisation."),
        Arg("exclude_types", "list[list[int]]", [], "Type pairs without interaction: such a "
            "neighbor is an empty slot whose environment row is 0."),
        Arg("env_protection", "float", 0.0, "Protection added to distances in the environment "
            "matrix.", status=U),
        Arg("attn", "int", 128, "Hidden width of the attention's queries, keys and values.",
            check=check_positive),
        Arg("attn_layer", "int", 2, "Number of attention layers (0: none).",
            check=check_nonneg),
        Arg("attn_dotr", "bool", True, "Gate the attention weights by the angle r^_ij . r^_ik."),
        Arg("attn_mask", "bool", False, "Mask the diagonal of the attention weights "
            "(DeePMD-kit's PyTorch backend rejects it too).", status=U),
    ]  # fmt: skip
    if not v2:
        args += [
            Arg("stripped_type_embedding", "bool|None", None, "Deprecated: true = "
                "tebd_input_mode 'strip', false = 'concat', null = use tebd_input_mode."),
            Arg("smooth_type_embedding", "bool", False, "Smooth attention (weights scaled by "
                "the switches of both neighbors) and, in strip mode, the type net's output "
                "scaled by the switch.", alias=("smooth_type_embdding",)),
        ]  # fmt: skip
    args += [
        Arg("set_davg_zero", "bool", not v2,
            "Use a zero mean in the environment-matrix normalisation."),
        Arg("trainable_ln", "bool", True, "Trainable scale and shift of the layer norms."),
        Arg("ln_eps", "float|None", None, "Epsilon of the layer norms (null: 1e-5)."),
        Arg("tebd_dim", "int", 8, "Width of the type embedding.", check=check_positive),
        Arg("use_econf_tebd", "bool", False, "Type embedding from electronic configurations.",
            status=U),
        Arg("use_tebd_bias", "bool", False, "A bias in the type-embedding layer."),
    ]  # fmt: skip
    if not v2:
        args.append(Arg("tebd_input_mode", "str", "concat", "How the type embedding enters: "
                        "'concat' (with s, into the embedding net) or 'strip' (its own net, "
                        "multiplying the radial embedding).", choices=("concat", "strip")))
    args += [
        Arg("scaling_factor", "float", 1.0, "Attention logits scale 1/sqrt(attn x "
            "scaling_factor) (when temperature is null).", check=check_positive),
        Arg("normalize", "bool", True, "Normalise queries, keys and values to unit length."),
        Arg("temperature", "float|None", None, "Attention logits scale (a factor) instead of "
            "1/sqrt(attn x scaling_factor)."),
        Arg("concat_output_tebd", "bool", True, "Append the center's type embedding to D."),
    ]  # fmt: skip
    return tuple(args)


def schema() -> dict:
    return {"se_atten": _args(v2=False), "se_atten_v2": _args(v2=True)}

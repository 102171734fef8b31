"""DPA-3: type embedding + RepFlow message passing (node, edge and angle features).

Math (Zhang et al. 2025, "A graph neural network for the era of large atomistic models",
arXiv 2506.01686; DeePMD-kit 3.x "Descriptor DPA3"); the layers are in repflow.py:

    T = type embedding [ntypes, n_dim] (linear, no activation; bias with use_tebd_bias)
    n_i^0 = act(T[t_i]); e^0, a^0 from the geometry (repflow.init_features)
    (n, e, a)^{l+1} = RepFlowLayer_l(n^l of local AND ghost atoms, e^l, a^l)
    D_i = n_i^L  (then [D_i, T[t_i]] with concat_output_tebd)

Message passing: each layer reads node features of ghost atoms, exchanged between layers by
`comm` (model/comm.py); edge and angle features live on the local centers' neighbor slots.
An atom's energy therefore sees nlayers * e_rcut far (receptive_field).
"""

from __future__ import annotations

import numpy as np

from deepmd_md.errors import ConfigError
from deepmd_md.model import type_embedding
from deepmd_md.model.comm import require_comm
from deepmd_md.model.descriptors import repflow
from deepmd_md.model.descriptors.stats import env_stats_from_sums
from deepmd_md.model.env import gather_rows
from deepmd_md.model.nn import activate
from deepmd_md.model.xp import array_namespace

TYPES = ("dpa3",)
ALIASES: dict = {}


def _rf(cfg: dict) -> dict:
    return cfg["repflow"]


def mixed_types(cfg: dict) -> bool:
    return True


def rcut(cfg: dict) -> float:
    return float(_rf(cfg)["e_rcut"])


def sel(cfg: dict) -> list[int]:
    return [int(_rf(cfg)["e_sel"])]


def sel_key(cfg: dict) -> str:
    return "repflow/e_sel"


def message_passing(cfg: dict) -> bool:
    return True


def receptive_field(cfg: dict) -> float:
    return float(_rf(cfg)["e_rcut"]) * int(_rf(cfg)["nlayers"])


def out_dim(cfg: dict, ntypes: int = 0) -> int:
    n = _rf(cfg)["n_dim"]
    return 2 * n if cfg.get("concat_output_tebd", False) else n


def check(cfg: dict, ntypes: int | None) -> None:
    rf = _rf(cfg)
    p = "model/descriptor/repflow/"
    for key in ("e_sel", "a_sel"):
        if isinstance(rf[key], str):
            raise ConfigError(f"'{p}{key}' = {rf[key]!r}: automatic sel is not supported yet for "
                              "dpa3; give an int")
    for a, b in (("e_rcut_smth", "e_rcut"), ("a_rcut_smth", "a_rcut")):
        if rf[a] >= rf[b]:
            raise ConfigError(f"'{p}{a}' ({rf[a]}) must be smaller than '{p}{b}' ({rf[b]})")
    if rf["a_rcut"] > rf["e_rcut"]:
        raise ConfigError(f"'{p}a_rcut' ({rf['a_rcut']}) must not exceed '{p}e_rcut' "
                          f"({rf['e_rcut']}): angle neighbors are a prefix of the edge list")
    if rf["a_sel"] > rf["e_sel"]:
        raise ConfigError(f"'{p}a_sel' ({rf['a_sel']}) must not exceed '{p}e_sel' ({rf['e_sel']})")
    if rf["axis_neuron"] > min(rf["n_dim"], rf["e_dim"]):
        raise ConfigError(f"'{p}axis_neuron' ({rf['axis_neuron']}) must not exceed n_dim and "
                          "e_dim")
    c = rf["a_compress_rate"]
    if c and (rf["a_dim"] % c or (rf["a_compress_e_rate"] * rf["a_dim"]) % (2 * c)):
        raise ConfigError(f"'{p}a_compress_rate' ({c}): a_dim ({rf['a_dim']}) must be divisible "
                          "by a_compress_rate and a_compress_e_rate * a_dim by 2 * a_compress_rate")
    if c and rf["a_compress_use_split"]:
        nc, ec = repflow.compressed_dims(rf)
        if nc > rf["n_dim"] or ec > rf["e_dim"]:
            raise ConfigError(f"'{p}a_compress_use_split': the split widths ({nc}, {ec}) exceed "
                              f"n_dim ({rf['n_dim']}) or e_dim ({rf['e_dim']})")
    if rf["use_dynamic_sel"] and not rf["smooth_edge_update"]:
        raise ConfigError(f"'{p}use_dynamic_sel' needs '{p}smooth_edge_update' true")
    if rf["sequential_update"] and (rf["update_style"] != "res_residual"
                                    or not rf["update_angle"]):
        raise ConfigError(f"'{p}sequential_update' needs update_style 'res_residual' and "
                          "update_angle true")
    if ntypes is not None:
        for pair in cfg.get("exclude_types", []):
            if len(pair) != 2 or not all(0 <= t < ntypes for t in pair):
                raise ConfigError(f"'model/descriptor/exclude_types' entry {pair} is not a pair "
                                  f"of types in [0, {ntypes})")


# -- parameters and statistics ------------------------------------------------------------------


def init_params(cfg: dict, ntypes: int, rng: np.random.Generator, dtype) -> dict:
    rf = _rf(cfg)
    return {
        "type_embedding": type_embedding.init_params(rf["n_dim"], ntypes, rng, dtype,
                                                     use_bias=cfg.get("use_tebd_bias", False)),
        **repflow.init_params(rf, rng, dtype),
    }


def _fixed_std(cfg: dict) -> float:
    rf = _rf(cfg)
    return 0.3 if rf.get("skip_stat", False) else float(rf.get("fix_stat_std", 0.3))


def init_stats(cfg: dict, ntypes: int, dtype) -> dict:
    std = _fixed_std(cfg) or 1.0
    return {"davg": np.zeros((ntypes, 4), dtype), "dstd": np.full((ntypes, 4), std, dtype)}


def stat_sums(cfg: dict, ext_coord, ext_atype, nlist, ntypes: int) -> np.ndarray:
    """[nt, 6] = (n, sum s, sum s^2, n_ang, sum a, sum a^2) per center type over every slot of
    the raw environment matrix (the switch of this descriptor: polynomial or exponential)."""
    if _fixed_std(cfg):  # the statistics do not depend on the data
        return np.zeros((ntypes, 6))
    rf = _rf(cfg)
    nloc = nlist.shape[1]
    atype = np.asarray(ext_atype)[:, :nloc]
    stats = {"davg": np.zeros((ntypes, 4)), "dstd": np.ones((ntypes, 4))}
    nlist, mask = _mask(cfg, np.asarray(nlist), atype, np.asarray(ext_atype))
    geo = repflow.geometry({**rf, "edge_init_use_dist": False}, stats,
                           np.asarray(ext_coord, float), atype, nlist, mask,
                           cfg.get("env_protection", 0.0))
    out = np.zeros((ntypes, 6))
    for t in range(ntypes):
        s, a = geo["edge_in"][atype == t], geo["h"][atype == t]
        out[t] = (s.size, s.sum(), (s * s).sum(), a.size, a.sum(), (a * a).sum())
    return out


def stats_from_sums(cfg: dict, sums: np.ndarray, dtype, protection: float = 1e-2) -> dict:
    """davg = 0 (as DeePMD-kit's DPA-3); dstd = fix_stat_std, or from the data when it is 0."""
    st = env_stats_from_sums(sums, False, dtype, protection, set_davg_zero=True)
    fixed = _fixed_std(cfg)
    if fixed:
        st["dstd"][:] = fixed
    return st


# -- evaluation ---------------------------------------------------------------------------------


def _mask(cfg: dict, nlist, atype, ext_atype):
    """(nlist with excluded pairs emptied, valid-slot mask)."""
    xp = array_namespace(nlist)
    mask = nlist >= 0
    pairs = cfg.get("exclude_types", [])
    if pairs:
        ti = atype[:, :, None]
        tj = gather_rows(ext_atype[..., None], nlist)[..., 0]
        for a, b in pairs:
            excl = ((ti == a) & (tj == b)) | ((ti == b) & (tj == a))
            mask = mask & ~excl
        nlist = xp.where(mask, nlist, -xp.ones_like(nlist))
    return nlist, mask


def compute(cfg: dict, params: dict, stats: dict, ext_coord, ext_atype, nlist, comm=None,
            widths=None):
    """Descriptor D: [nf, nloc, out_dim(cfg)]. nlist: [nf, nloc, e_sel], nearest first (mixed
    types, -1 padded) inside e_rcut; comm: the ghost exchange between layers (model/comm.py)."""
    rf = _rf(cfg)
    act = cfg["activation_function"]
    nloc = nlist.shape[1]
    nall = ext_atype.shape[1]
    atype = ext_atype[:, :nloc]
    nlist, mask = _mask(cfg, nlist, atype, ext_atype)
    geo = repflow.geometry(rf, stats, ext_coord, atype, nlist, mask,
                           cfg.get("env_protection", 0.0))
    ntypes = params["type_embedding"]["layers"][0]["w"].shape[0]
    table = type_embedding.embed_table(params["type_embedding"], ntypes, "linear")
    tebd_ext = type_embedding.lookup(table, ext_atype)  # [nf, nall, n_dim]
    node_ext = activate(tebd_ext, act)
    edge, angle = repflow.init_features(rf, params, geo, act)
    node = node_ext[:, :nloc, :]
    for i, p in enumerate(params["layers"]):
        if i > 0:
            if nall == nloc and comm is None:  # no ghosts: nothing to exchange
                node_ext = node
            else:
                node_ext = require_comm(comm, "dpa3")(node)
        node, edge, angle = repflow.layer(rf, p, node_ext, edge, angle, nlist, geo, act)
    if cfg.get("concat_output_tebd", False):
        xp = array_namespace(node)
        node = xp.concat([node, tebd_ext[:, :nloc, :]], axis=-1)
    return node


# -- input schema -------------------------------------------------------------------------------


def _check_update_style(value) -> str | None:
    ok = ("res_residual", "res_avg", "res_incr")
    return None if value in ok else f"must be one of {', '.join(ok)}"


def schema() -> dict:
    # imported here: deepmd_md.config builds its schema from this registry (import cycle)
    from deepmd_md.config.common import U, activation, check_nonneg, check_positive, precision
    from deepmd_md.config.schema import REQUIRED, Arg

    def sel_check(value) -> str | None:
        if isinstance(value, str):
            return None  # reported by check(): "auto" is not supported yet
        return check_positive(value)

    repflow_args = (
        Arg("n_dim", "int", 128, "Width of the node (atom) features.", check=check_positive),
        Arg("e_dim", "int", 64, "Width of the edge (pair) features.", check=check_positive),
        Arg("a_dim", "int", 64, "Width of the angle (three-body) features.", check=check_positive),
        Arg("nlayers", "int", 6, "Number of RepFlow layers.", check=check_positive),
        Arg("e_rcut", "float", REQUIRED, "Edge cut-off radius (Å).", check=check_positive),
        Arg("e_rcut_smth", "float", REQUIRED, "Where the edge switch starts (Å).",
            check=check_nonneg),
        Arg("e_sel", "int|str", REQUIRED, "Most edge neighbors kept (nearest first).",
            check=sel_check),
        Arg("a_rcut", "float", REQUIRED, "Angle cut-off radius (Å).", check=check_positive),
        Arg("a_rcut_smth", "float", REQUIRED, "Where the angle switch starts (Å).",
            check=check_nonneg),
        Arg("a_sel", "int|str", REQUIRED, "Most angle neighbors kept (the first a_sel edges).",
            check=sel_check),
        Arg("a_compress_rate", "int", 0, "Compression of node/edge features in angle messages "
            "(0: none; c: node to a_dim/c, edge to a_compress_e_rate * a_dim/(2c)).",
            check=check_nonneg),
        Arg("a_compress_e_rate", "int", 1, "Extra edge compression factor (see a_compress_rate).",
            check=check_positive),
        Arg("a_compress_use_split", "bool", False,
            "Compress by taking the first entries instead of a linear map."),
        Arg("n_multi_edge_message", "int", 1, "Heads of the edge message to nodes.",
            check=check_positive),
        Arg("axis_neuron", "int", 4, "Columns kept in the symmetrization operator.",
            check=check_positive),
        Arg("fix_stat_std", "float", 0.3, "Constant std of the environment normalisation "
            "(0: from the data statistics).", check=check_nonneg),
        Arg("skip_stat", "bool", False, "Deprecated: true forces fix_stat_std = 0.3."),
        Arg("update_angle", "bool", True, "Update the angle features (else node and edge only)."),
        Arg("update_style", "str", "res_residual", "Residual rule: res_residual (trainable "
            "weights), res_avg, res_incr.", check=_check_update_style),
        Arg("update_residual", "float", 0.1, "Initial scale of the residual weights."),
        Arg("update_residual_init", "str", "const", "Initial residual weights: const or norm.",
            choices=("const", "norm")),
        Arg("optim_update", "bool", True, "DeePMD-kit's split-matrix evaluation (same math; "
            "deepmd_md always evaluates that way).", status="ignored"),
        Arg("smooth_edge_update", "bool", False, "Edges without angles get a zero angle "
            "message (smooth at a_rcut) instead of themselves."),
        Arg("edge_init_use_dist", "bool", False, "Initial edge features from r (no activation) "
            "instead of the normalised 1/r.", alias=("edge_use_dist",)),
        Arg("use_exp_switch", "bool", False, "Switch exp(-exp(20 (r - rcut_smth)/rcut_smth)) "
            "instead of the polynomial one.", alias=("use_env_envelope",)),
        Arg("use_dynamic_sel", "bool", False, "Normalise neighbor sums by e_sel (a_sel) / "
            "sel_reduce_factor (DeePMD-kit then drops padded slots; deepmd_md keeps e_sel and "
            "a_sel slots, which gives the same result: size them to the data)."),
        Arg("sel_reduce_factor", "float", 10.0, "Neighbor normalisation divisor with "
            "use_dynamic_sel.", check=check_positive),
        Arg("sequential_update", "bool", False, "Inside a layer, update edges, then angles, then "
            "the angle message to edges, then nodes, each reading the newest features "
            "(res_residual with update_angle only)."),
    )
    return {"dpa3": (
        Arg("repflow", "dict", REQUIRED, "The RepFlow block.", sub=repflow_args),
        Arg("concat_output_tebd", "bool", False, "Append the type embedding to the output."),
        activation("descriptor (every layer)", default="silu"),
        precision("descriptor"),
        Arg("exclude_types", "list[list[int]]", [], "Type pairs without interaction."),
        Arg("env_protection", "float", 0.0, "Added to r in the environment matrix: "
            "s = sw / (r + p).", check=check_nonneg),
        Arg("trainable", "bool", True, "Whether the descriptor parameters are trained."),
        Arg("seed", "int|None", None, "Seed of the parameter initialisation."),
        Arg("use_econf_tebd", "bool", False, "Electronic-configuration type embedding.",
            status=U),
        Arg("use_tebd_bias", "bool", False, "Bias in the type embedding."),
        Arg("use_loc_mapping", "bool", True, "DeePMD-kit's local index mapping (an "
            "implementation choice, same result).", status="ignored"),
        Arg("add_chg_spin_ebd", "bool", False, "Charge and spin embedding.", status=U),
        Arg("default_chg_spin", "list|None", None, "Default charge and spin.", status=U),
        Arg("type_map", "list[str]|None", None, "Types of the descriptor (model/type_map "
            "is used).", status="ignored"),
    )}

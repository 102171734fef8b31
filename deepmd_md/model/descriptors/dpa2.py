"""DPA-2 (Zhang et al., npj Comput Mater 10, 293 (2024); DeePMD-kit's "Descriptor DPA-2").

    A        = type embedding (type_embedding.py, linear, shared by every block)
    D_ri     = repinit(i): se_atten with no attention layer on the repinit list     [M1 x M2]
    D_3b     = three_body(i) (use_three_body; three_body.py)                        [M3]
    g1_i     = W [D_ri, D_3b] (+ W_t A_i with add_tebd_to_repinit_out)              [g1_dim]
    g1       = repformer layers (repformer.py), exchanging g1 of ghosts (comm) before each
    D_i      = [g1_i, A_i] (concat_output_tebd)

One neighbor list comes in: the nearest max(nsel) atoms of any type inside the largest cutoff,
nearest first; each block uses the prefix inside its own (rcut, nsel) (env.sub_nlist), as
DeePMD-kit's nested lists, whose (rcut, nsel) must grow together. Statistics (davg/dstd) are per
block, over that block's list; a block with set_davg_zero keeps only dstd (its mean is 0).
"""

from __future__ import annotations

import numpy as np

from deepmd_md.model import type_embedding
from deepmd_md.model.comm import require_comm
from deepmd_md.model.descriptors import repformer, se_atten, three_body
from deepmd_md.model.descriptors.stats import env_stat_sums, env_stats_from_sums, init_env_stats
from deepmd_md.model.env import gather_neighbors, sub_nlist
from deepmd_md.model.nn import init_net
from deepmd_md.model.xp import array_namespace

TYPES = ("dpa2",)
ALIASES: dict = {}
LN_EPS = 1e-5  # repformer ln_eps when null


def _ri(cfg: dict) -> dict:
    return cfg["repinit"]


def _rf(cfg: dict) -> dict:
    rf = dict(cfg["repformer"])
    if rf.get("ln_eps") is None:
        rf["ln_eps"] = LN_EPS
    return rf


def _blocks(cfg: dict) -> dict:
    """name -> (rcut, rcut_smth, nsel) of every block's neighbor list."""
    ri, rf = _ri(cfg), _rf(cfg)
    out = {"repinit": (float(ri["rcut"]), float(ri["rcut_smth"]), int(ri["nsel"])),
           "repformer": (float(rf["rcut"]), float(rf["rcut_smth"]), int(rf["nsel"]))}
    if ri["use_three_body"]:
        out["three_body"] = (float(ri["three_body_rcut"]), float(ri["three_body_rcut_smth"]),
                             int(ri["three_body_sel"]))
    return out


def mixed_types(cfg: dict) -> bool:
    return True


def rcut(cfg: dict) -> float:
    return max(b[0] for b in _blocks(cfg).values())


def sel(cfg: dict) -> list[int]:
    return [max(b[2] for b in _blocks(cfg).values())]


def message_passing(cfg: dict) -> bool:
    return True


def receptive_field(cfg: dict) -> float:
    """A g1 entering the repformer sees its repinit (and three-body) cutoff; each layer one
    repformer cutoff further."""
    b = _blocks(cfg)
    first = max(b["repinit"][0], b.get("three_body", (0.0,))[0])
    return first + b["repformer"][0] * _rf(cfg)["nlayers"]


def out_dim(cfg: dict, ntypes: int = 0) -> int:
    d = _rf(cfg)["g1_dim"]
    return d + _ri(cfg)["tebd_dim"] if cfg["concat_output_tebd"] else d


def check(cfg: dict, ntypes: int | None) -> None:
    from deepmd_md.errors import ConfigError

    ri, rf = _ri(cfg), _rf(cfg)
    for where, key in (("repinit", "nsel"), ("repformer", "nsel"), ("repinit", "three_body_sel")):
        if isinstance(cfg[where][key], str):
            raise ConfigError(f"model/descriptor/{where}/{key} = {cfg[where][key]!r}: 'auto' "
                              "is not supported yet for dpa2; give an int")
    blocks = sorted(_blocks(cfg).items(), key=lambda kv: (kv[1][0], kv[1][2]))
    for (n0, b0), (n1, b1) in zip(blocks[:-1], blocks[1:], strict=True):
        if b0[2] > b1[2]:
            raise ConfigError(f"model/descriptor: {n0} has the smaller rcut ({b0[0]}) but the "
                              f"larger nsel ({b0[2]} > {n1}'s {b1[2]}); nsel must grow with rcut")
    for name, (rc, rs, _) in _blocks(cfg).items():
        if not 0 <= rs < rc:
            raise ConfigError(f"model/descriptor/{name}: need 0 <= rcut_smth < rcut "
                              f"(got {rs}, {rc})")
    if ri["axis_neuron"] > ri["neuron"][-1]:
        raise ConfigError(f"model/descriptor/repinit/axis_neuron ({ri['axis_neuron']}) must be "
                          f"<= neuron[-1] ({ri['neuron'][-1]})")
    ax = rf["axis_neuron"]
    if rf["update_g1_has_grrg"] and ax > rf["g2_dim"]:
        raise ConfigError(f"model/descriptor/repformer/axis_neuron ({ax}) must be <= g2_dim "
                          f"({rf['g2_dim']}) with update_g1_has_grrg")
    if rf["update_g1_has_drrd"] and ax > rf["g1_dim"]:
        raise ConfigError(f"model/descriptor/repformer/axis_neuron ({ax}) must be <= g1_dim "
                          f"({rf['g1_dim']}) with update_g1_has_drrd")
    if repformer._mlp_in_dim(rf) == 0:
        raise ConfigError("model/descriptor/repformer: the g1 MLP has no input; set "
                          "g1_out_mlp false or one of update_g1_has_grrg/drrd (or conv with "
                          "g1_out_conv false)")
    if rf["nlayers"] < 1:
        raise ConfigError("model/descriptor/repformer/nlayers must be >= 1")


# -- parameters and statistics -----------------------------------------------------------------


def _repinit_cfg(cfg: dict) -> dict:
    """The repinit block as an se_atten descriptor without attention layers."""
    ri = _ri(cfg)
    return {"type": "se_atten", "rcut": ri["rcut"], "rcut_smth": ri["rcut_smth"],
            "sel": int(ri["nsel"]), "neuron": list(ri["neuron"]),
            "axis_neuron": ri["axis_neuron"], "tebd_dim": ri["tebd_dim"],
            "tebd_input_mode": ri["tebd_input_mode"], "type_one_side": ri["type_one_side"],
            "resnet_dt": ri["resnet_dt"], "activation_function": ri["activation_function"],
            "attn": 1, "attn_layer": 0, "concat_output_tebd": False,
            "smooth_type_embedding": cfg["smooth"], "set_davg_zero": ri["set_davg_zero"],
            "exclude_types": cfg["exclude_types"]}


def _repinit_out(cfg: dict) -> int:
    ri = _ri(cfg)
    d = ri["neuron"][-1] * ri["axis_neuron"]
    return d + ri["three_body_neuron"][-1] if ri["use_three_body"] else d


def init_params(cfg: dict, ntypes: int, rng: np.random.Generator, dtype) -> dict:
    ri, rf = _ri(cfg), _rf(cfg)
    tebd = ri["tebd_dim"]
    sub = se_atten.init_params(_repinit_cfg(cfg), ntypes, rng, dtype)
    p = {"type_embedding": type_embedding.init_params(tebd, ntypes, rng, dtype,
                                                      use_bias=cfg["use_tebd_bias"]),
         "repinit": {k: v for k, v in sub.items() if k.startswith("embedding")}}
    if ri["use_three_body"]:
        p["three_body"] = three_body.init_params(ri["three_body_neuron"], tebd, ri["resnet_dt"],
                                                 rng, dtype)
    p["g1_shape_tranform"] = init_net(rng, [_repinit_out(cfg), rf["g1_dim"]], False, dtype,
                                      bias=False)["layers"][0]
    if cfg["add_tebd_to_repinit_out"]:
        p["tebd_transform"] = init_net(rng, [tebd, rf["g1_dim"]], False, dtype,
                                       bias=False)["layers"][0]
    p["repformer"] = repformer.init_params(rf, rng, dtype)
    return p


def _zero_mean(cfg: dict, name: str) -> bool:
    """set_davg_zero of a block (the three-body block follows repinit's)."""
    return bool((_rf(cfg) if name == "repformer" else _ri(cfg))["set_davg_zero"])


def _drop_zero_means(cfg: dict, stats: dict) -> dict:
    """A block with set_davg_zero keeps no mean (it is 0): {"dstd"} only."""
    return {name: ({"dstd": st["dstd"]} if _zero_mean(cfg, name) else st)
            for name, st in stats.items()}


def block_stats(stats: dict, name: str) -> dict:
    """{"davg", "dstd"} of a block, the mean 0 where it keeps none."""
    st = stats[name]
    if "davg" in st:
        return st
    xp = array_namespace(st["dstd"])
    return {**st, "davg": xp.zeros_like(st["dstd"])}  # with its tables when compressed


def init_stats(cfg: dict, ntypes: int, dtype) -> dict:
    return _drop_zero_means(cfg, {name: init_env_stats(ntypes, False, dtype)
                                  for name in _blocks(cfg)})


def _block_nlists(cfg: dict, ext_coord, ext_atype, nlist, stats: bool = False) -> dict:
    """Each block's list: the prefix of the model's list inside its cutoff, excluded pairs
    removed (but for repinit's descriptor, which as se_atten's excludes them itself)."""
    xp = array_namespace(ext_coord)
    out = {}
    for name, (rc, _, ns) in _blocks(cfg).items():
        nl = sub_nlist(ext_coord, nlist, rc, ns)
        if cfg["exclude_types"] and (stats or name != "repinit"):
            nloc = nl.shape[1]
            ti = ext_atype[:, :nloc, None]
            tj = gather_neighbors(ext_atype, nl)
            keep = nl >= 0
            for a, b in cfg["exclude_types"]:
                keep = keep & ~(((ti == a) & (tj == b)) | ((ti == b) & (tj == a)))
            nl = xp.where(keep, nl, -xp.ones_like(nl))
        out[name] = nl
    return out


def stat_sums(cfg: dict, ext_coord, ext_atype, nlist, ntypes: int) -> dict:
    nls = _block_nlists(cfg, ext_coord, ext_atype, nlist, stats=True)
    return {name: env_stat_sums(ext_coord, ext_atype, nls[name], rs, rc, ntypes)
            for name, (rc, rs, _) in _blocks(cfg).items()}


def stats_from_sums(cfg: dict, sums: dict, dtype, protection: float = 1e-2) -> dict:
    return _drop_zero_means(cfg, {
        name: env_stats_from_sums(sums[name], False, dtype, protection, _zero_mean(cfg, name))
        for name in _blocks(cfg)})


# -- compute -----------------------------------------------------------------------------------


def compute(cfg: dict, params: dict, stats: dict, ext_coord, ext_atype, nlist, comm=None,
            widths=None):
    """Descriptor D: [nf, nloc, out_dim(cfg)]. nlist: [nf, nloc, max nsel], nearest first.
    comm: the ghost exchange (model/comm.py), called before every repformer layer."""
    xp = array_namespace(ext_coord)
    comm = require_comm(comm, "dpa2")
    ri, rf = _ri(cfg), _rf(cfg)
    ntypes = stats["repinit"]["dstd"].shape[0]
    nloc = nlist.shape[1]
    nls = _block_nlists(cfg, ext_coord, ext_atype, nlist)
    sub = {"type_embedding": params["type_embedding"], "attention": [], **params["repinit"]}
    g1 = se_atten.compute(_repinit_cfg(cfg), sub, block_stats(stats, "repinit"), ext_coord, ext_atype,
                          nls["repinit"])
    table = type_embedding.embed_table(params["type_embedding"], ntypes, "linear")
    if ri["use_three_body"]:
        rc, rs, _ = _blocks(cfg)["three_body"]
        rr = repformer.normalised_env(block_stats(stats, "three_body"), ext_coord, ext_atype,
                                      nls["three_body"], rs, rc)
        g3 = three_body.compute(params["three_body"], rr, table, ext_atype, nls["three_body"],
                                ri["activation_function"])
        g1 = xp.concat([g1, g3], axis=-1)
    g1 = xp.matmul(g1, params["g1_shape_tranform"]["w"])
    tebd = type_embedding.lookup(table, ext_atype[:, :nloc])
    if cfg["add_tebd_to_repinit_out"]:
        g1 = g1 + xp.matmul(tebd, params["tebd_transform"]["w"])
    g1 = repformer.compute(rf, params["repformer"], block_stats(stats, "repformer"), ext_coord, ext_atype,
                           nls["repformer"], g1, comm, smooth=cfg["smooth"])
    if cfg["concat_output_tebd"]:
        g1 = xp.concat([g1, tebd], axis=-1)
    return g1


def sel_key(cfg: dict) -> str:
    """The input key of the widest list (the one the model's nlist is checked against)."""
    keys = {"repinit": "repinit/nsel", "repformer": "repformer/nsel",
            "three_body": "repinit/three_body_sel"}
    b = _blocks(cfg)
    return keys[max(b, key=lambda n: (b[n][2], b[n][0]))]


# -- input keys --------------------------------------------------------------------------------


def schema() -> dict:
    # imported here: deepmd_md.config builds its schema from this registry (import cycle)
    from deepmd_md.config.common import (
        IGN,
        U,
        activation,
        check_neuron,
        check_nonneg,
        check_positive,
        precision,
    )
    from deepmd_md.config.schema import REQUIRED, Arg

    def sel_check(value) -> str | None:
        return None if isinstance(value, str) else check_positive(value)  # str: see check()

    repinit = (
        Arg("rcut", "float", REQUIRED, "Cut-off radius of repinit (Å).", check=check_positive),
        Arg("rcut_smth", "float", REQUIRED, "Where the repinit switch starts (Å).",
            check=check_nonneg),
        Arg("nsel", "int|str", REQUIRED, "Most neighbors of any type kept (nearest first).",
            check=sel_check),
        Arg("neuron", "list[int]", [25, 50, 100], "Embedding-net hidden layer sizes.",
            check=check_neuron),
        Arg("axis_neuron", "int", 16, "Columns of the embedding matrix kept in D = T T[:M2]^T.",
            check=check_positive),
        Arg("tebd_dim", "int", 8, "Width of the type embedding.", check=check_positive),
        Arg("tebd_input_mode", "str", "concat", "Type embedding concatenated to the radial "
            "input (concat) or through its own net (strip).", choices=("concat", "strip")),
        Arg("set_davg_zero", "bool", True, "Zero mean in the repinit (and three-body) "
            "environment normalisation."),
        activation("repinit embedding net"),
        Arg("type_one_side", "bool", False, "Embed the neighbor type only (else neighbor and "
            "center types)."),
        Arg("resnet_dt", "bool", False, "Scale the residual connections by a trainable dt."),
        Arg("use_three_body", "bool", False, "Append the three-body block to repinit's output."),
        Arg("three_body_neuron", "list[int]", [2, 4, 8], "Three-body embedding-net sizes.",
            check=check_neuron),
        Arg("three_body_rcut", "float", 4.0, "Three-body cut-off radius (Å).",
            check=check_positive),
        Arg("three_body_rcut_smth", "float", 0.5, "Where the three-body switch starts (Å).",
            check=check_nonneg),
        Arg("three_body_sel", "int|str", 40, "Most three-body neighbors kept.", check=sel_check),
    )
    repformer_args = (
        Arg("rcut", "float", REQUIRED, "Cut-off radius of the repformer (Å).",
            check=check_positive),
        Arg("rcut_smth", "float", REQUIRED, "Where the repformer switch starts (Å).",
            check=check_nonneg),
        Arg("nsel", "int|str", REQUIRED, "Most repformer neighbors kept (nearest first).",
            check=sel_check),
        Arg("nlayers", "int", 3, "Number of repformer layers.", check=check_positive),
        Arg("g1_dim", "int", 128, "Width of g1 (atom features).", check=check_positive),
        Arg("g2_dim", "int", 16, "Width of g2 (pair features).", check=check_positive),
        Arg("axis_neuron", "int", 4, "Columns kept in the symmetrization (grrg, drrd).",
            check=check_positive),
        Arg("direct_dist", "bool", False, "Initial g2 from r / rcut and h2 from r_ij / rcut "
            "(else the normalised environment matrix)."),
        Arg("update_g1_has_conv", "bool", True, "g1 update: convolution of neighbors' g1 by g2."),
        Arg("update_g1_has_drrd", "bool", True, "g1 update: symmetrization of neighbors' g1."),
        Arg("update_g1_has_grrg", "bool", True, "g1 update: symmetrization of g2."),
        Arg("update_g1_has_attn", "bool", True, "g1 update: attention over neighbors' g1."),
        Arg("update_g2_has_g1g1", "bool", True, "g2 update: projected g1_i * g1_j."),
        Arg("update_g2_has_attn", "bool", True, "g2 update: gated attention among neighbors."),
        Arg("use_sqrt_nnei", "bool", True, "Symmetrization divided by sqrt(nsel) (else nsel)."),
        Arg("g1_out_conv", "bool", True, "Convolution as its own g1 update term (else an "
            "input of the g1 MLP)."),
        Arg("g1_out_mlp", "bool", True, "Self MLP of g1 as its own update term (else g1 is an "
            "input of the g1 MLP)."),
        Arg("update_h2", "bool", False, "Update h2 by the g2 attention (needs "
            "update_g2_has_attn)."),
        Arg("attn1_hidden", "int", 64, "Hidden width of the g1 attention.",
            check=check_positive),
        Arg("attn1_nhead", "int", 4, "Heads of the g1 attention.", check=check_positive),
        Arg("attn2_hidden", "int", 16, "Hidden width of the g2 attention.",
            check=check_positive),
        Arg("attn2_nhead", "int", 4, "Heads of the g2 attention.", check=check_positive),
        Arg("attn2_has_gate", "bool", False, "Gate the g2 attention logits by h2_j . h2_k."),
        activation("repformer layers"),
        Arg("update_style", "str", "res_avg", "Update rule: res_avg (u + sum u_k)/sqrt(n+1), "
            "res_incr u + sum u_k / sqrt(n), res_residual u + sum r_k u_k (trainable r_k).",
            choices=("res_avg", "res_incr", "res_residual")),
        Arg("update_residual", "float", 0.001, "Initial scale of the res_residual weights."),
        Arg("update_residual_init", "str", "norm", "Initial res_residual weights: norm "
            "(N(0, update_residual)) or const.", choices=("norm", "const")),
        Arg("set_davg_zero", "bool", True, "Zero mean in the repformer environment "
            "normalisation."),
        Arg("trainable_ln", "bool", True, "Trainable scale and shift of the layer norm."),
        Arg("ln_eps", "float|None", None, "Layer-norm epsilon (null: 1e-5).",
            check=check_positive),
    )
    return {"dpa2": (
        Arg("repinit", "dict", REQUIRED, "The repinit block.", sub=repinit),
        Arg("repformer", "dict", REQUIRED, "The repformer block.", sub=repformer_args),
        Arg("concat_output_tebd", "bool", True, "Append the type embedding to the output."),
        precision("descriptor"),
        Arg("smooth", "bool", True, "Smooth attention weights (switch-weighted, shifted "
            "logits) and neighbor sums divided by nsel (else masked, divided by counts)."),
        Arg("exclude_types", "list[list[int]]", [], "Type pairs without interaction."),
        Arg("env_protection", "float", 0.0, "Added to r in the environment matrix.", status=U,
            check=check_nonneg),
        Arg("trainable", "bool", True, "Whether the descriptor parameters are trained."),
        Arg("seed", "int|None", None, "Seed of the parameter initialisation."),
        Arg("add_tebd_to_repinit_out", "bool", False, "Add a linear map of the type "
            "embedding to repinit's output.", alias=("repformer_add_type_ebd_to_seq",)),
        Arg("use_econf_tebd", "bool", False, "Electronic-configuration type embedding.",
            status=U),
        Arg("use_tebd_bias", "bool", False, "Bias in the type embedding."),
        Arg("type_map", "list[str]|None", None, "Types of the descriptor (model/type_map is "
            "used).", status=IGN),
    )}

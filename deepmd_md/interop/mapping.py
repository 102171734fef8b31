"""DeePMD-kit's serialized model tree -> our params and buffers (same weights, same outputs).

Every array of our template (init_model of the translated config) is filled from DeePMD-kit's
tree and checked for shape; a DeePMD-kit parameter that has no place in our model is an error
(nothing is dropped silently) unless it provably cannot reach any output (said where skipped).
Names of DeePMD-kit's tree: read from the files `dp convert-backend` writes (see serial.py).
"""

from __future__ import annotations

import numpy as np

from deepmd_md.errors import ModelFileError


def _fail(where: str, what: str):
    raise ModelFileError(f"DeePMD-kit model, {where}: {what}")


def _get(node, path: str, where: str):
    """node["a"]["b"][i] for path "a/b/i"."""
    for key in path.split("/"):
        try:
            node = node[int(key)] if key.isdigit() else node[key]
        except (KeyError, IndexError, TypeError):
            _fail(where, f"'{path}' not found")
    return node


def _array(value, like: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(value)
    if a.shape != like.shape:
        _fail(where, f"shape {a.shape}, this model expects {like.shape}")
    return a.astype(like.dtype)


def layer(dst: dict, node: dict, where: str) -> None:
    """One layer {"w", "b"?, "idt"?} (in place) from a serialized Layer/LayerNorm."""
    var = node.get("@variables", {})
    for key in ("w", "b", "idt"):
        src = var.get(key)
        if key in dst:
            if src is None:
                _fail(where, f"'{key}' missing")
            dst[key] = _array(src, dst[key], f"{where}/{key}")
        elif src is not None and np.size(src):
            _fail(where, f"parameter '{key}' has no place in this model")


def net(dst: dict, node: dict, where: str) -> None:
    """A network {"layers": [...]} from a serialized network ({"layers": [...]})."""
    layers = node.get("layers", [])
    if len(layers) != len(dst["layers"]):
        _fail(where, f"{len(layers)} layers, this model expects {len(dst['layers'])}")
    for i, (d, s) in enumerate(zip(dst["layers"], layers, strict=True)):
        layer(d, s, f"{where}/layers/{i}")


def stats(node: dict, template: dict, where: str) -> dict:
    """davg/dstd [nt, c] from DeePMD-kit's per-slot [nt, nnei, c] (equal over slots); a
    template without davg (set_davg_zero) needs DeePMD-kit's mean to be 0."""
    var = node["@variables"]
    out = {}
    for key in ("davg", "dstd"):
        a = np.asarray(var[key])
        if a.ndim == 3:
            if not np.all(a == a[:, :1]):
                _fail(where, f"'{key}' differs between neighbor slots")
            a = a[:, 0, :]
        if key in template:
            out[key] = _array(a, template[key], f"{where}/{key}")
        elif np.any(a):
            _fail(where, f"non-zero '{key}' where this model keeps none")
    return out


def residuals(dst, src, where: str):
    """A list of residual weight vectors (ours: a list, or rows of one array)."""
    src = list(src or [])
    n = len(dst)
    if len(src) != n:
        _fail(where, f"{len(src)} residual weights, this model expects {n}")
    if isinstance(dst, np.ndarray):
        return _array(np.stack(src), dst, where)
    return [_array(s, d, f"{where}/{i}") for i, (s, d) in enumerate(zip(src, dst, strict=True))]


# -- descriptors ---------------------------------------------------------------------------------


def se_e2(p: dict, b: dict, d: dict, cfg: dict, where: str) -> dict:
    nets = d["embeddings"]["networks"]
    nt = len(cfg["sel"])
    if cfg.get("type_one_side", True):
        keys = [(f"t{j}", j) for j in range(nt)]
    else:  # NetworkCollection of ndim 2: (neighbor, center) flattened row-major (checked on
        # DeePMD-kit 3.2 files: the other order gives other energies)
        keys = [(f"t{i}_{j}", j * nt + i) for i in range(nt) for j in range(nt)]
    if len(nets) != len(keys):
        _fail(where, f"{len(nets)} embedding nets, this model expects {len(keys)}")
    for k, idx in keys:
        net(p[k], nets[idx], f"{where}/embeddings/{idx}")
    return stats(d, b, where)


def se_atten(p: dict, b: dict, d: dict, cfg: dict, where: str) -> dict:
    net(p["type_embedding"], d["type_embedding"]["embedding"], f"{where}/type_embedding")
    net(p["embedding"], d["embeddings"]["networks"][0], f"{where}/embeddings")
    strip = d.get("embeddings_strip")
    if "embedding_strip" in p:
        net(p["embedding_strip"], _get(strip or {}, "networks/0", where),
            f"{where}/embeddings_strip")
    elif strip:
        _fail(where, "a strip embedding net this model does not have")
    layers = d["attention_layers"]["attention_layers"]
    if len(layers) != len(p["attention"]):
        _fail(where, f"{len(layers)} attention layers, this model expects {len(p['attention'])}")
    for i, (ours, theirs) in enumerate(zip(p["attention"], layers, strict=True)):
        w = f"{where}/attention_layers/{i}"
        layer(ours["in_proj"], theirs["attention_layer"]["in_proj"], f"{w}/in_proj")
        layer(ours["out_proj"], theirs["attention_layer"]["out_proj"], f"{w}/out_proj")
        ln = theirs["attn_layer_norm"]["@variables"]
        if "ln" in ours:
            layer(ours["ln"], theirs["attn_layer_norm"], f"{w}/attn_layer_norm")
        elif np.any(np.asarray(ln["w"]) != 1.0) or np.any(np.asarray(ln.get("b", 0.0)) != 0.0):
            _fail(w, "a layer norm with weights where this model has a fixed one")
    return stats(d, b, where)


_REPFORMER = {  # ours -> DeePMD-kit's RepformerLayer member
    "linear1": "linear1", "linear2": "linear2", "g1_self_mlp": "g1_self_mlp",
    "proj_g1g2": "proj_g1g2", "proj_g1g1g2": "proj_g1g1g2",
    "attn2_mapqk": "attn2g_map/mapqk", "attn2_mapv": "attn2_mh_apply/mapv",
    "attn2_head_map": "attn2_mh_apply/head_map", "attn2_lm": "attn2_lm",
    "attn2_ev_head_map": "attn2_ev_apply/head_map", "attn1_mapq": "loc_attn/mapq",
    "attn1_mapkv": "loc_attn/mapkv", "attn1_head_map": "loc_attn/head_map",
}  # fmt: skip


def dpa2(p: dict, b: dict, d: dict, cfg: dict, where: str) -> dict:
    net(p["type_embedding"], d["type_embedding"]["embedding"], f"{where}/type_embedding")
    ri = d["repinit_variable"]
    net(p["repinit"]["embedding"], ri["embeddings"]["networks"][0], f"{where}/repinit")
    if "embedding_strip" in p["repinit"]:
        net(p["repinit"]["embedding_strip"], _get(ri, "embeddings_strip/networks/0", where),
            f"{where}/repinit/embeddings_strip")
    out = {"repinit": stats(ri, b["repinit"], f"{where}/repinit")}
    if "three_body" in p:
        tb = d["repinit_three_body_variable"]
        net(p["three_body"]["embedding"], tb["embeddings"]["networks"][0],
            f"{where}/repinit_three_body")
        out["three_body"] = stats(tb, b["three_body"], f"{where}/repinit_three_body")
    layer(p["g1_shape_tranform"], d["g1_shape_tranform"], f"{where}/g1_shape_tranform")
    if "tebd_transform" in p:
        layer(p["tebd_transform"], d["tebd_transform"], f"{where}/tebd_transform")
    rf, src = p["repformer"], d["repformers_variable"]
    layer(rf["g2_embd"], src["g2_embd"], f"{where}/repformers/g2_embd")
    layers = src["repformer_layers"]
    if len(layers) != len(rf["layers"]):
        _fail(where, f"{len(layers)} repformer layers, this model expects {len(rf['layers'])}")
    for i, (ours, theirs) in enumerate(zip(rf["layers"], layers, strict=True)):
        w = f"{where}/repformer_layers/{i}"
        for k, v in ours.items():
            if k.endswith("_residual"):
                ours[k] = residuals(v, theirs["@variables"].get(k), f"{w}/{k}")
            else:
                layer(v, _get(theirs, _REPFORMER[k], w), f"{w}/{_REPFORMER[k]}")
        for k, theirs_name in _REPFORMER.items():  # theirs must have nothing we lack
            node = theirs
            for key in theirs_name.split("/"):
                node = node.get(key) if isinstance(node, dict) else None
            if k not in ours and isinstance(node, dict) and node.get("@variables"):
                _fail(w, f"'{theirs_name}' has no place in this model")
    out["repformer"] = stats(src, b["repformer"], f"{where}/repformers")
    return out


_REPFLOW = {"node_self": "node_self_mlp", "node_sym": "node_sym_linear",
            "node_edge": "node_edge_linear", "edge_self": "edge_self_linear",
            "edge_angle1": "edge_angle_linear1", "edge_angle2": "edge_angle_linear2",
            "angle_self": "angle_self_linear", "a_compress_n": "a_compress_n_linear",
            "a_compress_e": "a_compress_e_linear"}


def dpa3(p: dict, b: dict, d: dict, cfg: dict, where: str) -> dict:
    net(p["type_embedding"], d["type_embedding"]["embedding"], f"{where}/type_embedding")
    src = d["repflow_variable"]
    layer(p["edge_embd"], src["edge_embd"], f"{where}/edge_embd")
    if "angle_embd" in p:  # absent when no layer reads angles
        layer(p["angle_embd"], src["angle_embd"], f"{where}/angle_embd")
    layers = src["repflow_layers"]
    if len(layers) != len(p["layers"]):
        _fail(where, f"{len(layers)} repflow layers, this model expects {len(p['layers'])}")
    for i, (ours, theirs) in enumerate(zip(p["layers"], layers, strict=True)):
        w = f"{where}/repflow_layers/{i}"
        # our last layer keeps node parameters only, the one before it no angle update:
        # DeePMD-kit's updates there reach no output, so those weights are skipped
        for k, name in _REPFLOW.items():
            if k in ours:
                layer(ours[k], _get(theirs, name, w), f"{w}/{name}")
        for k in ("n_residual", "e_residual", "a_residual"):
            if k in ours:
                ours[k] = residuals(ours[k], theirs["@variables"].get(k), f"{w}/{k}")
    return stats(src, b, where)


def hybrid(p: list, b: list, d: dict, cfg: dict, where: str) -> list:
    subs = d["list"]
    if len(subs) != len(cfg["list"]):
        _fail(where, f"{len(subs)} members, this model expects {len(cfg['list'])}")
    return [descriptor(p[i], b[i], subs[i], cfg["list"][i], f"{where}/list/{i}")
            for i in range(len(subs))]


_KINDS = {"se_e2_a": se_e2, "se_e2_r": se_e2, "se_atten": se_atten, "se_atten_v2": se_atten,
          "dpa1": se_atten, "dpa2": dpa2, "dpa3": dpa3, "hybrid": hybrid}


def descriptor(p, b, d: dict, cfg: dict, where: str = "descriptor"):
    """Fill our descriptor params `p` (in place) from DeePMD-kit's serialized descriptor `d`;
    returns the statistics tree (buffers["descriptor"]) shaped as the template `b`."""
    fn = _KINDS.get(cfg["type"])
    if fn is None:
        raise ModelFileError(f"DeePMD-kit descriptor '{cfg['type']}' is not implemented here")
    return fn(p, b, d, cfg, where)


def fitting(p: dict, f: dict, where: str = "fitting") -> None:
    nets = f["nets"]["networks"]
    if "all" in p:
        if len(nets) != 1:
            _fail(where, f"{len(nets)} fitting nets, this model expects one for all types")
        net(p["all"], nets[0], f"{where}/nets/0")
        return
    if len(nets) != len(p):
        _fail(where, f"{len(nets)} fitting nets, this model expects {len(p)}")
    for t in range(len(p)):
        net(p[f"t{t}"], nets[t], f"{where}/nets/{t}")


def energy_bias(model: dict, like: np.ndarray) -> np.ndarray:
    """Our per-type energy bias = DeePMD-kit's atomic-model out_bias + the fitting's
    bias_atom_e (both added to each atom's energy there)."""
    out_bias = np.asarray(model["@variables"]["out_bias"])  # [n_outputs, nt, 1]
    fit = model["fitting"]["@variables"].get("bias_atom_e")
    total = out_bias[0].reshape(-1) + (0.0 if fit is None else np.asarray(fit).reshape(-1))
    return _array(total, like, "out_bias")


# DeePMD-kit's se_e2_r descriptor is ours times 1/5 (measured on its 3.2 models: the ratio of the
# two descriptors is 5 to 1e-15 for every entry); the factor is folded into the first fitting
# layer, whose input it is, so the energies agree and our descriptor code stays as it is. That
# is exact only when that layer has no residual (its width differs from the descriptor's).
SE_R_SCALE = 0.2


def _column_scale(cfg: dict, ntypes: int) -> np.ndarray:
    from deepmd_md.model import descriptors

    if cfg["type"] == "hybrid":
        return np.concatenate([_column_scale(c, ntypes) for c in cfg["list"]])
    n = descriptors.kind(cfg).out_dim(cfg, ntypes)
    return np.full(n, SE_R_SCALE if cfg["type"] == "se_e2_r" else 1.0)


def fold_descriptor_scale(fit: dict, cfg: dict, ntypes: int) -> None:
    """Scale the rows of every fitting net's first layer by DeePMD-kit's descriptor factors."""
    scale = _column_scale(cfg, ntypes)
    if np.all(scale == 1.0):
        return
    for p in fit.values():
        w = p["layers"][0]["w"]
        if w.shape[0] == w.shape[1]:
            raise ModelFileError(
                "DeePMD-kit se_e2_r with a first fitting layer as wide as the descriptor "
                f"({w.shape[0]}) is not implemented here (its descriptor carries a factor 1/5 "
                "that our se_e2_r has not, and the layer's residual adds the descriptor itself)")
        p["layers"][0]["w"] = (w * scale[:, None].astype(w.dtype)).astype(w.dtype)

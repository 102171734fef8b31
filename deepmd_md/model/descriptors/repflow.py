"""RepFlow layers of DPA-3: node, edge and angle features updated together (array API).

Math (Zhang et al. 2025, arXiv 2506.01686; DeePMD-kit 3.x "DPA3"), for a center i with its
nnei = e_sel nearest neighbors j inside e_rcut (edges) and, among its first a_sel slots, those
inside a_rcut (angle neighbors j, k):

  geometry    sw_ij = switch_e(r_ij), s = sw/r, R_ij = ((s, s x/r, s y/r, s z/r) - davg) / dstd
              h_ij = R_ij[1:4]; a_sw_ij = switch_a(r_ij) on angle slots, 0 elsewhere
  init        n_i = act(T[t_i]); e_ij = act(R_ij[0] W_e + b_e) (or r_ij W_e + b_e, no act,
              with edge_init_use_dist); a_ijk = c cos(theta_jik) W_a, c = (1 - 1e-6)/sqrt(pi),
              the unit vectors d/(r + 1e-6)
  node        u1 = act(L(n_i)); u2 = act(L([S(e, h), S(n_j, h)])) with
              S(g, h) = (H^T[:axis] H) / 3 flattened, H = sum_j sw_ij h_ij g_ij^T / sqrt(nnei);
              u3.. = sum_j sw_ij act(L([n_i, n_j, e_ij])) / nnei  (n_multi_edge_message heads)
  edge        v1 = act(L([n_i, n_j, e_ij]));  v2 = act(L(m_ij)) with m_ij =
              sum_k a_sw_ij a_sw_ik act(L([a_ijk, n'_i, e'_ik, e'_ij])) / sqrt(a_sel) on angle
              edges; elsewhere m_ij = e_ij (or 0 with smooth_edge_update)
  angle       w1 = act(L([a_ijk, n'_i, e'_ik, e'_ij]))
  update      res_residual: x + sum_k r_k u_k (r_k trainable); res_avg: (x + sum u)/sqrt(K+1);
              res_incr: x + sum u / sqrt(K)
  options     sequential_update: edges += v1, then angles (reading the new edges), then
              edges += v2 (new edges and angles), then nodes (final edges); use_dynamic_sel:
              nnei and a_sel in the normalisers divided by sel_reduce_factor; env_protection p:
              s = sw / (r + p), s x/r -> s x/(r + p)

n', e': node and edge features compressed for the angle messages (a_compress_rate c: a linear
map without bias to a_dim/c and a_compress_e_rate * a_dim/(2c), or their first entries with
a_compress_use_split). L = a linear layer y = x W + b. Every concatenation above is evaluated
as a sum of products with the row blocks of W (no concatenated copy).
"""

from __future__ import annotations

import math

import numpy as np

from deepmd_md.model.env import gather_rows, real
from deepmd_md.model.nn import activate
from deepmd_md.model.xp import array_namespace

ANGLE_SCALE = (1.0 - 1e-6) / math.sqrt(math.pi)  # angle input = ANGLE_SCALE * cos(theta)
UNIT_EPS = 1e-6  # unit vectors of the angle input: d / (r + UNIT_EPS)


# -- parameters ---------------------------------------------------------------------------------


def _linear(rng, nin: int, nout: int, dtype, bias: bool = True) -> dict:
    p = {"w": rng.normal(0.0, 1.0 / math.sqrt(nin + nout), (nin, nout)).astype(dtype)}
    if bias:
        p["b"] = rng.normal(0.0, 1.0, nout).astype(dtype)
    return p


def compressed_dims(rf: dict) -> tuple[int, int]:
    """Widths of the node and edge features inside the angle messages."""
    c = rf["a_compress_rate"]
    if c == 0:
        return rf["n_dim"], rf["e_dim"]
    return rf["a_dim"] // c, rf["a_compress_e_rate"] * rf["a_dim"] // (2 * c)


def n_updates(rf: dict) -> tuple[int, int, int]:
    """Number of update terms of node, edge and angle features."""
    ua = bool(rf["update_angle"])
    return 2 + rf["n_multi_edge_message"], 1 + ua, int(ua)


def node_only(rf: dict, index: int) -> bool:
    """The last layer's edge and angle updates reach nothing (unless sequential_update feeds
    them to its node update): that layer has node parameters only and skips their work."""
    return index == rf["nlayers"] - 1 and not rf.get("sequential_update", False)


def keeps_angle_update(rf: dict, index: int) -> bool:
    """The angle features a layer writes are read only by the next layer's edge and angle
    updates: none after the second-to-last layer when the last is node_only()."""
    return bool(rf["update_angle"]) and not node_only(rf, index) and not node_only(rf, index + 1)


def init_layer(rf: dict, rng: np.random.Generator, dtype, node_only: bool = False,
               angle_update: bool = True) -> dict:
    n, e, a = rf["n_dim"], rf["e_dim"], rf["a_dim"]
    ax, heads = rf["axis_neuron"], rf["n_multi_edge_message"]
    p = {
        "node_self": _linear(rng, n, n, dtype),
        "node_sym": _linear(rng, (n + e) * ax, n, dtype),
        "node_edge": _linear(rng, 2 * n + e, n * heads, dtype),
    }
    if not node_only:
        p["edge_self"] = _linear(rng, 2 * n + e, e, dtype)
    if rf["update_angle"] and not node_only:
        nc, ec = compressed_dims(rf)
        if rf["a_compress_rate"] and not rf["a_compress_use_split"]:
            p["a_compress_n"] = _linear(rng, n, nc, dtype, bias=False)
            p["a_compress_e"] = _linear(rng, e, ec, dtype, bias=False)
        p["edge_angle1"] = _linear(rng, a + nc + 2 * ec, e, dtype)
        p["edge_angle2"] = _linear(rng, e, e, dtype)
        if angle_update:
            p["angle_self"] = _linear(rng, a + nc + 2 * ec, a, dtype)
    if rf["update_style"] == "res_residual":
        for key, width, count in zip(("n_residual", "e_residual", "a_residual"), (n, e, a),
                                     n_updates(rf), strict=True):
            if count == 0 or (node_only and key != "n_residual") or (
                    key == "a_residual" and not angle_update):
                continue
            shape = (count, width)
            scale = rf["update_residual"]
            r = (np.full(shape, scale) if rf["update_residual_init"] == "const"
                 else rng.normal(0.0, scale, shape))
            p[key] = r.astype(dtype)
    return p


def init_params(rf: dict, rng: np.random.Generator, dtype) -> dict:
    """Edge and angle embeddings and the layers (the type embedding lives in dpa3.py)."""
    p = {"edge_embd": _linear(rng, 1, rf["e_dim"], dtype)}
    if reads_angles(rf):
        p["angle_embd"] = _linear(rng, 1, rf["a_dim"], dtype, bias=False)
    p["layers"] = [init_layer(rf, rng, dtype, node_only(rf, i), keeps_angle_update(rf, i))
                   for i in range(rf["nlayers"])]
    return p


def reads_angles(rf: dict) -> bool:
    """Whether any layer reads angle features (else no angle embedding, no angle work)."""
    return bool(rf["update_angle"]) and not node_only(rf, 0)


# -- geometry -----------------------------------------------------------------------------------


def switch(rf: dict, r, rcut_smth: float, rcut: float):
    """Polynomial C2 switch (1 below rcut_smth, 0 beyond rcut), or with use_exp_switch
    exp(-exp(20 (r - rcut_smth) / rcut_smth)) below rcut, 0 beyond."""
    xp = array_namespace(r)
    rr = real(r)
    zero = xp.zeros_like(r)
    if rf["use_exp_switch"]:
        inside = rr < rcut
        rs = xp.where(inside, r, xp.full_like(r, rcut))
        return xp.where(inside, xp.exp(-xp.exp(20.0 * (rs - rcut_smth) / rcut_smth)), zero)
    u = (r - rcut_smth) / (rcut - rcut_smth)
    poly = u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0
    return xp.where(rr < rcut_smth, xp.ones_like(r), xp.where(rr < rcut, poly, zero))


def geometry(rf: dict, stats: dict, ext_coord, atype, nlist, mask,
             protection: float = 0.0) -> dict:
    """Everything the layers need from coordinates.

    nlist [nf, nloc, nnei] (-1 = empty; empty slots gather atom 0 and are masked); mask: its
    valid slots (exclusions applied). Returns sw, h [.., 3], hw = sw h, edge_in (normalised s
    or r), a_mask / a_sw [nf, nloc, a_sel], a_sw_row [nf, nloc, 1, a_sel] and cos [nf, nloc,
    a_sel, a_sel] (angle input, symmetric)."""
    xp = array_namespace(ext_coord)
    nloc = nlist.shape[1]
    diff = gather_rows(ext_coord, nlist) - ext_coord[:, :nloc, None, :]
    r2 = xp.sum(diff * diff, axis=-1)
    r2 = xp.where(mask, r2, xp.ones_like(r2))  # empty slots: r = 1 keeps 1/r finite
    r = xp.sqrt(r2)
    zero = xp.zeros_like(r)
    sw = xp.where(mask, switch(rf, r, rf["e_rcut_smth"], rf["e_rcut"]), zero)
    rp = r + protection
    s = sw / rp
    env = xp.concat([s[..., None], (s / rp)[..., None] * diff], axis=-1)
    flat = xp.reshape(atype, (-1,))
    shape = (atype.shape[0], nloc, 1, 4)
    avg = xp.reshape(xp.take(stats["davg"], flat, axis=0), shape)
    std = xp.reshape(xp.take(stats["dstd"], flat, axis=0), shape)
    env = (env - avg) / std
    asel = rf["a_sel"]
    ra, da = r[:, :, :asel], diff[:, :, :asel, :]
    a_mask = mask[:, :, :asel] & (real(ra) < rf["a_rcut"])
    a_sw = xp.where(a_mask, switch(rf, ra, rf["a_rcut_smth"], rf["a_rcut"]), zero[:, :, :asel])
    unit = da / (ra[..., None] + UNIT_EPS)
    cos = xp.matmul(unit, xp.matrix_transpose(unit))
    pair = a_mask[:, :, :, None] & a_mask[:, :, None, :]
    cos = xp.where(pair, cos, xp.zeros_like(cos))
    edge_in = xp.where(mask, r, zero) if rf["edge_init_use_dist"] else env[..., 0]
    h = env[..., 1:]
    return {"sw": sw, "h": h, "edge_in": edge_in, "a_mask": a_mask, "a_sw": a_sw, "cos": cos,
            # the same in every layer: switched h, and a_sw as a row for the sums over k
            "hw": h * sw[..., None], "a_sw_row": xp.reshape(a_sw, (a_sw.shape[0], nloc, 1, asel))}


def init_features(rf: dict, params: dict, geo: dict, act: str):
    """Initial edge [nf, nloc, nnei, e_dim] and angle [nf, nloc, a_sel, a_sel, a_dim] features
    (angle None when no layer reads it; the layers keep its slots k-major: [.., k, j, :])."""
    pe = params["edge_embd"]
    edge = geo["edge_in"][..., None] * pe["w"][0] + pe["b"]
    if not rf["edge_init_use_dist"]:
        edge = activate(edge, act)
    if "angle_embd" not in params:  # reads_angles() is false
        return edge, None
    angle = (ANGLE_SCALE * geo["cos"])[..., None] * params["angle_embd"]["w"][0]
    return edge, angle


# -- one layer ----------------------------------------------------------------------------------


def _lin(p: dict, x):
    xp = array_namespace(x)
    y = xp.matmul(x, p["w"])
    return y + p["b"] if "b" in p else y


def _symmetrize(g, hw, nnei: float, axis: int):
    """(H^T[:axis] H) / 3 flattened: H = hw^T g / sqrt(nnei), hw = sw h [nf, nloc, nnei, 3],
    g [nf, nloc, nnei, d] -> [nf, nloc, axis * d]."""
    xp = array_namespace(g)
    hg = xp.matmul(xp.matrix_transpose(hw), g) / math.sqrt(nnei)  # [nf, nloc, 3, d]
    grrg = xp.matmul(xp.matrix_transpose(hg[..., :axis]), hg) / 3.0  # [nf, nloc, axis, d]
    return xp.reshape(grrg, (g.shape[0], g.shape[1], axis * g.shape[-1]))


def _update(rf: dict, x, terms: list, res):
    style = rf["update_style"]
    if style == "res_residual":
        for k, u in enumerate(terms):
            x = x + res[k] * u
        return x
    total = terms[0]
    for u in terms[1:]:
        total = total + u
    if style == "res_avg":
        return (x + total) / math.sqrt(len(terms) + 1.0)
    return x + total / math.sqrt(float(len(terms)))  # res_incr


def layer(rf: dict, p: dict, node_ext, edge, angle, nlist, geo: dict, act: str):
    """One RepFlow layer: node features of local and ghost atoms node_ext [nf, nall, n_dim],
    edge [nf, nloc, nnei, e_dim], angle [nf, nloc, a_sel (k), a_sel (j), a_dim] -> (node
    [nf, nloc, n_dim], edge, angle) updated (angle unchanged without update_angle; edge and
    angle unchanged in a node-only layer, see node_only()).

    Every update reads the layer's input features, or with sequential_update (res_residual
    only): edge self-update, then angle (reading the new edges), then the angle message to the
    edges (new edges and angles), then the nodes (final edges).

    Cost (this step is differentiated twice in force training, so every full-size op counts
    about three times): the angle tensors are stored k-major, so the message to edge j,
    sum_k a_sw_k act(..)_kj, is one product per center over a contiguous [a_sel, a_sel * e]
    block; the neighbor-weighted sums are products with the [..., 1, nnei] weights; the
    linear maps of [n_i, n_j, ...] add their small (per-center, per-edge) parts first, so
    one full-size sum is left per broadcast axis; row-wise maps of n_j are applied to the
    nall rows before the gather."""
    xp = array_namespace(node_ext)
    nf, nloc, nnei = nlist.shape
    n_dim, e_dim = rf["n_dim"], rf["e_dim"]
    node = node_ext[:, :nloc, :]
    asel, a_dim = rf["a_sel"], rf["a_dim"]
    nc, ec = compressed_dims(rf)
    # neighbor-count normalisers: the slot counts, or e_sel / sel_reduce_factor (a_sel / ...)
    # with use_dynamic_sel
    e_norm, a_norm = float(nnei), float(rf["a_sel"])
    if rf.get("use_dynamic_sel", False):
        e_norm, a_norm = e_norm / rf["sel_reduce_factor"], a_norm / rf["sel_reduce_factor"]
    sw_row = xp.reshape(geo["sw"] / e_norm, (nf, nloc, 1, nnei))  # weights of the edge sums

    def node_terms(edge):
        terms = [activate(_lin(p["node_self"], node), act)]
        axis = rf["axis_neuron"]
        nei = gather_rows(node_ext, nlist)  # [nf, nloc, nnei, n]
        sym = xp.concat([_symmetrize(edge, geo["hw"], e_norm, axis),
                         _symmetrize(nei, geo["hw"], e_norm, axis)], axis=-1)
        terms.append(activate(_lin(p["node_sym"], sym), act))
        y = activate(pair_linear(p["node_edge"], edge), act)  # [nf, nloc, nnei, n * heads]
        msg = xp.reshape(xp.matmul(sw_row, y), (nf, nloc, y.shape[-1]))
        for h in range(rf["n_multi_edge_message"]):
            terms.append(msg[..., h * n_dim:(h + 1) * n_dim])
        return terms

    def pair_linear(q, edge):  # L([n_i, n_j, e_ij]) from the row blocks of W
        w = q["w"]
        y_i = (xp.matmul(node, w[:n_dim]) + q["b"])[:, :, None, :]
        y_j = gather_rows(xp.matmul(node_ext, w[n_dim:2 * n_dim]), nlist)
        return xp.matmul(edge, w[2 * n_dim:]) + (y_j + y_i)

    def compressed(edge):  # n'_i [nf, nloc, nc] and e'_ij [nf, nloc, a_sel, ec]
        node_c, edge_c = node, edge[:, :, :asel, :]
        if rf["a_compress_rate"]:
            if rf["a_compress_use_split"]:
                node_c, edge_c = node_c[..., :nc], edge_c[..., :ec]
            else:
                node_c = xp.matmul(node_c, p["a_compress_n"]["w"])
                edge_c = xp.matmul(edge_c, p["a_compress_e"]["w"])
        return node_c, edge_c

    def angle_linear(q, comp, angle):  # L([a_ijk, n'_i, e'_ik, e'_ij]), angle k-major
        node_c, edge_c = comp
        w = q["w"]
        ww = (w[:a_dim], w[a_dim:a_dim + nc], w[a_dim + nc:a_dim + nc + ec], w[a_dim + nc + ec:])
        y_ik = (xp.matmul(edge_c, ww[2]) + (xp.matmul(node_c, ww[1]) + q["b"])[:, :, None, :])
        y_j = xp.matmul(edge_c, ww[3])[:, :, None, :, :]
        return xp.matmul(angle, ww[0]) + (y_ik[:, :, :, None, :] + y_j)

    def edge_angle_term(edge, angle, comp):
        y = activate(angle_linear(p["edge_angle1"], comp, angle), act)  # [nf, nloc, k, j, e]
        m = xp.matmul(geo["a_sw_row"], xp.reshape(y, (nf, nloc, asel, asel * e_dim)))
        m = xp.reshape(m, (nf, nloc, asel, e_dim)) * (geo["a_sw"] / math.sqrt(a_norm))[..., None]
        q = p["edge_angle2"]
        if rf["smooth_edge_update"]:  # slots without angles: act(0 W + b) = act(b)
            tail = xp.broadcast_to(activate(q["b"], act), (nf, nloc, nnei - asel, e_dim))
            return xp.concat([activate(_lin(q, m), act), tail], axis=2)
        # edges without angles carry themselves ("self" padding, as DeePMD-kit)
        m = xp.where(geo["a_mask"][..., None], m, edge[:, :, :asel, :])
        m = xp.concat([m, edge[:, :, asel:, :]], axis=2)
        return activate(_lin(q, m), act)

    def angle_term(angle, comp):
        return activate(angle_linear(p["angle_self"], comp, angle), act)

    if "edge_self" not in p:  # node_only(): the last layer
        return _update(rf, node, node_terms(edge), p.get("n_residual")), edge, angle
    edge_self = activate(pair_linear(p["edge_self"], edge), act)
    if rf.get("sequential_update", False):
        re, ra = p["e_residual"], p["a_residual"]
        edge = edge + re[0] * edge_self
        comp = compressed(edge)
        angle = angle + ra[0] * angle_term(angle, comp)
        edge = edge + re[1] * edge_angle_term(edge, angle, comp)
        return _update(rf, node, node_terms(edge), p.get("n_residual")), edge, angle
    n_terms, e_terms = node_terms(edge), [edge_self]
    if rf["update_angle"]:
        comp = compressed(edge)
        e_terms.append(edge_angle_term(edge, angle, comp))
        if "angle_self" in p:  # see keeps_angle_update()
            angle = _update(rf, angle, [angle_term(angle, comp)], p.get("a_residual"))
    node = _update(rf, node, n_terms, p.get("n_residual"))
    return node, _update(rf, edge, e_terms, p.get("e_residual")), angle

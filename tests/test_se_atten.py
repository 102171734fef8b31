"""DPA-1 (se_atten, dpa1, se_atten_v2) specifics, beyond the shared physics/backend tests that
run tests/tiny/se_atten.py: every switch on the NumPy reference against PyTorch, the descriptor
against a plain per-atom loop writing of the rules, the non-smooth variants' gradients, the
empty-slot rule of the concat mode, and the input keys.

The rules (found as DeePMD-kit 3.2's behaviour by black-box probing, see se_atten.py and
attention.py): empty slots have env row -davg/dstd and the type of extended atom 0 of their
frame; an excluded pair is an empty slot whose row is 0; the attention is post-norm
(G <- LN(G + A)); the smooth attention takes the softmax over every slot (empty ones at logit
-20), the other one over real neighbors only; the temperature multiplies the logits.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import ORTHO_BOX, TRICLINIC_BOX, assert_close, make_model, random_frames

from deepmd_md import keys
from deepmd_md.backends.numpy import reference
from deepmd_md.errors import ConfigError
from deepmd_md.model.descriptors import se_atten
from deepmd_md.model.frames import extended_coord, prepare_frames

_BASE = {"sel": 20, "rcut": 3.5, "rcut_smth": 1.0, "neuron": [4, 8], "axis_neuron": 4,
         "tebd_dim": 4, "attn": 6}

# every switch of the descriptor appears in at least one variant
VARIANTS = {
    # DeePMD-kit's se_atten defaults: concat, both types, masked (non-smooth) attention, davg 0
    "concat": {"type": "se_atten", **_BASE, "attn_layer": 2, "seed": 1},
    "concat_one_side_smooth": {"type": "dpa1", **_BASE, "type_one_side": True,
                               "smooth_type_embedding": True, "attn_layer": 1, "seed": 2},
    "concat_plain_attn": {"type": "se_atten", **_BASE, "attn_dotr": False, "normalize": False,
                          "scaling_factor": 2.0, "ln_eps": 1e-3, "attn_layer": 2,
                          "set_davg_zero": False, "resnet_dt": True, "neuron": [4, 8, 16],
                          "seed": 3},
    "strip_masked": {"type": "se_atten", **_BASE, "tebd_input_mode": "strip",
                     "temperature": 0.7, "attn_layer": 1, "set_davg_zero": False, "seed": 4},
    "v2_no_attn": {"type": "se_atten_v2", **_BASE, "attn_layer": 0,
                   "concat_output_tebd": False, "seed": 5},
    # the deprecated key, a type-net bias, fixed layer norms, tebd_dim = ntypes (residual)
    "stripped_old": {"type": "se_atten", **_BASE, "stripped_type_embedding": True,
                     "smooth_type_embedding": True, "use_tebd_bias": True, "tebd_dim": 2,
                     "trainable_ln": False, "attn_layer": 2, "seed": 6},
    # davg 0: an excluded neighbor's row (0) then equals an empty slot's (-davg/dstd), so
    # the energy stays continuous as it crosses rcut (with davg != 0 it jumps, as DeePMD-kit's)
    "v2_exclude": {"type": "se_atten_v2", **_BASE, "exclude_types": [[0, 1]], "attn_layer": 2,
                   "set_davg_zero": True, "seed": 7},
}
SMOOTH = ["concat_one_side_smooth", "v2_no_attn", "stripped_old", "v2_exclude"]


def model(name, seed=0):
    data = make_model(desc=copy.deepcopy(VARIANTS[name]), stats_seed=seed)
    d = data["config"]["descriptor"]
    if d["set_davg_zero"]:  # as DeePMD-kit's statistics would be
        data["buffers"]["descriptor"]["davg"][:] = 0.0
    # the layer norms' scale and shift away from 1 and 0, so that they are exercised
    rng = np.random.default_rng(seed + 11)
    for layer in data["params"]["descriptor"]["attention"]:
        if "ln" in layer:
            layer["ln"] = {k: v + rng.normal(0, 0.3, v.shape) for k, v in layer["ln"].items()}
    return data


# -- a plain writing of the descriptor, one center at a time -----------------------------------


def _mlp(layers, x, act=np.tanh):
    """DeePMD-kit's embedding layer rule, written out: y = act(x w + b) [* idt] (+ x | + [x, x])."""
    for L in layers:
        y = act(x @ L["w"] + L.get("b", 0.0)) * L.get("idt", 1.0)
        if y.shape[-1] == x.shape[-1]:
            y = y + x
        elif y.shape[-1] == 2 * x.shape[-1]:
            y = y + np.concatenate([x, x], axis=-1)
        x = y
    return x


def _sw(r, rs, rc):
    if r < rs:
        return 1.0
    if r >= rc:
        return 0.0
    u = (r - rs) / (rc - rs)
    return u**3 * (-6 * u**2 + 15 * u - 10) + 1


def plain_descriptor(cfg, params, stats, ext_coord, ext_atype, nlist):
    nf, nloc, nnei = nlist.shape
    nt = stats["davg"].shape[0]
    p = params
    strip = cfg["type"] == "se_atten_v2" or cfg.get("tebd_input_mode") == "strip" or bool(
        cfg.get("stripped_type_embedding"))
    smooth = cfg["type"] == "se_atten_v2" or cfg.get("smooth_type_embedding", False)
    one_side = cfg["type_one_side"]
    tebd = _mlp(p["type_embedding"]["layers"], np.eye(nt), act=lambda x: x)
    excl = {tuple(e) for e in cfg["exclude_types"]} | {tuple(e[::-1]) for e in cfg["exclude_types"]}
    out = []
    for f in range(nf):
        for i in range(nloc):
            ti = ext_atype[f, i]
            R, G, rhat, sw, real = [], [], [], [], []
            for k in range(nnei):
                j = nlist[f, i, k]
                ex = j >= 0 and (ti, ext_atype[f, j]) in excl
                if j < 0 or ex:
                    env, s_w, rh, tj = np.zeros(4), 0.0, np.zeros(3), ext_atype[f, 0]
                else:
                    d = ext_coord[f, j] - ext_coord[f, i]
                    r = np.linalg.norm(d)
                    s_w = _sw(r, cfg["rcut_smth"], cfg["rcut"])
                    env = np.concatenate([[s_w / r], s_w / r**2 * d])
                    rh, tj = d / r, ext_atype[f, j]
                row = np.zeros(4) if ex else (env - stats["davg"][ti]) / stats["dstd"][ti]
                ss = row[0]
                pair = tebd[tj] if one_side else np.concatenate([tebd[tj], tebd[ti]])
                if strip:
                    gs = _mlp(p["embedding"]["layers"], np.array([ss]))
                    gt = _mlp(p["embedding_strip"]["layers"], pair) * (s_w if smooth else 1.0)
                    g = gs + gs * gt
                else:
                    g = _mlp(p["embedding"]["layers"], np.concatenate([[ss], pair]))
                R.append(row)
                G.append(g)
                rhat.append(rh if cfg["attn_dotr"] else None)
                sw.append(s_w)
                real.append(j >= 0 and not ex)
            R, G, sw = np.array(R), np.array(G), np.array(sw)
            h = cfg["attn"]
            scale = cfg["temperature"] if cfg["temperature"] is not None else 1 / np.sqrt(
                h * cfg["scaling_factor"])
            eps = 1e-5 if cfg["ln_eps"] is None else cfg["ln_eps"]
            for L in p["attention"]:
                qkv = G @ L["in_proj"]["w"] + L["in_proj"]["b"]
                q, kk, v = qkv[:, :h], qkv[:, h:2 * h], qkv[:, 2 * h:]
                if cfg["normalize"]:
                    q, kk, v = (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
                                for a in (q, kk, v))
                w = np.zeros((nnei, nnei))
                for a in range(nnei):
                    logits = np.array([q[a] @ kk[b] * scale for b in range(nnei)])
                    if smooth:
                        logits = (logits + 20) * sw[a] * sw - 20
                        e = np.exp(logits - logits.max())
                        w[a] = e / e.sum() * sw[a] * sw
                    elif real[a] and any(real):
                        e = np.where(real, np.exp(logits - logits[real].max()), 0.0)
                        w[a] = e / e.sum()
                    if cfg["attn_dotr"]:
                        w[a] *= [rhat[a] @ rhat[b] for b in range(nnei)]
                o = (w @ v) @ L["out_proj"]["w"] + L["out_proj"]["b"]
                x = G + o
                mu, var = x.mean(1, keepdims=True), x.var(1, keepdims=True)
                G = (x - mu) / np.sqrt(var + eps)
                if "ln" in L:
                    G = G * L["ln"]["w"] + L["ln"]["b"]
            T = G.T @ R / nnei
            D = (T @ T[: cfg["axis_neuron"]].T).ravel()
            if cfg["concat_output_tebd"]:
                D = np.concatenate([D, tebd[ti]])
            out.append(D)
    return np.array(out).reshape(nf, nloc, -1)


def _extended(data, nat=10, box=ORTHO_BOX, seed=3):
    coord, atype, boxes = random_frames(nat, box, 1, seed=seed, min_dist=0.95)
    prep = prepare_frames(data["config"], coord, atype, boxes)
    ext = extended_coord(coord, np.zeros((1, 3, 3)), prep[keys.MAPPING], prep[keys.SHIFT])
    return np.asarray(ext), prep[keys.EXT_ATYPE], prep[keys.NLIST]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_descriptor_equals_plain_loops(name):
    data = model(name)
    ext, eat, nlist = _extended(data)
    assert (nlist < 0).any() and (nlist >= 0).sum() > 3 * nlist.shape[1], "needs real + empty"
    cfg = data["config"]["descriptor"]
    d = se_atten.compute(cfg, data["params"]["descriptor"], data["buffers"]["descriptor"], ext,
                         eat, nlist)
    ref = plain_descriptor(cfg, data["params"]["descriptor"], data["buffers"]["descriptor"],
                           ext, eat, nlist)
    assert d.shape[-1] == se_atten.out_dim(cfg)
    assert_close(d, ref, 1e-12, name)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_torch_equals_reference(name):
    pytest.importorskip("torch")
    from deepmd_md.backends.torch import adapter as ad

    data = model(name)
    coord, atype, boxes = random_frames(10, TRICLINIC_BOX, 1, seed=4, min_dist=0.95)
    ref = reference.evaluate(data, coord, atype, boxes)
    prep = prepare_frames(data["config"], coord, atype, boxes)
    out = ad.evaluate(data["config"], ad.asarray(data["params"]), ad.asarray(data["buffers"]),
                      coord, prep)
    assert np.abs(ref[keys.FORCE]).max() > 1e-3
    for k in (keys.ENERGY, keys.ATOM_ENERGY, keys.FORCE, keys.VIRIAL):
        assert_close(out[k], ref[k], 1e-10, f"{name}: {k}")


@pytest.mark.parametrize("name", ["concat", "strip_masked"])
def test_force_is_minus_gradient_without_smoothing(name):
    """The masked attention is not smooth at rcut, but inside it forces are still -dE/dx."""
    data = model(name)
    coord, atype, boxes = random_frames(8, ORTHO_BOX, 1, seed=5, min_dist=1.0)
    ref = reference.evaluate(data, coord, atype, boxes)
    h, fd = 1e-5, np.zeros(6)
    moves = [(a, c) for a in (0, 3) for c in range(3)]
    for n, (a, c) in enumerate(moves):
        e = []
        for s in (1, -1):
            x = coord.copy()
            x[0, a, c] += s * h
            e.append(reference.evaluate(data, x, atype, boxes)[keys.ENERGY][0])
        fd[n] = -(e[0] - e[1]) / (2 * h)
    got = np.array([ref[keys.FORCE][0, a, c] for a, c in moves])
    assert_close(got, fd, 1e-7, name)


def _crossing(r):
    """Atom 2 at distance r from atom 0; atoms 1 and 3 near atom 0 (see test_physics)."""
    u = np.array([1.0, 0.1, -0.2]) / np.linalg.norm([1.0, 0.1, -0.2])
    fixed = np.array([[0.0, 0.0, 0.0], [-1.1, 0.2, 0.1], [0.0, 0.0, 0.0], [-0.3, -0.9, 0.6]])
    coord = np.repeat(fixed[None], len(r), axis=0)
    coord[:, 2] = np.asarray(r)[:, None] * u
    return coord, np.tile([0, 1, 1, 0], (len(r), 1))


@pytest.mark.parametrize("name", ["concat", *SMOOTH])
def test_continuity_at_rcut(name):
    """The smooth attention (and strip's switched type net) make the energy C2 at rcut; the
    masked one jumps, as DeePMD-kit's se_atten with smooth_type_embedding false."""
    data = model(name)
    steps = np.array([1e-2, 1e-4])
    coord, atype = _crossing(np.concatenate([3.5 - steps, 3.5 + steps]))
    e = reference.evaluate(data, coord, atype, None)[keys.ENERGY]
    jump = np.abs(e[:2] - e[2:])
    if name in SMOOTH:
        assert jump[1] < 1e-11 and jump[0] < 1e-5, jump
    else:
        assert jump[1] > 1e-6, jump


def test_concat_empty_slot_takes_type_of_atom_0():
    """DeePMD-kit's rule: an empty slot embeds with the type of extended atom 0 of its frame.
    With davg != 0 an empty slot's row is nonzero, so the first atom's type changes the
    energy of atoms with empty slots; with davg = 0 (se_atten's default set_davg_zero) it
    does not, and permuting atoms leaves the energy unchanged."""
    coord, atype, boxes = random_frames(12, ORTHO_BOX, 1, seed=9, min_dist=0.95)
    perm = np.roll(np.arange(12), 1)
    assert atype[0, perm[0]] != atype[0, 0]
    e = {}
    for zero in (True, False):
        data = model("concat")
        if not zero:
            data["buffers"]["descriptor"]["davg"][:, 0] = [0.3, -0.2]
        e[zero] = [reference.evaluate(data, c, a, boxes)[keys.ENERGY][0]
                   for c, a in ((coord, atype), (coord[:, perm], atype[:, perm]))]
    assert abs(e[True][0] - e[True][1]) < 1e-10
    assert abs(e[False][0] - e[False][1]) > 1e-6


def test_v2_exclusion_removes_the_pair():
    """With exclude_types [[0, 1]] the energy does not see where the other type's atoms are:
    moving a type-1 atom changes nothing while type-0 atoms stay outside rcut of each other."""
    data = model("v2_exclude")
    coord = np.array([[[0.0, 0, 0], [1.2, 0.3, 0.1], [0.2, -1.1, 0.4], [5.0, 5.0, 5.0]]])
    atype = np.array([[0, 1, 1, 0]])
    e0 = reference.evaluate(data, coord, atype, None)[keys.ENERGY]
    moved = coord.copy()
    moved[0, 1] += [0.2, -0.1, 0.3]
    e1 = reference.evaluate(data, moved, atype, None)[keys.ENERGY]
    f = reference.evaluate(data, coord, atype, None)[keys.FORCE]
    # atoms 1 and 2 (type 1) still see each other: the energy moves, but not through type 0
    assert abs(e1[0] - e0[0]) > 1e-6
    assert np.abs(f[0, 0]).max() == 0.0 and np.abs(f[0, 3]).max() == 0.0


# -- input keys --------------------------------------------------------------------------------


def _norm(desc: dict) -> dict:
    from helpers import normalized_descriptor

    return normalized_descriptor(desc)


def test_keys_defaults_and_aliases():
    a = _norm({"type": "dpa1", "sel": [60, 60], "n_axis_neuron": 8, "smooth_type_embdding": True})
    assert a["type"] == "se_atten" and a["axis_neuron"] == 8 and a["smooth_type_embedding"]
    assert a["set_davg_zero"] is True and a["tebd_input_mode"] == "concat"
    assert se_atten.sel(a) == [120] and se_atten.mixed_types(a)
    v2 = _norm({"type": "se_atten_v2", "sel": 120})
    assert v2["set_davg_zero"] is False and se_atten.strip(v2) and se_atten.smooth(v2)
    assert se_atten.strip(_norm({"type": "se_atten", "stripped_type_embedding": True}))
    assert not se_atten.strip(_norm({"type": "se_atten", "stripped_type_embedding": False,
                                     "tebd_input_mode": "strip"}))
    assert se_atten.out_dim(v2) == 40 * 4 + 8


@pytest.mark.parametrize("desc, words", [
    ({"type": "se_atten_v2", "tebd_input_mode": "concat"}, "unknown key"),
    ({"type": "se_atten_v2", "smooth_type_embedding": False}, "unknown key"),
    ({"type": "se_atten", "attn_mask": True}, "not supported"),
    ({"type": "se_atten", "lmax": 2}, "lmax"),
    ({"type": "se_atten", "use_econf_tebd": True}, "not supported"),
    ({"type": "se_atten", "env_protection": 0.1}, "not supported"),
    ({"type": "se_atten", "tebd_input_mode": "mixed"}, "not valid"),
    ({"type": "se_atten", "post_ln": True}, "unknown key"),
])
def test_bad_keys(desc, words):
    with pytest.raises(ConfigError, match=words):
        _norm(desc)


def test_check_axis_neuron():
    cfg = _norm({"type": "se_atten", "sel": 20, "neuron": [4, 8], "axis_neuron": 16})
    with pytest.raises(ConfigError, match="axis_neuron"):
        se_atten.check(cfg, 2)


def test_statistics_keep_davg_zero():
    data = model("concat")
    ext, eat, nlist = _extended(data)
    cfg = data["config"]["descriptor"]
    sums = se_atten.stat_sums(cfg, ext, eat, nlist, 2)
    st = se_atten.stats_from_sums(cfg, sums, np.float64)
    assert np.all(st["davg"] == 0.0) and np.all(st["dstd"] > 0)
    st2 = se_atten.stats_from_sums({**cfg, "set_davg_zero": False}, sums, np.float64)
    assert np.all(st2["davg"][:, 0] > 0)

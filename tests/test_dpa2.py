"""DPA-2 specifics (the shared physics/backend/path tests run tests/tiny/dpa2.py, including the
crossing of repinit's cutoff and mapping exchange == independent ghosts): smoothness as a
neighbor crosses the repformer and three-body cutoffs, options beyond the tiny variants on every
backend (the masked, non-smooth form among them), finite-difference forces, statistics as
DeePMD-kit's, and the input schema and checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import (
    TRICLINIC_BOX,
    assert_close,
    check_fd_forces,
    make_model,
    normalized_descriptor,
    overridden,
    random_frames,
)
from tiny.dpa2 import TINY

from deepmd_md import keys
from deepmd_md.backends.numpy import reference
from deepmd_md.errors import ConfigError
from deepmd_md.model.descriptors import dpa2
from deepmd_md.model.frames import prepare_frames


def _desc(name, repinit=None, repformer=None, **top):
    desc = copy.deepcopy(TINY[name])
    desc["repinit"].update(repinit or {})
    desc["repformer"].update(repformer or {})
    desc.update(top)
    return desc


# -- smoothness as a neighbor crosses the inner cutoffs ------------------------------------------


def _crossing(r):
    """Atom 2 at distance r from atom 0 along u; atoms 1 and 3 sit close to atom 0 on the other
    side (so atom 0 has neighbors to pass messages and angles 1-0-2, 3-0-2), > 3.8 A from atom 2:
    only the pair (0, 2) moves, and it crosses no cutoff but the one at r."""
    u = np.array([1.0, 0.1, -0.2])
    u /= np.linalg.norm(u)
    v = np.cross(u, [0.0, 0.0, 1.0])
    v /= np.linalg.norm(v)
    w = np.cross(u, v)
    fixed = np.array([[0.0, 0.0, 0.0], -1.5 * u + 0.6 * v, [0.0, 0.0, 0.0],
                      -1.4 * u - 0.6 * v + 0.3 * w])
    coord = np.repeat(fixed[None], len(r), axis=0)
    coord[:, 2] = np.asarray(r)[:, None] * u
    return coord, np.array([0, 1, 1, 0])


def _jumps(data, rc):
    """Jumps of energy and force at rc, from each side's linear extrapolation of the values at
    rc -+ h and -+ 2h (atom 2 still interacts through repinit there, so E(r) has a slope; the
    extrapolations agree to O(h^3) where E is C2 and F is C1)."""
    steps = np.array([1e-1, 1e-2, 1e-3])
    r = np.concatenate([rc - steps, rc - 2 * steps, rc + steps, rc + 2 * steps])
    coord, atype = _crossing(r)
    d = np.linalg.norm(coord[:, :, None] - coord[:, None], axis=-1)
    assert d[:, 2, [1, 3]].min() > 3.8 and d[:, [0, 1, 3]][:, :, [0, 1, 3]].max() < 2.0
    out = reference.evaluate(data, coord, np.tile(atype, (len(r), 1)), None)
    n = len(steps)

    def jump(x):
        inner, inner2, outer, outer2 = x[:n], x[n:2 * n], x[2 * n:3 * n], x[3 * n:]
        return np.abs((2 * inner - inner2) - (2 * outer - outer2))

    return jump(out[keys.ENERGY]), jump(out[keys.FORCE]).max(axis=(1, 2))


CROSSINGS = {  # name: (descriptor, the cutoff crossed); switch bands of 1 A (in the tiny
    # "small" ones of 0.5 A, h = 0.1 is not yet asymptotic for the force)
    "repformer": (_desc("switched"), 3.0),
    "three_body": (_desc("small", repinit={"three_body_rcut": 2.6, "three_body_rcut_smth": 1.6}),
                   2.6),
    "repformer+three_body": (_desc("small", repinit={"three_body_rcut_smth": 2.0},
                                   repformer={"rcut_smth": 2.0}), 3.0),
}


@pytest.mark.parametrize("name", list(CROSSINGS))
def test_smooth_across_inner_cutoffs(name):
    """Every repformer term carries sw(r) (attention logits shifted and weighted, sums over
    nsel), the three-body term c_ijk vanishes with s: energy C2, force C1 at each cutoff."""
    desc, rc = CROSSINGS[name]
    de, df = _jumps(make_model(desc=desc), rc)
    assert de[0] > 1e-7 and df[0] > 1e-6, f"the pair must act just inside {rc}: {de} {df}"
    assert np.all(de[1:] < de[:-1] * 3e-3), f"energy jumps {de}"
    assert np.all(df[1:] < df[:-1] * 3e-2), f"force jumps {df}"
    assert de[-1] < 1e-9 and df[-1] < 1e-6


# -- options beyond the tiny variants: NumPy reference == torch == jax, forces ------------------

EXTRA = {
    # the masked form: neighbor sums over counts, attention softmax over real neighbors only
    "masked": _desc("small", repinit={"use_three_body": False},
                    repformer={"update_g1_has_attn": True, "update_g2_has_g1g1": True,
                               "update_g2_has_attn": True, "update_h2": True,
                               "use_sqrt_nnei": False},
                    smooth=False, exclude_types=[[1, 1]]),
    "residual+h2": _desc("switched", repinit={"tebd_input_mode": "concat", "type_one_side": False,
                                             "resnet_dt": True, "neuron": [4, 8, 8],
                                             "use_three_body": True, "three_body_rcut": 2.6,
                                             "three_body_rcut_smth": 2.0, "three_body_sel": 10},
                         repformer={"update_style": "res_residual", "direct_dist": False,
                                    "update_residual_init": "const", "update_residual": 0.3,
                                    "trainable_ln": False, "ln_eps": 1e-3,
                                    "activation_function": "gelu", "g1_out_mlp": True},
                         use_tebd_bias=True, concat_output_tebd=True, exclude_types=[[1, 1]]),
}


@pytest.mark.parametrize("name, backend", [("masked", "torch"), ("masked", "jax"),
                                           ("residual+h2", "torch")])
def test_backends_equal_reference(name, backend):
    """(jax compiles for ~15 s: the smooth options are on jax through the tiny variants)"""
    pytest.importorskip(backend)
    if backend == "torch":
        from deepmd_md.backends.torch import adapter as ad
    else:
        from deepmd_md.backends.jax import adapter as ad

    data = make_model(desc=EXTRA[name])
    coord, atype, box = random_frames(8, TRICLINIC_BOX, seed=5, min_dist=0.95)
    ref = reference.evaluate(data, coord, atype, box)
    assert np.abs(ref[keys.FORCE]).max() > 1e-3
    prep = prepare_frames(data["config"], coord, atype, box)
    out = ad.evaluate(data["config"], ad.asarray(data["params"]), ad.asarray(data["buffers"]),
                      coord, prep)
    for k in (keys.ENERGY, keys.FORCE, keys.VIRIAL):
        assert_close(np.asarray(out[k]), ref[k], 1e-10, f"{backend} {k}")


@pytest.mark.parametrize("name", list(EXTRA))
def test_force_is_minus_energy_difference_quotient(name):
    """Central differences of the energy (no complex step, no autodiff) give the forces."""
    data = make_model(desc=EXTRA[name])
    f = check_fd_forces(data)
    assert np.abs(f).max() > 1e-3


# -- statistics ---------------------------------------------------------------------------------


def test_statistics_as_deepmd_kit():
    """Per block over its own list (exclusions removed), the three-body block following
    repinit's set_davg_zero: DeePMD-kit 3.2's DescrptDPA2.compute_input_stats on data_3 frames
    0-2 (this config, exclude_types [[1, 1]]) gave davg(s) and dstd (s, xyz) per type below."""
    from helpers import WATER as WATER_DATA

    from deepmd_md.data.system import load_system
    from deepmd_md.model.frames import extended_coord

    ri = {"rcut": 3.5, "rcut_smth": 2.0, "nsel": 40, "neuron": [4, 8], "axis_neuron": 4,
          "tebd_dim": 4, "set_davg_zero": False, "use_three_body": True, "three_body_rcut": 2.6,
          "three_body_rcut_smth": 2.1, "three_body_sel": 20, "three_body_neuron": [2, 4]}
    rf = {"rcut": 3.0, "rcut_smth": 2.5, "nsel": 30, "nlayers": 2, "g1_dim": 8, "g2_dim": 4,
          "axis_neuron": 2, "attn1_hidden": 4, "attn1_nhead": 2, "attn2_hidden": 3,
          "attn2_nhead": 2, "set_davg_zero": False}
    desc = normalized_descriptor({"type": "dpa2", "repinit": ri, "repformer": rf,
                                  "exclude_types": [[1, 1]]})
    cfg = {"type_map": ["O", "H"], "descriptor": desc}
    s = load_system(WATER_DATA / "data_3")
    coord, box = s.coord[:3].reshape(3, -1, 3), s.box[:3]
    atype = np.tile(s.atype, (3, 1)) if s.atype.ndim == 1 else s.atype[:3]
    prep = prepare_frames(cfg, coord, atype, box)
    ext = extended_coord(coord, np.zeros((3, 3, 3)), prep[keys.MAPPING], prep[keys.SHIFT])
    sums = dpa2.stat_sums(desc, ext, prep[keys.EXT_ATYPE], prep[keys.NLIST], 2)
    st = dpa2.stats_from_sums(desc, sums, np.float64)
    expect = {
        "repinit": ([0.09850391987937943, 0.04214628110354913],
                    [[0.243234275296402, 0.15150977164766175],
                     [0.17706787948700708, 0.10508610343869977]]),
        "repformer": ([0.12329494261724255, 0.05326946654826826],
                      [[0.27861515776819773, 0.17590455723248277],
                       [0.20346106149995521, 0.12142739572970587]]),
        "three_body": ([0.14962263315332786, 0.0747838893410652],
                       [[0.32706537544676273, 0.20765214404936277],
                        [0.24307705821819584, 0.14683207300773335]]),
    }
    for name, (davg, dstd) in expect.items():
        np.testing.assert_allclose(st[name]["davg"][:, 0], davg, rtol=1e-12, err_msg=name)
        assert np.all(st[name]["davg"][:, 1:] == 0.0)
        np.testing.assert_allclose(st[name]["dstd"][:, :2], dstd, rtol=1e-12, err_msg=name)
    zero = dpa2.stats_from_sums(normalized_descriptor(_desc("small")), sums, np.float64)
    assert set(zero["repinit"]) == {"dstd"} and set(zero["three_body"]) == {"dstd"}


# -- schema -------------------------------------------------------------------------------------

# DeePMD-kit's examples/water/dpa2/input_torch_small.json descriptor section
WATER = {"type": "dpa2",
         "repinit": {"tebd_dim": 8, "rcut": 6.0, "rcut_smth": 0.5, "nsel": 120,
                     "neuron": [25, 50, 100], "axis_neuron": 12, "activation_function": "tanh",
                     "three_body_sel": 48, "three_body_rcut": 4.0, "three_body_rcut_smth": 3.5,
                     "use_three_body": True},
         "repformer": {"rcut": 4.0, "rcut_smth": 3.5, "nsel": 48, "nlayers": 3, "g1_dim": 128,
                       "g2_dim": 32, "attn2_hidden": 32, "attn2_nhead": 4, "attn1_hidden": 128,
                       "attn1_nhead": 4, "axis_neuron": 4, "update_h2": False,
                       "update_g1_has_conv": True, "update_g1_has_grrg": True,
                       "update_g1_has_drrd": True, "update_g1_has_attn": False,
                       "update_g2_has_g1g1": False, "update_g2_has_attn": False,
                       "update_style": "res_residual", "update_residual": 0.01,
                       "update_residual_init": "norm", "attn2_has_gate": True,
                       "use_sqrt_nnei": True, "g1_out_conv": True, "g1_out_mlp": True},
         "precision": "float64", "add_tebd_to_repinit_out": False}


def test_water_example_normalises():
    cfg = normalized_descriptor(WATER)
    dpa2.check(cfg, 2)
    assert cfg["smooth"] and cfg["concat_output_tebd"] and cfg["repformer"]["ln_eps"] is None
    assert dpa2.sel(cfg) == [120] and dpa2.rcut(cfg) == 6.0 and dpa2.out_dim(cfg) == 136
    assert dpa2.receptive_field(cfg) == 18.0 and dpa2.message_passing(cfg)
    assert dpa2.sel_key(cfg) == "repinit/nsel"
    alias = normalized_descriptor({**{k: v for k, v in WATER.items()
                                      if k != "add_tebd_to_repinit_out"},
                                   "repformer_add_type_ebd_to_seq": True})
    assert alias["add_tebd_to_repinit_out"] is True


@pytest.mark.parametrize("over, words", [
    ({"use_econf_tebd": True}, "use_econf_tebd"),
    ({"env_protection": 0.1}, "env_protection"),
    ({"repformer": {"update_style": "res_mean"}}, "update_style"),
    ({"repinit": {"tebd_input_mode": "sum"}}, "tebd_input_mode"),
    ({"repformer": {"update_residual_init": "zero"}}, "update_residual_init"),
])
def test_schema_rejects(over, words):
    with pytest.raises(ConfigError, match=words):
        normalized_descriptor(overridden(WATER, over))


@pytest.mark.parametrize("block, over, words", [
    ("repinit", {"nsel": "auto"}, "repinit/nsel"),
    ("repinit", {"three_body_sel": 150}, "nsel must grow with rcut"),
    ("repformer", {"nsel": 130}, "nsel must grow with rcut"),
    ("repformer", {"rcut_smth": 4.0}, "rcut_smth < rcut"),
    ("repinit", {"axis_neuron": 120}, "repinit/axis_neuron"),
    ("repformer", {"axis_neuron": 40}, "g2_dim"),
    ("repformer", {"update_g1_has_conv": False, "update_g1_has_grrg": False,
                   "update_g1_has_drrd": False}, "no input"),
])
def test_check_rejects(block, over, words):
    with pytest.raises(ConfigError, match=words):
        dpa2.check(normalized_descriptor(overridden(WATER, {block: over})), 2)

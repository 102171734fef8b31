"""DPA-3 specifics (the shared physics/backend/path tests run tests/tiny/dpa3.py): smoothness
as a neighbor crosses a_rcut, options beyond the tiny variants on every backend, the
exponential switch, and the input schema (DeePMD-kit's water example, unsupported keys)."""

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
from tiny.dpa3 import TINY

from deepmd_md import keys
from deepmd_md.backends.numpy import reference
from deepmd_md.errors import ConfigError
from deepmd_md.model.descriptors import dpa3, repflow
from deepmd_md.model.frames import prepare_frames

A_RCUT = TINY["default"]["repflow"]["a_rcut"]


def _model(desc, **repflow_over):
    desc = copy.deepcopy(desc)
    desc["repflow"].update(repflow_over)
    return make_model(desc=desc)


# -- smoothness as a neighbor crosses a_rcut -----------------------------------------------------


def _angle_crossing(r):
    """Atom 2 at distance r from atom 0 along u; atoms 1 and 3 sit close to atom 0 on the other
    side (so angles 1-0-2 and 3-0-2 exist), > 3.8 A from atom 2 for r near a_rcut: only the
    pair (0, 2) crosses a_rcut, and no pair crosses e_rcut."""
    u = np.array([1.0, 0.1, -0.2])
    u /= np.linalg.norm(u)
    fixed = np.array([[0.0, 0.0, 0.0], [-1.2, 0.3, 0.0], [0.0, 0.0, 0.0], [-0.8, -0.9, 0.5]])
    coord = np.repeat(fixed[None], len(r), axis=0)
    coord[:, 2] = np.asarray(r)[:, None] * u
    return coord, np.array([0, 1, 1, 0])


def _jumps(data):
    """Jumps of energy and force at a_rcut, from each side's linear extrapolation of the values
    at a_rcut -+ h and -+ 2h (atom 2 still interacts through its edge there, so E(r) has a
    slope; the extrapolations agree to O(h^3) where E is C2 and F is C1)."""
    steps = np.array([1e-1, 1e-2, 1e-3])
    r = np.concatenate([A_RCUT - steps, A_RCUT - 2 * steps, A_RCUT + steps, A_RCUT + 2 * steps])
    coord, atype = _angle_crossing(r)
    d = np.linalg.norm(coord[:, :, None] - coord[:, None], axis=-1)
    assert d[:, 2, [1, 3]].min() > 3.8 and d[:, [0, 1, 3]][:, :, [0, 1, 3]].max() < 2.0
    out = reference.evaluate(data, coord, np.tile(atype, (len(r), 1)), None)
    n = len(steps)

    def jump(x):
        inner, inner2, outer, outer2 = x[:n], x[n:2 * n], x[2 * n:3 * n], x[3 * n:]
        return np.abs((2 * inner - inner2) - (2 * outer - outer2))

    de = jump(out[keys.ENERGY])
    df = jump(out[keys.FORCE]).max(axis=(1, 2))
    return de, df


@pytest.mark.parametrize("variant", ["smooth", "default+smooth_edge_update"])
def test_smooth_across_a_rcut(variant):
    """smooth_edge_update: every angle term carries a_sw(r) (C2 at a_rcut), so the energy is
    C2 and the force C1 as a neighbor crosses a_rcut: jumps ~ h^3 and ~ h^2."""
    if variant == "smooth":
        data = make_model(desc=TINY["smooth"])
    else:
        data = _model(TINY["default"], smooth_edge_update=True)
    de, df = _jumps(data)
    assert de[0] > 1e-7 and df[0] > 1e-6, "the angle must act just inside a_rcut"
    assert np.all(de[1:] < de[:-1] * 3e-3), f"energy jumps {de}"
    assert np.all(df[1:] < df[:-1] * 3e-2), f"force jumps {df}"
    assert de[-1] < 1e-8 and df[-1] < 1e-5


def test_default_edge_update_jumps_at_a_rcut():
    """DeePMD-kit's default (smooth_edge_update false) feeds an edge without angles its own
    features instead of a vanishing angle message: the energy jumps as a neighbor crosses
    a_rcut. Reproduced on purpose (DeePMD-kit's behaviour, checked against its dpmodel)."""
    de, _ = _jumps(make_model(desc=TINY["default"]))
    assert de[-1] > 1e-7 and de[-1] > 0.5 * de[-2], de  # h^3 would shrink it 1000x


# -- options beyond the tiny variants: NumPy reference == torch == jax, forces ------------------

EXTRA = {
    "sequential+linear_compress": dict(sequential_update=True, a_compress_rate=2,
                                       a_compress_e_rate=2),
    "dynamic_sel+exp_switch": dict(use_dynamic_sel=True, smooth_edge_update=True,
                                   sel_reduce_factor=4.0, use_exp_switch=True,
                                   e_rcut_smth=3.0, a_rcut_smth=2.6),
    "exclude+protection+norm": dict(update_residual_init="norm"),
}


def _extra_model(name):
    desc = copy.deepcopy(TINY["default"])
    desc["repflow"].update(EXTRA[name])
    if name.startswith("exclude"):
        desc.update(exclude_types=[[0, 1]], env_protection=0.05, use_tebd_bias=True,
                    activation_function="tanh")
    return make_model(desc=desc)


@pytest.mark.parametrize("name", list(EXTRA))
def test_backends_equal_reference(name):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from deepmd_md.backends.jax import adapter as jad
    from deepmd_md.backends.torch import adapter as tad

    data = _extra_model(name)
    coord, atype, box = random_frames(10, TRICLINIC_BOX, seed=5, min_dist=0.95)
    ref = reference.evaluate(data, coord, atype, box)
    prep = prepare_frames(data["config"], coord, atype, box)
    for ad in (tad, jad):
        out = ad.evaluate(data["config"], ad.asarray(data["params"]), ad.asarray(data["buffers"]),
                          coord, prep)
        for k in (keys.ENERGY, keys.FORCE, keys.VIRIAL):
            assert_close(np.asarray(out[k]), ref[k], 1e-10, f"{ad.__name__} {k}")


def test_force_is_minus_energy_difference_quotient():
    """Central differences of the energy (no complex step, no autodiff) give the forces."""
    data = _extra_model("dynamic_sel+exp_switch")
    check_fd_forces(data)


def test_exponential_switch():
    """use_exp_switch: exp(-exp(20 (r - rs) / rs)) below rcut, exactly 0 from rcut on."""
    rf = {"use_exp_switch": True}
    r = np.linspace(0.1, 4.0, 400)
    sw = np.asarray(repflow.switch(rf, r, 3.0, 3.5))
    expect = np.where(r < 3.5, np.exp(-np.exp(20 * (r - 3.0) / 3.0)), 0.0)
    np.testing.assert_allclose(sw, expect, rtol=1e-14, atol=0)
    h = 1e-20  # complex step through the switch: its derivative, finite everywhere
    d = np.asarray(repflow.switch(rf, r + 1j * h, 3.0, 3.5)).imag / h
    fd = (np.asarray(repflow.switch(rf, r + 1e-6, 3.0, 3.5))
          - np.asarray(repflow.switch(rf, r - 1e-6, 3.0, 3.5))) / 2e-6
    inside = np.abs(r - 3.5) > 1e-3
    np.testing.assert_allclose(d[inside], fd[inside], atol=1e-6)


# -- schema -------------------------------------------------------------------------------------

# DeePMD-kit's examples/water/dpa3/input_torch.json descriptor section
WATER = {"type": "dpa3", "repflow": {
    "n_dim": 128, "e_dim": 64, "a_dim": 32, "nlayers": 6, "e_rcut": 6.0, "e_rcut_smth": 5.3,
    "e_sel": 120, "a_rcut": 4.0, "a_rcut_smth": 3.5, "a_sel": 30, "axis_neuron": 4,
    "fix_stat_std": 0.3, "a_compress_rate": 1, "a_compress_e_rate": 2,
    "a_compress_use_split": True, "update_angle": True, "smooth_edge_update": True,
    "edge_init_use_dist": True, "use_exp_switch": True, "update_style": "res_residual",
    "update_residual": 0.1, "update_residual_init": "const"},
    "activation_function": "silut:10.0", "use_tebd_bias": False, "precision": "float32",
    "concat_output_tebd": False}


def test_water_example_normalises():
    cfg = normalized_descriptor(WATER)
    assert cfg["repflow"]["sequential_update"] is False and cfg["exclude_types"] == []
    dpa3.check(cfg, 2)
    assert dpa3.sel(cfg) == [120] and dpa3.rcut(cfg) == 6.0 and dpa3.out_dim(cfg) == 128
    assert dpa3.receptive_field(cfg) == 36.0 and dpa3.message_passing(cfg)
    rf = {k: v for k, v in WATER["repflow"].items()
          if k not in ("use_exp_switch", "edge_init_use_dist")}
    alias = normalized_descriptor({**WATER, "repflow": {**rf, "use_env_envelope": False,
                                                        "edge_use_dist": False}})
    assert not alias["repflow"]["use_exp_switch"] and not alias["repflow"]["edge_init_use_dist"]


@pytest.mark.parametrize("over, words", [
    ({"use_econf_tebd": True}, "use_econf_tebd"),
    ({"add_chg_spin_ebd": True}, "add_chg_spin_ebd"),
    ({"activation_function": "silly"}, "activation"),
    ({"repflow": {"update_style": "res_mean"}}, "update_style"),
])
def test_schema_rejects(over, words):
    with pytest.raises(ConfigError, match=words):
        normalized_descriptor(overridden(WATER, over))


@pytest.mark.parametrize("over, words", [
    ({"a_rcut": 6.5}, "a_rcut"),
    ({"a_sel": 130}, "a_sel"),
    ({"e_sel": "auto"}, "e_sel"),
    ({"smooth_edge_update": False, "use_dynamic_sel": True}, "smooth_edge_update"),
    ({"sequential_update": True, "update_style": "res_avg"}, "sequential_update"),
])
def test_check_rejects(over, words):
    with pytest.raises(ConfigError, match=words):
        dpa3.check(normalized_descriptor(overridden(WATER, {"repflow": over})), 2)


# -- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fix", [0.3, 0.0])
def test_statistics_as_deepmd_kit(fix):
    """davg = 0 always; dstd = fix_stat_std, or from the data when 0: DeePMD-kit 3.2's
    DescrptDPA3.compute_input_stats on data_3 frames 0-2 gave (e_rcut 3.5, smth 1.0, e_sel 40)
    dstd (s, xyz) = O (0.23321976638446726, 0.1417410776457675),
    H (0.19426997390734255, 0.11930747846095216)."""
    from helpers import WATER as WATER_DATA

    from deepmd_md.data.system import load_system
    from deepmd_md.model.frames import extended_coord

    rf = {"n_dim": 8, "e_dim": 6, "a_dim": 4, "nlayers": 2, "e_rcut": 3.5, "e_rcut_smth": 1.0,
          "e_sel": 40, "a_rcut": 3.0, "a_rcut_smth": 1.5, "a_sel": 16, "axis_neuron": 2,
          "fix_stat_std": fix}
    desc = normalized_descriptor({"type": "dpa3", "repflow": rf})
    cfg = {"type_map": ["O", "H"], "descriptor": desc}
    s = load_system(WATER_DATA / "data_3")
    coord, box = s.coord[:3].reshape(3, -1, 3), s.box[:3]
    atype = np.tile(s.atype, (3, 1)) if s.atype.ndim == 1 else s.atype[:3]
    prep = prepare_frames(cfg, coord, atype, box)
    ext = extended_coord(coord, np.zeros((3, 3, 3)), prep[keys.MAPPING], prep[keys.SHIFT])
    sums = dpa3.stat_sums(desc, ext, prep[keys.EXT_ATYPE], prep[keys.NLIST], 2)
    st = dpa3.stats_from_sums(desc, sums, np.float64)
    assert np.all(st["davg"] == 0.0)
    expect = (np.full((2, 2), 0.3) if fix else
              np.array([[0.23321976638446726, 0.1417410776457675],
                        [0.19426997390734255, 0.11930747846095216]]))
    np.testing.assert_allclose(st["dstd"][:, :2], expect, rtol=1e-12)
    np.testing.assert_allclose(st["dstd"][:, 1:], np.repeat(st["dstd"][:, 1:2], 3, 1), rtol=0)


# -- every parameter reaches the energy ---------------------------------------------------------


@pytest.mark.parametrize("name, over", [
    ("default", {}), ("smooth", {}), ("node_edge", {}), ("default", {"nlayers": 1}),
    ("default", {"nlayers": 3, "a_compress_rate": 2}),
    ("default", {"nlayers": 1, "sequential_update": True}),
])
def test_every_parameter_reaches_the_energy(name, over):
    """The trainers differentiate every parameter leaf (torch.autograd.grad without
    allow_unused): the last layer keeps node parameters only and the one before it no angle
    update, as DeePMD-kit's parameters there reach no output."""
    torch = pytest.importorskip("torch")
    from deepmd_md.model.model import atomic_outputs
    from deepmd_md.tree import flatten, tree_map

    data = _model(TINY[name], **over)
    coord, atype, box = random_frames(8, TRICLINIC_BOX, seed=2, min_dist=0.95)
    prep = prepare_frames(data["config"], coord, atype, box)
    from deepmd_md.model.frames import extended_coord

    ext = extended_coord(coord, np.zeros((1, 3, 3)), prep[keys.MAPPING], prep[keys.SHIFT])
    params = tree_map(lambda x: torch.tensor(x, requires_grad=True), data["params"])
    buffers = tree_map(torch.tensor, data["buffers"])
    e = atomic_outputs(data["config"], params, buffers, torch.tensor(ext),
                       torch.tensor(prep[keys.EXT_ATYPE]), torch.tensor(prep[keys.NLIST]),
                       mapping=torch.tensor(prep[keys.MAPPING]))["energy"].sum()
    leaves = list(flatten(params).values())
    grads = torch.autograd.grad(e, leaves)
    assert all(g is not None for g in grads)


# -- ghost exchange == every ghost an independent atom ------------------------------------------


@pytest.mark.parametrize("name", ["sequential+linear_compress", "dynamic_sel+exp_switch"])
def test_mapping_exchange_equals_independent_ghosts(name):
    """(The tiny variants run this in tests/test_descriptor_paths.py.) Periodic atomic energies
    with ghost node features copied from their owners between layers == the same atoms in a
    non-periodic cluster of every image within nlayers * e_rcut + e_rcut, each computing its
    own features; a cluster reaching only e_rcut differs."""
    from deepmd_md.data.neighbor import extend_coord
    from deepmd_md.model.frames import frame_atom_energy

    data = _extra_model(name)
    dcfg = data["config"]["descriptor"]

    def atom_energies(coord, atype, box):
        prep = prepare_frames(data["config"], coord, atype, box)
        return np.asarray(frame_atom_energy(data["config"], data["params"], data["buffers"],
                                            coord, np.zeros((1, 3, 3)), prep))

    coord, atype, box = random_frames(8, TRICLINIC_BOX, seed=21, min_dist=0.95)
    periodic = atom_energies(coord, atype, box)
    for reach, same in ((dpa3.receptive_field(dcfg) + dpa3.rcut(dcfg), True),
                        (dpa3.rcut(dcfg), False)):
        ext, ext_atype, _, _ = extend_coord(coord, atype, box, reach)
        cluster = atom_energies(ext, ext_atype, None)[:, :coord.shape[1]]
        if same:
            assert_close(cluster, periodic, 1e-10, f"cluster reaching {reach:.1f} A")
        else:
            assert np.abs(cluster - periodic).max() > 1e-8, "ghost features must matter"

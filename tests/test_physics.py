"""Physics of the model, on the NumPy reference: forces and virial are -dE by finite differences;
energy is invariant to translation, rotation, permutation and periodic images; energy and forces
are continuous as a neighbor crosses rcut, through DeePMD's C2 switch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    ORTHO_BOX,
    RCUT,
    RCUT_SMTH,
    TRICLINIC_BOX,
    assert_close,
    make_model,
    random_frames,
    tiny_descriptors,
)

from deepmd_md import keys
from deepmd_md.backends.numpy import reference
from deepmd_md.model.env import switch
from deepmd_md.model.frames import frame_atom_energy, prepare_frames
from deepmd_md.model.model import rcut_of

MODELS = {
    "se_e2_a": {},
    "se_e2_a-two_side": {"type_one_side": False},
    "se_e2_r": {"descriptor": "se_e2_r"},
    **{name: {"desc": desc} for name, desc in tiny_descriptors().items()},
}


def energies(data, coord, atype, box):
    """Total energy of every frame, straight from the model (images and neighbor list rebuilt
    for each frame; no derivative machinery). coord [nf, nat, 3]; box [nf, 9] | None."""
    coord = np.asarray(coord, float)
    nf = coord.shape[0]
    atype = np.broadcast_to(np.asarray(atype), coord.shape[:2])
    prep = prepare_frames(data["config"], coord, atype, box)
    ae = frame_atom_energy(data["config"], data["params"], data["buffers"], coord,
                           np.zeros((nf, 3, 3)), prep)
    return np.sum(ae, axis=-1)


def rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.fixture(params=list(MODELS))
def model(request):
    return make_model(**MODELS[request.param])



def test_reference_chunks_give_the_same_numbers(monkeypatch):
    """The reference evaluates its perturbed copies in memory-bounded chunks; chunks of 7 copies
    (ragged last chunk, strain copies split across chunks) equal one call with all of them."""
    data = make_model()
    coord, atype, boxes = random_frames(10, TRICLINIC_BOX, nf=2, seed=3, min_dist=0.95)
    whole = reference.evaluate(data, coord, atype, boxes)
    d = data["config"]["descriptor"]
    monkeypatch.setattr(reference, "MEM_BUDGET", 7 * 16 * 10 * sum(d["sel"]) * max(d["neuron"]))
    parts = reference.evaluate(data, coord, atype, boxes)
    for k, v in whole.items():
        np.testing.assert_allclose(parts[k], v, rtol=0, atol=1e-12, err_msg=k)

# -- derivatives by central finite differences ---------------------------------------------------

H = 1e-5
FD_TOL = 1e-7  # O(h^2) truncation + O(eps E / h) rounding, relative to the largest component


@pytest.mark.parametrize("box", [TRICLINIC_BOX, None], ids=["triclinic", "nopbc"])
def test_force_is_minus_energy_gradient(model, box):
    coord, atype, boxes = random_frames(10, box, seed=5, min_dist=0.95)
    nat = coord.shape[1]
    ref = reference.evaluate(model, coord, atype, boxes)
    plus = np.repeat(coord, 3 * nat, axis=0)
    minus = plus.copy()
    idx = np.arange(3 * nat)
    plus[idx, idx // 3, idx % 3] += H
    minus[idx, idx // 3, idx % 3] -= H
    b = None if boxes is None else np.repeat(boxes, 3 * nat, axis=0)
    fd = -(energies(model, plus, atype[0], b) - energies(model, minus, atype[0], b)) / (2 * H)
    assert np.abs(ref[keys.FORCE]).max() > 1e-3  # interacting (tolerances are relative)
    assert_close(ref[keys.FORCE][0].ravel(), fd, FD_TOL, "force vs -dE/dx")


@pytest.mark.parametrize("box", [TRICLINIC_BOX, None], ids=["triclinic", "nopbc"])
def test_virial_is_minus_strain_derivative(model, box):
    """virial_ab = -dE/d(eps_ab) when coordinates AND cell are deformed by (I + eps)."""
    coord, atype, boxes = random_frames(10, box, seed=6, min_dist=0.95)
    ref = reference.evaluate(model, coord, atype, boxes)
    fd = np.zeros(9)
    for k in range(9):
        e = []
        for sign in (1.0, -1.0):
            eps = np.zeros((3, 3))
            eps[k // 3, k % 3] = sign * H
            c = coord @ (np.eye(3) + eps)
            b = None if boxes is None else (boxes.reshape(3, 3) @ (np.eye(3) + eps)).reshape(1, 9)
            e.append(energies(model, c, atype, b)[0])
        fd[k] = -(e[0] - e[1]) / (2 * H)
    assert np.abs(fd).max() > 1e-3
    assert_close(ref[keys.VIRIAL][0], fd, FD_TOL, "virial vs -dE/d(strain)")
    # an independent identity for a cluster: virial = sum_i r_i (x) F_i
    if box is None:
        assert_close(np.einsum("ia,ib->ab", coord[0], ref[keys.FORCE][0]).ravel(), fd, FD_TOL,
                     "sum r x F")


# -- invariances -------------------------------------------------------------------------------

TOL = 1e-10


def test_translation_invariance(model):
    coord, atype, boxes = random_frames(12, TRICLINIC_BOX, seed=7, min_dist=0.95)
    ref = reference.evaluate(model, coord, atype, boxes)
    shifted = reference.evaluate(model, coord + np.array([0.37, -1.91, 2.53]), atype, boxes)
    for k in (keys.ENERGY, keys.ATOM_ENERGY, keys.FORCE, keys.VIRIAL):
        assert_close(shifted[k], ref[k], TOL, k)
    cluster = coord[:, :7] * 0.8
    a = reference.evaluate(model, cluster, atype[:, :7], None)
    b = reference.evaluate(model, cluster - 11.3, atype[:, :7], None)
    assert_close(b[keys.ENERGY], a[keys.ENERGY], TOL, "cluster energy")
    assert_close(b[keys.FORCE], a[keys.FORCE], TOL, "cluster force")


@pytest.mark.parametrize("box", [TRICLINIC_BOX, None], ids=["triclinic", "nopbc"])
def test_rotation_invariance(model, box):
    """E(R x) = E(x); F(R x) = R F(x); W(R x) = R W(x) R^T (cell rotated with the atoms)."""
    coord, atype, boxes = random_frames(12, box, seed=8, min_dist=0.95)
    rot = rotation(0)
    ref = reference.evaluate(model, coord, atype, boxes)
    rb = None if boxes is None else (boxes.reshape(3, 3) @ rot.T).reshape(1, 9)
    out = reference.evaluate(model, coord @ rot.T, atype, rb)
    assert_close(out[keys.ENERGY], ref[keys.ENERGY], TOL, "energy")
    assert_close(out[keys.ATOM_ENERGY], ref[keys.ATOM_ENERGY], TOL, "atom energy")
    assert_close(out[keys.FORCE], ref[keys.FORCE] @ rot.T, TOL, "force")
    w = ref[keys.VIRIAL].reshape(3, 3)
    assert_close(out[keys.VIRIAL].reshape(3, 3), rot @ w @ rot.T, TOL, "virial")
    # the test can fail: a rotation is not a symmetry of the forces themselves
    assert np.abs(ref[keys.FORCE] @ rot.T - ref[keys.FORCE]).max() > 1e-3


def test_permutation_invariance(model):
    coord, atype, boxes = random_frames(12, ORTHO_BOX, seed=9, min_dist=0.95)
    perm = np.random.default_rng(1).permutation(12)
    ref = reference.evaluate(model, coord, atype, boxes)
    out = reference.evaluate(model, coord[:, perm], atype[:, perm], boxes)
    assert_close(out[keys.ENERGY], ref[keys.ENERGY], TOL, "energy")
    assert_close(out[keys.ATOM_ENERGY], ref[keys.ATOM_ENERGY][:, perm], TOL, "atom energy")
    assert_close(out[keys.FORCE], ref[keys.FORCE][:, perm], TOL, "force")
    assert_close(out[keys.VIRIAL], ref[keys.VIRIAL], TOL, "virial")


def test_types_matter(model):
    """Counter-check of the permutation test: swapping the types of two atoms (same positions)
    changes the energy, so that test compares something type-sensitive."""
    coord, atype, boxes = random_frames(12, ORTHO_BOX, seed=9, min_dist=0.95)
    swapped = atype.copy()
    swapped[:, [0, 1]] = atype[:, [1, 0]]
    e0 = energies(model, coord, atype, boxes)
    e1 = energies(model, coord, swapped, boxes)
    assert abs(e0[0] - e1[0]) > 1e-3


def test_periodic_image_invariance(model):
    """Moving atoms by lattice vectors (wrapped or not) changes nothing."""
    coord, atype, boxes = random_frames(12, TRICLINIC_BOX, seed=10, min_dist=0.95)
    cell = boxes.reshape(3, 3)
    moved = coord.copy()
    moved[0, 0] += cell[0] - 2 * cell[2]
    moved[0, 5] -= cell[1]
    moved[0, 7] += 3 * cell[0] + cell[1] + cell[2]
    ref = reference.evaluate(model, coord, atype, boxes)
    out = reference.evaluate(model, moved, atype, boxes)
    for k in (keys.ENERGY, keys.ATOM_ENERGY, keys.FORCE):
        assert_close(out[k], ref[k], TOL, k)


def test_supercell_doubles_energy(model):
    """The 2x1x1 replica of a cell has twice the energy and virial, the same forces per atom."""
    coord, atype, boxes = random_frames(10, TRICLINIC_BOX, seed=11, min_dist=0.95)
    cell = boxes.reshape(3, 3)
    big_coord = np.concatenate([coord, coord + cell[0]], axis=1)
    big_type = np.concatenate([atype, atype], axis=1)
    big_box = np.concatenate([2 * cell[0], cell[1], cell[2]]).reshape(1, 9)
    ref = reference.evaluate(model, coord, atype, boxes)
    big = reference.evaluate(model, big_coord, big_type, big_box)
    assert_close(big[keys.ENERGY], 2 * ref[keys.ENERGY], TOL, "energy")
    assert_close(big[keys.FORCE], np.concatenate([ref[keys.FORCE]] * 2, axis=1), TOL, "force")
    assert_close(big[keys.VIRIAL], 2 * ref[keys.VIRIAL], TOL, "virial")


# -- smoothness at rcut ------------------------------------------------------------------------


def _crossing_cluster(r):
    """Atom 2 sits at distance r from atom 0 along u; atoms 1 and 3 stay near atom 0, farther
    than rcut + 0.5 from atom 2 for r near rcut. Only the pair (0, 2) crosses rcut."""
    u = np.array([1.0, 0.1, -0.2])
    u /= np.linalg.norm(u)
    fixed = np.array([[0.0, 0.0, 0.0], [-1.1, 0.2, 0.1], [0.0, 0.0, 0.0], [-0.3, -0.9, 0.6]])
    coord = np.repeat(fixed[None], len(r), axis=0)
    coord[:, 2] = np.asarray(r)[:, None] * u
    return coord, np.array([0, 1, 1, 0])


@pytest.mark.parametrize("descriptor", ["se_e2_a", "se_e2_r", *tiny_descriptors()])
def test_energy_and_force_continuous_across_rcut(descriptor):
    data = make_model(**MODELS[descriptor]) if descriptor in tiny_descriptors() else make_model(
        descriptor)
    assert rcut_of(data["config"]) == RCUT, "tiny models cut at helpers.RCUT"
    steps = np.array([1e-1, 1e-2, 1e-3, 1e-4])
    r = np.concatenate([RCUT - steps, RCUT + steps])
    coord, atype = _crossing_cluster(r)
    others = np.linalg.norm(coord[:, [1, 3]] - coord[:, 2:3], axis=-1)
    assert others.min() > RCUT + 0.5
    out = reference.evaluate(data, coord, np.tile(atype, (len(r), 1)), None)
    e, f = out[keys.ENERGY], out[keys.FORCE]
    n = len(steps)
    de = np.abs(e[:n] - e[n:])
    df = np.abs(f[:n] - f[n:]).max(axis=(1, 2))
    # the jump vanishes as the step shrinks: C2 switch -> energy ~ h^3, force ~ h^2
    assert de[0] > 1e-7 and df[0] > 1e-6, "the neighbor must interact just inside rcut"
    assert np.all(de[1:3] < de[:2] * 1e-2), f"energy jumps {de}"  # (the last is at rounding)
    assert np.all(df[1:] < df[:-1] * 5e-2), f"force jumps {df}"
    assert de[-1] < 1e-12 and df[-1] < 1e-8


@pytest.mark.parametrize("descriptor", ["se_e2_a", "se_e2_r", *tiny_descriptors()])
def test_energy_exactly_constant_beyond_rcut(descriptor):
    data = make_model(**MODELS[descriptor]) if descriptor in tiny_descriptors() else make_model(
        descriptor)
    r = RCUT + np.array([1e-9, 1e-3, 0.1, 0.5, 2.0])
    coord, atype = _crossing_cluster(r)
    out = reference.evaluate(data, coord, np.tile(atype, (len(r), 1)), None)
    assert np.all(out[keys.ENERGY] == out[keys.ENERGY][0]), out[keys.ENERGY] - out[keys.ENERGY][0]
    assert np.all(out[keys.FORCE][:, 2] == 0.0)
    c_in, _ = _crossing_cluster([RCUT - 0.3])
    inside = reference.evaluate(data, c_in, atype[None], None)
    assert abs(inside[keys.ENERGY][0] - out[keys.ENERGY][0]) > 1e-6


def _switch_expected(r):
    """DeePMD's switch written independently: 1 - (10 u^3 - 15 u^4 + 6 u^5) on [rs, rc]."""
    u = np.clip((r - RCUT_SMTH) / (RCUT - RCUT_SMTH), 0.0, 1.0)
    return 1.0 - (10 * u**3 - 15 * u**4 + 6 * u**5)


def test_switch_values():
    r = np.linspace(0.2, RCUT + 1.0, 2001)
    sw = np.asarray(switch(r, RCUT_SMTH, RCUT))
    np.testing.assert_allclose(sw, _switch_expected(r), rtol=0, atol=1e-14)
    assert np.all(sw[r <= RCUT_SMTH] == 1.0) and np.all(sw[r >= RCUT] == 0.0)
    assert np.all(np.diff(sw) <= 1e-15), "switch must not increase"
    assert switch(np.array([RCUT_SMTH]), RCUT_SMTH, RCUT)[0] == 1.0
    assert switch(np.array([RCUT]), RCUT_SMTH, RCUT)[0] == 0.0
    assert switch(np.array([0.5 * (RCUT + RCUT_SMTH)]), RCUT_SMTH, RCUT)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("end", [RCUT_SMTH, RCUT], ids=["rcut_smth", "rcut"])
def test_switch_is_c2_at_the_ends(end):
    """Value, slope and curvature match across both ends: one-sided differences from inside
    the switching region shrink like h^3 (value) and h^2 (slope)."""
    hs = np.array([1e-2, 1e-3])
    side = 1.0 if end == RCUT_SMTH else -1.0  # the inside of [rcut_smth, rcut]
    outside_value = 1.0 if end == RCUT_SMTH else 0.0
    x = end + side * hs
    val = np.abs(np.asarray(switch(x, RCUT_SMTH, RCUT)) - outside_value)
    slope = np.abs((np.asarray(switch(x + 1e-7, RCUT_SMTH, RCUT))
                    - np.asarray(switch(x - 1e-7, RCUT_SMTH, RCUT))) / 2e-7)
    assert np.all(val < 11 * (hs / (RCUT - RCUT_SMTH)) ** 3)
    assert val[1] < val[0] * 2e-3
    assert slope[1] < slope[0] * 2e-2

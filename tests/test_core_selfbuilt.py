"""dpmd_compute without an engine neighbor list (dpmd_input.ilist = NULL): the core builds the
neighbor list itself and, given a box and no ghosts, the periodic images too, folding their
forces back (what an engine that passes only its atoms and the box, e.g. GROMACS or sander,
gets). Energies, forces, virials and per-atom values equal Python's DeepPot, which builds its
images and lists in deepmd_md/data/neighbor.py: typed, mixed-type and message-passing models,
orthorhombic, triclinic and open boundaries; unwrapped coordinates give the same answer.
Also the widened ghost shell: a message-passing model whose engine gives ghosts out to the
receptive field but no exchange and no mapping."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from capi import DP, IP, Input, Output, load_core
from helpers import ORTHO_BOX, TRICLINIC_BOX, make_model, random_frames, tiny_descriptors

LIB = load_core()
if LIB is None:
    pytest.skip("libdpmd_core.so is not built", allow_module_level=True)
TOL = 1e-10
MODELS = ["se_e2_a", "se_atten:v2", "dpa2:small"]
BOXES = {"ortho": ORTHO_BOX, "triclinic": TRICLINIC_BOX, "open": None}


@pytest.fixture(scope="module", params=MODELS)
def frozen(request, tmp_path_factory):
    from deepmd_md.backends.torch.freeze import freeze_pth

    name = request.param
    data = make_model() if name == "se_e2_a" else make_model(desc=tiny_descriptors()[name])
    path = tmp_path_factory.mktemp("selfbuilt") / "m.pth"
    freeze_pth(data, str(path))
    model = LIB.dpmd_model_load(str(path).encode())
    assert model, LIB.dpmd_last_error().decode()
    yield path, model
    LIB.dpmd_model_free(model)


def compute(model, coord, atype, box, expect_error: bool = False):
    """dpmd_compute on nat atoms, no ghosts, no neighbor list: (energy, force, virial,
    atom_energy, atom_virial); with expect_error, the core's error message instead."""
    nat = len(atype)
    x = np.ascontiguousarray(coord, dtype=np.float64)
    t = np.ascontiguousarray(atype, dtype=np.int32)
    b = None if box is None else np.ascontiguousarray(box, dtype=np.float64)
    force, ae, av = np.zeros((nat, 3)), np.zeros(nat), np.zeros((nat, 9))
    inp = Input(nloc=nat, nghost=0, coord=x.ctypes.data_as(DP), atype=t.ctypes.data_as(IP),
                box=None if b is None else b.ctypes.data_as(DP))
    out = Output(force=force.ctypes.data_as(DP), atom_energy=ae.ctypes.data_as(DP),
                 atom_virial=av.ctypes.data_as(DP))
    rc = LIB.dpmd_compute(model, ctypes.byref(inp), ctypes.byref(out))
    if expect_error:
        assert rc != 0
        return LIB.dpmd_last_error().decode()
    assert rc == 0, LIB.dpmd_last_error().decode()
    return out.energy, force, np.array(out.virial[:]), ae, av


@pytest.mark.parametrize("box_name", list(BOXES))
def test_matches_deeppot(frozen, box_name):
    from deepmd_md.infer.deep_pot import DeepPot

    path, model = frozen
    box = BOXES[box_name]
    coord, atype, boxes = random_frames(12, box, seed=4)
    e, f, v, ae, av = compute(model, coord[0], atype[0], box)
    dp = DeepPot(str(path))
    ref = dp.eval(coord.reshape(1, -1), boxes, atype[0], atomic=True)
    re, rf, rv, rae, rav = (np.asarray(r) for r in ref)
    scale = max(1.0, abs(float(re.ravel()[0])), float(np.abs(rf).max()))
    assert abs(e - float(re.ravel()[0])) <= TOL * scale
    np.testing.assert_allclose(f, rf.reshape(-1, 3), rtol=0, atol=TOL * scale)
    np.testing.assert_allclose(v, rv.reshape(9), rtol=0, atol=TOL * scale)
    np.testing.assert_allclose(ae, rae.reshape(-1), rtol=0, atol=TOL * scale)
    np.testing.assert_allclose(av, rav.reshape(-1, 9), rtol=0, atol=TOL * scale)
    assert np.abs(f).max() > 1e-4
    if box is not None:  # atoms given one cell away: the same numbers
        shifted = coord[0] + np.array([1, -2, 1]) @ np.asarray(box).reshape(3, 3)
        e2, f2, v2, _, _ = compute(model, shifted, atype[0], box)
        assert abs(e2 - e) <= TOL * scale
        np.testing.assert_allclose(f2, f, rtol=0, atol=TOL * scale)
        np.testing.assert_allclose(v2, v, rtol=0, atol=TOL * scale)


def test_widened_ghost_shell(tmp_path):
    """Ghosts out to the receptive field, no exchange, no mapping: every atom is evaluated and
    only the local atoms' energies count; DeepPot's numbers. Ghosts short of the field: one
    clear error naming dpmd_input.ghost_cutoff."""
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.data.neighbor import extend_coord
    from deepmd_md.infer.deep_pot import DeepPot

    path = tmp_path / "m.pth"
    freeze_pth(make_model(desc=tiny_descriptors()["dpa2:small"]), str(path))
    model = LIB.dpmd_model_load(str(path).encode())
    assert model, LIB.dpmd_last_error().decode()
    try:
        field = LIB.dpmd_model_receptive_field(model)
        coord, atype, box = random_frames(10, ORTHO_BOX, seed=8)
        ext, eatype, mapping, _ = extend_coord(coord, atype, box, field + 0.5)
        nall = ext.shape[1]
        x = np.ascontiguousarray(ext[0], dtype=np.float64)
        t = np.ascontiguousarray(eatype[0], dtype=np.int32)
        force, ae = np.zeros((nall, 3)), np.zeros(10)

        def call(reach):
            inp = Input(nloc=10, nghost=nall - 10, coord=x.ctypes.data_as(DP),
                        atype=t.ctypes.data_as(IP), ghost_cutoff=reach)
            out = Output(force=force.ctypes.data_as(DP), atom_energy=ae.ctypes.data_as(DP))
            rc = LIB.dpmd_compute(model, ctypes.byref(inp), ctypes.byref(out))
            return rc, out, LIB.dpmd_last_error().decode()

        rc, _, err = call(field - 1.0)
        assert rc != 0 and "dpmd_input.ghost_cutoff" in err and "dpmd_input.exchange" in err, err
        rc, out, err = call(field + 0.5)
        assert rc == 0, err
        e, f, v, rae, _ = DeepPot(str(path)).eval(coord.reshape(1, -1), box, atype[0], atomic=True)
        folded = np.zeros((10, 3))
        np.add.at(folded, mapping[0], force)
        scale = max(1.0, abs(float(e.ravel()[0])), float(np.abs(f).max()))
        assert abs(out.energy - float(e.ravel()[0])) <= TOL * scale
        np.testing.assert_allclose(folded, f.reshape(-1, 3), rtol=0, atol=TOL * scale)
        np.testing.assert_allclose(np.array(out.virial[:]), v.reshape(9), rtol=0, atol=TOL * scale)
        np.testing.assert_allclose(ae, np.asarray(rae).reshape(-1), rtol=0, atol=TOL * scale)
    finally:
        LIB.dpmd_model_free(model)


@pytest.mark.parametrize("bad", ["nan", "inf", "box"])
def test_non_finite_input_is_an_error(frozen, bad):
    """A blown-up run hands the core NaN/inf coordinates: one error naming the atom, never a
    crash in the cell list (it indexed out of bounds before) and never NaN forces."""
    _, model = frozen
    coord, atype, _ = random_frames(12, ORTHO_BOX, nf=1, seed=5)
    coord, box = coord[0].copy(), np.array(ORTHO_BOX, dtype=np.float64)
    if bad == "box":
        box[4] = np.nan
    else:
        coord[7, 1] = np.nan if bad == "nan" else np.inf
    msg = compute(model, coord, atype[0], box, expect_error=True)
    assert "not finite" in msg and ("atom 7" in msg or bad == "box"), msg
    e = compute(model, random_frames(12, ORTHO_BOX, nf=1, seed=5)[0][0], atype[0], ORTHO_BOX)[0]
    assert np.isfinite(e)  # the model still works after the refusal

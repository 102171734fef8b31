"""pair_style deepmd with models that have no per-type fast path ("blocked": false): a hybrid
of typed descriptors, mixed-type (DPA-1) and message-passing GNNs (DPA-2/DPA-3), the tiny
configs of tests/tiny/*.py frozen to .pth (and some to .pt2), against deepmd_md.infer.DeepPot;
message passing on one rank; the C API's mapping contract (one domain, no engine exchange).
Message passing across ranks: test_lammps_mp.py."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from capi import Input, Output, load_core
from helpers import ORTHO_BOX, PT2_MESSAGE_PASSING, make_model, random_frames, tiny_descriptors
from lammps_helpers import WATER_LMP, lmp_box, run_driver, water_types

VOIGT = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])  # LAMMPS xx yy zz xy xz yz
TOL = 1e-10  # relative to the largest component (and to 1)
HYBRID = "hybrid:se_a+se_r"
SKIN = 1.0  # ghost cutoff = rcut + SKIN, below a message-passing model's receptive field


def _tiny_kinds() -> dict[str, bool]:
    """Tiny descriptor name -> whether it passes messages, for those without the blocked entry
    point."""
    from deepmd_md.model.model import message_passing_of, supports_blocked

    out = {}
    for name, desc in sorted(tiny_descriptors().items()):
        cfg = make_model(desc=desc)["config"]
        if not supports_blocked(cfg):
            out[name] = message_passing_of(cfg)
    return out


TINY_KINDS = _tiny_kinds()



def _mp_name() -> str:
    return PT2_MESSAGE_PASSING


# (format, tiny descriptor): the typed hybrid in both formats; every other tiny variant without
# the blocked entry (mixed-type, message-passing) as .pth (seconds each), one message-passing
# one also as .pt2 (compiling takes minutes)
CASES = [("pth", HYBRID), ("pt2", HYBRID)]
CASES += [("pth", n) for n in TINY_KINDS if n != HYBRID] + [("pt2", PT2_MESSAGE_PASSING)]


def setup_lines(model, newton="on", atom_map=True):
    """The water box stretched by 1.15 (the tiny models' sel fit its neighbor counts)."""
    return [
        "units metal", "boundary p p p", "atom_style atomic",
        *(["atom_modify map yes"] if atom_map else []), f"newton {newton}",
        f"read_data {WATER_LMP}", "mass 1 16", "mass 2 2",
        "change_box all x scale 1.15 y scale 1.15 z scale 1.15 remap",
        f"neighbor {SKIN} bin",
        f"pair_style deepmd {model}", "pair_coeff * * O H",
        "compute dpvir all pressure NULL virial",
        "compute pea all pe/atom",
        "thermo_style custom step pe c_dpvir[1]",
    ]


def _close(actual, desired, what):
    a, d = np.asarray(actual, float), np.asarray(desired, float)
    scale = max(1.0, float(np.abs(d).max()))
    err = float(np.abs(a - d).max())
    assert err <= TOL * scale, f"{what}: max abs error {err:.3e} > {TOL:.0e} x {scale:.3g}"


def _check_deeppot(pth, res):
    """LAMMPS' energy, forces and virial equal DeepPot(pth) on LAMMPS' final positions."""
    from deepmd_md.infer.deep_pot import DeepPot

    x = np.array(res["x"])
    e, f, v = DeepPot(str(pth)).eval(x.reshape(1, -1), lmp_box(res).reshape(1, 9), water_types())
    _close(res["pe"], e[0, 0], "energy")
    _close(res["f"], f.reshape(-1, 3), "forces")
    _close(res["virial"], v.reshape(3, 3)[VOIGT], "virial")
    assert abs(np.sum(res["pea"]) - res["pe"]) <= 1e-9 * max(1.0, abs(res["pe"]))
    assert np.abs(res["f"]).max() > 1e-3  # the models interact


@pytest.mark.parametrize("fmt,name", CASES, ids=[f"{f}-{n}" for f, n in CASES])
def test_matches_deeppot(fmt, name, frozen_tiny, lmp_env, tmp_path):
    """One rank: the raw neighbor list (and, for message passing, the owner of every ghost)
    gives DeepPot's numbers. For message passing the ghosts reach only rcut + skin, less than
    the model's receptive field: with the owners known no wider ghost shell is needed."""
    from deepmd_md.model import descriptors
    from deepmd_md.model.model import message_passing_of, mixed_of, rcut_of

    data, model = frozen_tiny(name, fmt)
    cfg = data["config"]
    if name == HYBRID:
        assert not mixed_of(cfg)  # typed members without the blocked entry point
    if message_passing_of(cfg):
        field = descriptors.kind(cfg["descriptor"]).receptive_field(cfg["descriptor"])
        assert rcut_of(cfg) + SKIN < field, "the ghost shell must be narrower than the field"
    res = run_driver({"commands": setup_lines(model), "computes_peratom": [["pea", 1]]},
                     tmp_path, lmp_env)
    _, pth = frozen_tiny(name, "pth")
    _check_deeppot(pth, res)


def test_message_passing_md_newton_off(frozen_tiny, lmp_env, tmp_path):
    """Ghost features through LAMMPS' forward communication (no atom IDs needed: no atom
    map), ghosts rebuilt on every step of a short NVE run, newton off (the plugin folds ghost
    forces itself): the last step still equals DeepPot."""
    _, pth = frozen_tiny(_mp_name(), "pth")
    lines = setup_lines(pth, newton="off", atom_map=False) + [
        "neigh_modify every 1 delay 0 check no",
        "velocity all create 330.0 4928459 loop geom", "fix 1 all nve", "timestep 0.0005"]
    res = run_driver({"commands": lines, "steps": 5, "computes_peratom": [["pea", 1]]},
                     tmp_path, lmp_env)
    assert len(res["pe_steps"]) == 6
    _check_deeppot(pth, res)


# ---------------------------------------------------------------- the C API directly
def test_core_mapping_contract(frozen_tiny, plugin_dir):
    """dpmd_compute: a message-passing model with neither dpmd_input.exchange nor mapping is a
    clear error (no crash); a mapping that names a non-local owner is refused; with the right mapping the
    energy and the folded forces equal DeepPot's."""
    from deepmd_md.data.neighbor import extend_coord, neighbor_candidates
    from deepmd_md.infer.deep_pot import DeepPot
    from deepmd_md.model.model import rcut_of

    data, pth = frozen_tiny(_mp_name(), "pth")
    lib = load_core()
    model = lib.dpmd_model_load(str(pth).encode())
    assert model, lib.dpmd_last_error().decode()
    try:
        assert lib.dpmd_model_message_passing(model) == 1
        nat = 10
        coord, atype, box = random_frames(nat, ORTHO_BOX, seed=3)
        ext, eatype, mapping, _ = extend_coord(coord, atype, box, rcut_of(data["config"]))
        nl = neighbor_candidates(ext, nat, rcut_of(data["config"]))[0]
        nall = ext.shape[1]
        x = np.ascontiguousarray(ext[0], dtype=np.float64)
        t = np.ascontiguousarray(eatype[0], dtype=np.int32)
        rows = [np.ascontiguousarray(r[r >= 0], dtype=np.int32) for r in nl]
        ilist = np.arange(nat, dtype=np.int32)
        numneigh = np.array([len(r) for r in rows], dtype=np.int32)
        firstneigh = (ctypes.POINTER(ctypes.c_int) * nat)(
            *[r.ctypes.data_as(ctypes.POINTER(ctypes.c_int)) for r in rows])
        force = np.zeros((nall, 3))

        def call(owner):
            inp = Input(nloc=nat, nghost=nall - nat,
                         coord=x.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                         atype=t.ctypes.data_as(ctypes.POINTER(ctypes.c_int)), inum=nat,
                         ilist=ilist.ctypes.data_as(ctypes.POINTER(ctypes.c_int)),
                         numneigh=numneigh.ctypes.data_as(ctypes.POINTER(ctypes.c_int)),
                         firstneigh=firstneigh)
            if owner is not None:
                inp.mapping = owner.ctypes.data_as(ctypes.POINTER(ctypes.c_int))
            out = Output(force=force.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
            rc = lib.dpmd_compute(model, ctypes.byref(inp), ctypes.byref(out))
            return rc, out, lib.dpmd_last_error().decode()

        rc, _, err = call(None)
        assert rc != 0 and "dpmd_input.exchange" in err and "dpmd_input.mapping" in err, err
        bad = np.ascontiguousarray(mapping[0], dtype=np.int32).copy()
        bad[-1] = nat  # a ghost "owned" by a ghost
        rc, _, err = call(bad)
        assert rc != 0 and f"mapping[{nall - 1}] = {nat} is not a local atom" in err, err
        rc, out, err = call(np.ascontiguousarray(mapping[0], dtype=np.int32))
        assert rc == 0, err
        energy = out.energy
        wrong = np.ascontiguousarray(mapping[0], dtype=np.int32).copy()
        wrong[nat:] = (wrong[nat:] + 1) % nat  # valid owners, but not the images' own
        rc, out_wrong, err = call(wrong)
        # (far above rounding; random tiny models can depend weakly on ghost features)
        assert rc == 0 and abs(out_wrong.energy - energy) > 1e-9 * max(1.0, abs(energy)), \
            "the model ignores mapping"
        rc, out, err = call(np.ascontiguousarray(mapping[0], dtype=np.int32))
        assert rc == 0 and out.energy == energy, err
        e, f, v = DeepPot(str(pth)).eval(coord.reshape(1, -1), box, atype[0])
        folded = np.zeros((nat, 3))
        np.add.at(folded, mapping[0], force)
        _close(out.energy, e[0, 0], "energy")
        _close(folded, f[0], "forces")
        _close(np.array(out.virial[:]), v[0], "virial")
    finally:
        lib.dpmd_model_free(model)

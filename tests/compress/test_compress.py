"""`dpmd compress` and compressed models: equal to the uncompressed model on water frames
(fp64, default step), forces = -dE/dx, smooth across knots and at rcut, the net beyond the
tables, `.dp` round trip, `dpmd show`, the CLI and its errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from helpers import (
    WATER,
    make_model,
    model_config,
    random_frames,
    run_dpmd,
    tiny_descriptors,
    tree_files,
)

from deepmd_md.compress import compress, describe, is_compressed
from deepmd_md.formats import read_model, write_model

RMIN = 0.892451513761333  # examples/water/data/data_0 (dpmd neighbor-stat)
VARIANTS = {
    "se_e2_a": {},
    "se_e2_r": {"descriptor": "se_e2_r"},
    "se_e2_a-pairs": {"type_one_side": False, "resnet_dt": True, "neuron": (4, 8, 16)},
    "se_atten_v2": {"desc": tiny_descriptors()["se_atten:v2"]},
    "se_atten-strip": {"desc": tiny_descriptors()["se_atten:strip_one_side"]},
    "dpa2-strip": {"desc": tiny_descriptors()["dpa2:switched"]},
    "hybrid": {"desc": tiny_descriptors()["hybrid:atten+se_r"]},
}


def _water(nframes: int = 2):
    """Frames of the shipped water data: coord [nf, 192 * 3], box [nf, 9], atype [192]."""
    d = WATER / "data_0"
    coord = np.load(d / "set.000" / "coord.npy")[:nframes].astype(np.float64)  # stored f32
    box = np.load(d / "set.000" / "box.npy")[:nframes].astype(np.float64)
    return coord, box, np.loadtxt(d / "type.raw", dtype=int)


def _water_model(key: str) -> dict:
    over = dict(VARIANTS[key])
    if "desc" in over:  # the tiny descriptors hold at most 20-24 neighbors: rcut 3.5 -> 3.0
        desc = json.loads(json.dumps(over.pop("desc")))
        for blk in desc.get("list", [desc.get("repinit", desc)]):
            blk["rcut"], blk["rcut_smth"] = 3.0, 1.0
        if "repformer" in desc:
            desc["repformer"].update(rcut=2.8, rcut_smth=1.0)
        over["desc"] = desc
    else:
        over.update(rcut=4.0, rcut_smth=0.5, sel=[20, 40])
    return make_model(**over)


def _eval(path, coord, box, atype):
    from deepmd_md.infer.deep_pot import DeepPot

    e, f, v = DeepPot(str(path)).eval(coord, box, atype)
    return e.ravel(), f.reshape(len(e), -1, 3), v.reshape(len(e), 9)


@pytest.mark.parametrize("key", list(VARIANTS))
def test_compressed_equals_uncompressed_on_water(ops, tmp_path, key):
    """Default step 0.01: max |dF| <= 1e-6 eV/A, |dE| <= 1e-6 eV/atom, and the table is what
    is evaluated (a 1e-3 relative change of its coefficients shows)."""
    data = _water_model(key)
    comp = compress(data, RMIN)
    coord, box, atype = _water()
    write_model(data, tmp_path / "plain.pth")
    write_model(comp, tmp_path / "comp.pth")
    e0, f0, v0 = _eval(tmp_path / "plain.pth", coord, box, atype)
    e1, f1, v1 = _eval(tmp_path / "comp.pth", coord, box, atype)
    nat = len(atype)
    assert np.max(np.abs(e1 - e0)) / nat <= 1e-6
    assert np.max(np.abs(f1 - f0)) <= 1e-6
    assert np.max(np.abs(v1 - v0)) / nat <= 1e-6
    bad = copy.deepcopy(comp)
    for t in _tables(bad).values():
        t["coef"] = t["coef"] * (1 + 1e-3)
    write_model(bad, tmp_path / "bad.pth")
    _, f2, _ = _eval(tmp_path / "bad.pth", coord, box, atype)
    assert np.max(np.abs(f2 - f0)) > 1e-6


def _tables(data) -> dict:
    """name -> table dict, every table of a compressed model (copies of the coef arrays)."""
    out = {}

    def visit(node, path):
        if isinstance(node, list):
            for i, v in enumerate(node):
                visit(v, (*path, str(i)))
        if isinstance(node, dict):
            if "compress" in node:
                for k, t in node["compress"].items():
                    t["coef"] = np.array(t["coef"])
                    out["/".join((*path, k))] = t
            for k, v in node.items():
                if k != "compress":
                    visit(v, (*path, k))

    visit(data["buffers"]["descriptor"], ())
    return out


def test_reference_backend_equals_op(ops, tmp_path):
    """The NumPy (complex-step) reference of a compressed model, whose table evaluation is the
    array-API oracle, equals the .pth's C++ kernel; and FD of the reference energy."""
    from helpers import check_fd_forces

    from deepmd_md.backends.numpy import reference

    comp = compress(make_model(), 0.9)
    f = check_fd_forces(comp)
    coord, atype, box = random_frames(8, seed=9, min_dist=0.95,
                                      box=np.array([[6.2, 0, 0], [1.3, 5.7, 0], [-0.9, 1.1, 5.9]]).ravel())
    write_model(comp, tmp_path / "c.pth")
    _, fp, _ = _eval(tmp_path / "c.pth", coord.reshape(1, -1), box, atype[0])
    np.testing.assert_allclose(fp[0], reference.evaluate(comp, coord, atype, box)["force"][0],
                               rtol=0, atol=1e-12)
    # the torch adapter on the .dp: the op on the forward_lower path (full-sel list, no mask)
    from deepmd_md.infer.deep_pot import DeepPot

    write_model(comp, tmp_path / "c.dp")
    ft = DeepPot(str(tmp_path / "c.dp"), backend="torch").eval(coord.reshape(1, -1), box,
                                                                 atype[0])[1]
    np.testing.assert_allclose(ft[0], fp[0], rtol=0, atol=1e-12)
    assert f.shape == (8, 3)


def test_float32_model(ops, tmp_path):
    """A float32 model keeps float32 tables and runs the float32 kernel: equal to the
    uncompressed float32 model at float32 round-off."""
    from helpers import TRICLINIC_BOX, as_float32

    data = as_float32(make_model())
    comp = compress(data, 0.9)
    assert all(t["coef"].dtype == np.float32 for t in _tables(comp).values())
    coord, atype, box = random_frames(12, TRICLINIC_BOX, seed=3, min_dist=0.95)
    write_model(data, tmp_path / "p.pth")
    write_model(comp, tmp_path / "c.pth")
    e0, f0, _ = _eval(tmp_path / "p.pth", coord.reshape(1, -1), box, atype[0])
    e1, f1, _ = _eval(tmp_path / "c.pth", coord.reshape(1, -1), box, atype[0])
    assert abs(e1[0] - e0[0]) / 12 < 1e-6 and np.max(np.abs(f1 - f0)) < 1e-5


def test_forces_are_minus_gradient(ops, tmp_path):
    """Central differences of the compressed .pth's energy (water, 192 atoms) = its forces."""
    comp = compress(_water_model("se_e2_a"), RMIN)
    write_model(comp, tmp_path / "c.pth")
    coord, box, atype = _water(1)
    _, f, _ = _eval(tmp_path / "c.pth", coord, box, atype)
    h, rows = 1e-4, [(0, 0), (5, 1), (100, 2), (191, 0)]
    moved = np.repeat(coord, 2 * len(rows), axis=0).reshape(2 * len(rows), -1, 3)
    for n, (i, x) in enumerate(rows):
        moved[2 * n, i, x] += h
        moved[2 * n + 1, i, x] -= h
    e, _, _ = _eval(tmp_path / "c.pth", moved.reshape(len(moved), -1),
                    np.repeat(box, len(moved), axis=0), atype)
    fd = -(e[0::2] - e[1::2]) / (2 * h)
    np.testing.assert_allclose(fd, [f[0, i, x] for i, x in rows], rtol=0, atol=1e-6)


def test_smooth_across_knots_and_at_rcut(ops, tmp_path):
    """An O-H dimer pulled from 0.8 A to past rcut in 2.5e-3 A steps crosses ~1,000 knots: the
    force of the compressed model never jumps more than the exact model's does (no kink at a
    knot), and energy and force go to their isolated values continuously at rcut."""
    data = make_model(rcut=4.0, rcut_smth=0.5)
    comp = compress(data, 0.8)
    r = np.arange(0.8, 4.05, 2.5e-3)
    coord = np.zeros((len(r), 2, 3))
    coord[:, 1, 0] = r
    atype = np.array([0, 1])
    out = {}
    for name, d in (("plain", data), ("comp", comp)):
        write_model(d, tmp_path / f"{name}.pth")
        e, f, _ = _eval(tmp_path / f"{name}.pth", coord.reshape(len(r), -1), None, atype)
        out[name] = (e, f[:, 1, 0])
    (e0, f0), (e1, f1) = out["plain"], out["comp"]
    assert np.max(np.abs(e1 - e0)) < 1e-9 and np.max(np.abs(f1 - f0)) < 1e-8
    # the second difference of F (a kink or jump at a knot would stand out) follows the net's
    assert np.max(np.abs(np.diff(f1, 2) - np.diff(f0, 2))) < 1e-9
    inside, outside = r < 4.0, r >= 4.0
    assert np.max(np.abs(e1[outside] - e1[outside][0])) == 0 and np.all(f1[outside] == 0)
    assert abs(e1[inside][-1] - e1[outside][0]) < 1e-10 and abs(f1[inside][-1]) < 1e-8


def test_beyond_the_tables_is_the_net(ops, tmp_path, capfd):
    """Atoms closer than the training data: table 2, then the net (extrapolate 1: no table 2);
    values equal the uncompressed model's; check_frequency 1 reports them on stderr."""
    data = make_model(rcut=4.0, rcut_smth=0.5)
    coord = np.array([[0, 0, 0, 0.7, 0, 0, 2.5, 0.3, 0]], float)  # 0.7 A << rmin 1.5 A
    atype = np.array([0, 1, 1])
    write_model(data, tmp_path / "plain.pth")
    e0, f0, _ = _eval(tmp_path / "plain.pth", coord, None, atype)
    for ext in (5.0, 1.0):
        comp = compress(data, 1.5, extrapolate=ext, check_frequency=1)
        write_model(comp, tmp_path / "c.pth")
        capfd.readouterr()
        e1, f1, _ = _eval(tmp_path / "c.pth", coord, None, atype)
        assert abs(e1[0] - e0[0]) < 1e-9 and np.max(np.abs(f1 - f0)) < 1e-8
        err = capfd.readouterr().err
        assert "beyond the training-data range of the tabulated embedding" in err
        if ext == 1.0:
            assert "(0 beyond" not in err


def test_dp_round_trip_and_show(ops, tmp_path):
    comp = compress(make_model(), 0.9, step=0.02, check_frequency=100)
    write_model(comp, tmp_path / "c.dp")
    back = read_model(tmp_path / "c.dp")
    assert is_compressed(back) and back["config"]["compress"] == comp["config"]["compress"]
    for name, t in _tables(back).items():
        ref = _tables(comp)[name]
        for k in ("coef", "grid", "net"):
            np.testing.assert_array_equal(t[k], ref[k])
    write_model(back, tmp_path / "c.pth")
    p = run_dpmd("show", tmp_path / "c.pth", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("compressed:")]
    assert line == [describe(comp["config"])]
    assert "compressed: yes" in line[0] and "step 0.02" in line[0] and "t1 s in" in line[0]
    write_model(make_model(), tmp_path / "plain.dp")
    p = run_dpmd("show", tmp_path / "plain.dp", cwd=tmp_path)
    assert "compressed: no" in p.stdout


def test_cli_compress(ops, tmp_path):
    """-t input.json: the range from its training systems; the output equals Python's
    compress(); recompressing a compressed model reuses its distance."""
    from helpers import train_input

    data = _water_model("se_e2_a")
    write_model(data, tmp_path / "model.dp")
    inp = train_input([WATER / "data_0"], tmp_path, model=model_config(rcut=4.0, sel=[20, 40]))
    (tmp_path / "input.json").write_text(json.dumps(inp))
    p = run_dpmd("compress", "-i", "model.dp", "-o", "c.dp", "-t", "input.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "min neighbor distance 0.8925 A (training systems of input.json)" in p.stdout
    got = read_model(tmp_path / "c.dp")
    ref = compress(data, RMIN)
    for name, t in _tables(ref).items():
        np.testing.assert_allclose(_tables(got)[name]["coef"], t["coef"], rtol=1e-12, atol=1e-14)
    p = run_dpmd("compress", "-i", "c.dp", "-o", "c2.pth", "-s", "0.05", "-e", "3", "-f", "10",
                 cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "(its earlier compression)" in p.stdout
    c2 = read_model(tmp_path / "c2.pth")["config"]["compress"]
    assert (c2["step"], c2["extrapolate"], c2["check_frequency"]) == (0.05, 3.0, 10)


@pytest.mark.parametrize("case", ["dpa3", "concat", "dpa2-concat", "hybrid", "no-distance", "step",
                                  "tiny-step", "suffix", "missing", "bad-input-json"])
def test_bad_input(ops, tmp_path, case):
    """One line naming the part and why; exit 1; no output file."""
    args, expect = ["-i", "model.dp", "-o", "out.pth"], ""
    desc = None
    if case == "dpa3":
        desc, expect = tiny_descriptors()["dpa3:node_edge"], "cannot compress model/descriptor (dpa3)"
    elif case == "concat":
        desc = dict(tiny_descriptors()["se_atten:v2"], type="se_atten", tebd_input_mode="concat")
        expect = "cannot compress model/descriptor (se_atten): with tebd_input_mode 'concat'"
    elif case == "dpa2-concat":
        desc, expect = tiny_descriptors()["dpa2:small"], "cannot compress model/descriptor/repinit"
    elif case == "hybrid":  # a member that cannot: named by its index
        desc = copy.deepcopy(tiny_descriptors()["hybrid:atten+se_r"])
        desc["list"][0] = dict(desc["list"][0], type="se_atten", tebd_input_mode="concat")
        expect = "cannot compress model/descriptor/list/0 (se_atten): with tebd_input_mode"
    write_model(make_model(desc=desc) if desc else make_model(), tmp_path / "model.dp")
    if case == "no-distance":
        expect = "does not store its training data's minimum neighbor distance"
    elif case == "step":
        args += ["-t", "in.json", "-s", "0"]
        expect = "--step must be a positive number"
    elif case == "tiny-step":
        args += ["-t", "in.json", "-s", "1e-7"]
        expect = "GiB"
    elif case == "suffix":
        args = ["-i", "model.dp", "-o", "out.xyz"]
        expect = "unknown model format for out.xyz"
    elif case == "missing":
        args = ["-i", "nothere.pth", "-o", "out.pth"]
        expect = "model file not found: nothere.pth"
    elif case == "bad-input-json":
        args += ["-t", "in.json"]
        expect = "no training/training_data/systems"
    if case in ("dpa3", "concat", "dpa2-concat", "hybrid"):
        args += ["-t", "in.json"]
    (tmp_path / "in.json").write_text(json.dumps({"training": {}}) if case == "bad-input-json"
                                      else json.dumps(train_input_for(tmp_path)))
    before = tree_files(tmp_path)
    p = run_dpmd("compress", *args, cwd=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dpmd: error: ") and expect in lines[0], p.stderr
    assert tree_files(tmp_path) == before


def train_input_for(tmp_path) -> dict:
    from helpers import train_input

    return train_input([WATER / "data_0"], tmp_path)

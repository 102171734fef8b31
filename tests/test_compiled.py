"""The compiled torch training step (training/compile) takes the eager step's steps, and the
shape harmonisation it relies on (uniform nlist widths and nall) changes no number; env-matrix
statistics count every sel slot whatever the nlist trimming."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import model_config, read_lcurve, teacher_system, train_input

from deepmd_md import keys
from deepmd_md.config import normalize
from deepmd_md.data.system import load_system
from deepmd_md.model.descriptors import se_e2 as descriptor
from deepmd_md.model.frames import extended_coord, prepare_frames
from deepmd_md.serialize import load_dp
from deepmd_md.train.prepared import PreparedData, compute_stats
from deepmd_md.tree import flatten

pytest.importorskip("torch")

from deepmd_md.train.trainer import train, use_compile  # noqa: E402


@pytest.fixture(scope="module")
def systems(tmp_path_factory):
    """Two systems of 8 atoms whose frames need different numbers of images and neighbors."""
    root = tmp_path_factory.mktemp("compiled")
    dense = np.diag([5.2, 5.0, 5.1]).ravel()
    return [teacher_system(root / "a", nat=8, nf=3, seed=1),
            teacher_system(root / "b", nat=8, nf=3, seed=2, box=dense)]


def test_compile_setting():
    assert use_compile("auto", "torch", 100) is False
    assert use_compile("auto", "torch", 10**6) is True
    assert use_compile(True, "torch", 1) is True
    assert use_compile(False, "torch", 10**6) is False
    assert use_compile(False, "jax", 1) is True  # jit, always


def test_uniform_shapes_change_nothing(systems):
    mcfg = normalize(train_input(systems, "."))["model"]
    plain = PreparedData(mcfg, [str(s) for s in systems], 1)
    uni = PreparedData(mcfg, [str(s) for s in systems], 1, uniform=True)
    assert plain.widths[0] != plain.widths[1] or plain.prep[0][keys.MAPPING].shape != \
        plain.prep[1][keys.MAPPING].shape, "fixture must exercise the padding"
    assert uni.widths[0] == uni.widths[1]
    assert uni.prep[0][keys.MAPPING].shape == uni.prep[1][keys.MAPPING].shape
    a, b = flatten(compute_stats(mcfg, plain)), flatten(compute_stats(mcfg, uni))
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=0, err_msg=k)


def test_stats_count_every_sel_slot(systems):
    """davg/dstd from the trimmed, type-sorted training data == from untrimmed full-sel nlists."""
    mcfg = normalize(train_input(systems, "."))["model"]
    got = compute_stats(mcfg, PreparedData(mcfg, [str(s) for s in systems], 1))
    sums = np.zeros((2, 6))
    for path in systems:
        s = load_system(path)
        atype = np.broadcast_to(s.atype, (s.nframes, s.natoms))
        p = prepare_frames(mcfg, s.coord, atype, s.box)
        assert p[keys.NLIST].shape[-1] == sum(mcfg["descriptor"]["sel"])
        ext = extended_coord(s.coord, np.zeros((s.nframes, 3, 3)), p[keys.MAPPING], p[keys.SHIFT])
        sums += descriptor.stat_sums(mcfg["descriptor"], ext, p[keys.EXT_ATYPE],
                                   p[keys.NLIST], 2)
    want = descriptor.stats_from_sums(mcfg["descriptor"], sums, np.float64)
    for k in ("davg", "dstd"):
        np.testing.assert_allclose(got["descriptor"][k], want[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("descr", ["se_e2_a"])
def test_compiled_training_equals_eager(tmp_path, systems, descr, capsys):
    """4 steps over two systems, compiled vs eager: same lcurve and parameters (to rounding)."""
    out = {}
    for mode in (False, True):
        d = tmp_path / f"compile-{mode}"
        d.mkdir()
        inp = train_input(systems, d, numb_steps=4, model=model_config(descr),
                          validation=[systems[0]], compile=mode)
        last = train(normalize(copy.deepcopy(inp)), "torch", progress=False)
        assert ("compiling the training step" in capsys.readouterr().err) is mode
        out[mode] = (read_lcurve(d / "lcurve.out")[1], flatten(load_dp(last)["params"]))
    (lc_e, p_e), (lc_c, p_c) = out[False], out[True]
    np.testing.assert_allclose(lc_c, lc_e, rtol=1e-9, atol=1e-12)
    for k in p_e:
        np.testing.assert_allclose(p_c[k], p_e[k], rtol=1e-9, atol=1e-12, err_msg=k)

"""The module `dpmd export-gromacs` writes, called in this process exactly as GROMACS calls it
(float32 nm inputs, atomic numbers, box rows, pbc flags or pair list): energies and forces equal
DeepPot's on the same frame in kJ/mol and kJ/mol/nm, for periodic (triclinic), pbc = xy, open and
pair-list inputs, typed and message-passing models; bad inputs are one clear error; the module is
self-contained (moved elsewhere, its model cache removed: it still runs). No GROMACS needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from gmx_helpers import EXAMPLES, KJ, KJ_NM

TRICLINIC = np.array([[1.25, 0.0, 0.0], [0.21, 1.18, 0.0], [-0.17, 0.23, 1.22]])  # nm, rows


def frame(n=40, box=TRICLINIC, seed=3, min_dist=0.1):
    """n atoms (O, H, H, ...) at least min_dist nm apart (images included), float32 nm."""
    rng = np.random.default_rng(seed)
    img = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ box
    pts = []
    while len(pts) < n:
        p = rng.uniform(0, 1, 3) @ box
        if all(np.min(np.linalg.norm(q + img - p, axis=1)) >= min_dist for q in pts):
            pts.append(p)
    x = np.array(pts, dtype=np.float32)
    types = np.array([0 if i % 3 == 0 else 1 for i in range(n)])
    return x, types


def deeppot(path, x_nm, box_nm, types):
    from deepmd_md.infer.deep_pot import DeepPot

    x = x_nm.astype(np.float64) * 10.0
    b = None if box_nm is None else (np.asarray(box_nm, np.float64) * 10.0).reshape(1, 9)
    e, f, _ = DeepPot(str(path)).eval(x.reshape(1, -1), b, types)
    return float(e.ravel()[0]) * KJ, f.reshape(-1, 3) * KJ_NM


def export(model, out, **kw):
    from deepmd_md.gromacs import export as ex

    ex(str(model), str(out), **kw)
    import torch

    return torch.jit.load(str(out))


def check(e, f, ref_e, ref_f):
    assert abs(float(e) - ref_e) <= 1e-10 * max(1.0, abs(ref_e))
    np.testing.assert_allclose(f.numpy(), ref_f, rtol=0, atol=1e-9 * max(1.0, np.abs(ref_f).max()))
    assert np.abs(ref_f).max() > 1e-2  # forces that could fail


def zs(types):
    import torch

    return torch.tensor([8 if t == 0 else 1 for t in types], dtype=torch.int32)


@pytest.mark.parametrize("name", ["se", "dpa2"])
def test_periodic_triclinic(models, tmp_path, name):
    import torch

    m = export(models(name), tmp_path / "m.pt")
    x, types = frame()
    e, f = m(torch.tensor(x), zs(types), torch.tensor(TRICLINIC, dtype=torch.float32),
             torch.tensor([True, True, True]))
    check(e, f, *deeppot(models(name), x, TRICLINIC.astype(np.float32), types))
    # coordinates one box vector away (GROMACS passes raw, unwrapped ones): the same numbers
    e2, f2 = m(torch.tensor(x + TRICLINIC[1].astype(np.float32) * 2), zs(types),
               torch.tensor(TRICLINIC, dtype=torch.float32), torch.tensor([True, True, True]))
    assert abs(float(e2) - float(e)) <= 1e-6 * abs(float(e))


def test_pbc_xy_and_open(models, tmp_path):
    """pbc = xy equals DeepPot in a box whose z is far longer than the slab; --no-pbc equals
    DeepPot without a box."""
    import torch

    box = np.diag([1.3, 1.2, 1.1])
    x, types = frame(box=box)
    m = export(models("se"), tmp_path / "m.pt")
    e, f = m(torch.tensor(x), zs(types), torch.tensor(box, dtype=torch.float32),
             torch.tensor([True, True, False]))
    tall = box.astype(np.float32)  # the box GROMACS passes (float32), z made long
    tall[2, 2] = 5.0
    check(e, f, *deeppot(models("se"), x, tall, types))
    mo = export(models("se"), tmp_path / "open.pt", mode="open")
    e, f = mo(torch.tensor(x), zs(types))
    check(e, f, *deeppot(models("se"), x, None, types))


@pytest.mark.parametrize("name", ["se", "dpa2"])
def test_pair_list(models, tmp_path, name):
    """GROMACS' pair list (each pair once, shifts so that x_i - x_j + s is the pair vector,
    pairs of an atom with its own image included) gives DeepPot's numbers."""
    import torch

    box = np.diag([0.75, 0.8, 0.7])  # small: atoms meet their own images within rcut
    x, types = frame(n=18, box=box, min_dist=0.12)
    rc = 0.36  # nm: rcut 3.5 A + a little
    pairs, shifts = [], []
    cells = [np.array(c) for c in np.ndindex(3, 3, 3)]
    for i in range(len(x)):
        for j in range(i, len(x)):
            for c in cells:
                s = (c - 1) @ box
                if i == j and tuple(c - 1) <= (0, 0, 0):
                    continue  # one of (s, -s) per self image; no zero self pair
                if np.linalg.norm(x[i] - x[j] + s) < rc:
                    pairs.append((i, j))
                    shifts.append(s)
    m = export(models(name), tmp_path / "p.pt", mode="pairs")
    p = torch.tensor(pairs, dtype=torch.int32)
    s = torch.tensor(np.array(shifts), dtype=torch.float32)
    e, f = m(torch.tensor(x), zs(types), p, s)
    check(e, f, *deeppot(models(name), x, box.astype(np.float32), types))
    e2, f2 = m(torch.tensor(x), zs(types), p, s)  # the same list again: the kept ghosts
    assert float(e2) == float(e) and bool((f2 == f).all())


def test_errors(models, tmp_path):
    """Inputs in the wrong order or missing, an element the model lacks: one message naming the
    MDP lines or the element. grompp's dummy check on a model without H: zeros, no error."""
    import torch

    m = export(models("se"), tmp_path / "m.pt")
    x, types = frame(n=9)
    box, pbc = torch.eye(3) * 1.2, torch.tensor([True, True, True])
    with pytest.raises(RuntimeError, match="nnpot-model-input1 must be atom-positions"):
        m(zs(types), torch.tensor(x), box, pbc)
    with pytest.raises(RuntimeError, match="exported for a periodic system.*nnpot-model-input3 = box"):
        m(torch.tensor(x), zs(types))
    with pytest.raises(RuntimeError, match="nnpot-model-input4 must be pbc"):
        m(torch.tensor(x), zs(types), box, box)
    z = zs(types)
    z[4] = 6
    with pytest.raises(RuntimeError, match=r"NN atom 4 has atomic number 6 \(C\), which is not in the "
                                           r"model's type_map \[O, H\]"):
        m(torch.tensor(x), z, box, pbc)
    # grompp's model check: link type H everywhere, positions 0.01 (i+1)(j+1) nm, 1 nm box
    n = 30
    dummy = torch.tensor([[0.01 * (i + 1) * (j + 1) for j in range(3)] for i in range(n)])
    ones = torch.ones(n, dtype=torch.int32)
    e, f = m(dummy, ones, torch.eye(3), pbc)  # the model has H: evaluated, finite
    assert torch.isfinite(e) and bool(torch.isfinite(f).all())
    mc = export(models("noH"), tmp_path / "noH.pt")  # type_map [O, C]: zeros for the check
    e, f = mc(dummy, ones, torch.eye(3), pbc)
    assert float(e) == 0.0 and float(f.abs().max()) == 0.0
    with pytest.raises(RuntimeError, match=r"atomic number 1 \(H\), which is not in the model's "
                                           r"type_map \[O, C\]"):
        mc(dummy * 1.5, ones, torch.eye(3), pbc)


def test_self_contained(models, tmp_path, op_lib):
    """The .pt holds the model: moved to another folder, the source model deleted and the cache
    empty, a fresh process runs it (and writes the cache once); its extension_libs record is
    the installed op library."""
    src = tmp_path / "src"
    src.mkdir()
    model = src / "se.pth"
    shutil.copy(models("se"), model)
    export(model, src / "m.pt")
    with zipfile.ZipFile(src / "m.pt") as z:
        rec = [n for n in z.namelist() if n.endswith("extra/extension_libs")]
        assert rec and z.read(rec[0]).decode() == str(op_lib)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(str(src / "m.pt"), moved / "m.pt")
    shutil.rmtree(src)
    cache = tmp_path / "cache"
    code = ("import torch, sys; torch.ops.load_library(sys.argv[2]); m = torch.jit.load(sys.argv[1]); "
            "x = torch.rand(6, 3) * 1.2; z = torch.tensor([8, 1, 1, 8, 1, 1], dtype=torch.int32); "
            "e, f = m(x, z, torch.eye(3) * 1.2, torch.tensor([True] * 3)); print(float(e))")
    env = dict(os.environ, DPMD_MD_GROMACS_CACHE=str(cache))
    p = subprocess.run([sys.executable, "-c", code, str(moved / "m.pt"), str(op_lib)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert np.isfinite(float(p.stdout.split()[-1]))
    assert [f.suffix for f in cache.iterdir()] == [".pth"]


def test_export_formats(models, tmp_path):
    """A .dp (frozen to .pth inside) and a .pt2 (as is) give the .pth's numbers."""
    import torch

    from deepmd_md.infer.deep_pot import load_model_data
    from deepmd_md.serialize import save_dp

    x, types = frame()
    args = (torch.tensor(x), zs(types), torch.tensor(TRICLINIC, dtype=torch.float32),
            torch.tensor([True, True, True]))
    e0, f0 = export(models("se"), tmp_path / "a.pt")(*args)
    save_dp(load_model_data(str(models("se"))), str(tmp_path / "se.dp"))
    e1, f1 = export(tmp_path / "se.dp", tmp_path / "b.pt")(*args)
    assert abs(float(e1) - float(e0)) <= 1e-10 * abs(float(e0))
    np.testing.assert_allclose(f1.numpy(), f0.numpy(), rtol=0, atol=1e-9 * float(f0.abs().max()))


def test_every_tool_reads_the_gromacs_module(models, tmp_path):
    """The .pt GROMACS runs is a model file like the others: DeepPot, `dpmd show` and `dpmd
    freeze -c` read the frozen model it carries (the same numbers as its source)."""
    from deepmd_md.infer.deep_pot import DeepPot
    from deepmd_md.tree import flatten

    export(models("se"), tmp_path / "g.pt")
    x, types = frame()
    b = (TRICLINIC.astype(np.float64) * 10.0).reshape(1, 9)
    ref = DeepPot(str(models("se"))).eval(x.astype(np.float64).reshape(1, -1) * 10, b, types)
    got = DeepPot(str(tmp_path / "g.pt")).eval(x.astype(np.float64).reshape(1, -1) * 10, b, types)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_array_equal(g, r)
    show = subprocess.run([sys.executable, "-m", "deepmd_md.cli.main", "show", "g.pt"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert show.returncode == 0 and "type_map: ['O', 'H']" in show.stdout, show.stderr
    fr = subprocess.run([sys.executable, "-m", "deepmd_md.cli.main", "freeze", "-c", "g.pt", "-o",
                         "back.dp"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert fr.returncode == 0, fr.stderr
    from deepmd_md.infer.deep_pot import load_model_data

    a = flatten(load_model_data(str(tmp_path / "back.dp"))["params"])
    want = flatten(load_model_data(str(models("se")))["params"])
    assert all(np.array_equal(a[k], want[k]) for k in want)


def dpmd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "deepmd_md.cli.main", "export-gromacs", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli(models, tmp_path):
    """The MDP lines and the topology advice on stdout; bad input: one line, exit 1."""
    w = EXAMPLES / "water"
    p = dpmd(models("se"), "-o", tmp_path / "w.pt", "-n", w / "index.ndx", "-g", "NN", "-p", w / "topol.top")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    for want in ("nnpot-active             = yes", f"nnpot-modelfile          = {tmp_path / 'w.pt'}",
                 "nnpot-input-group        = NN", "nnpot-model-input1       = atom-positions",
                 "nnpot-model-input2       = atom-numbers", "nnpot-model-input3       = box",
                 "nnpot-model-input4       = pbc"):
        assert want in lines
    assert all(ln.startswith(("nnpot-", ";")) for ln in lines)  # pastes into an MDP as is
    assert any("192 atoms (H 128, O 64)" in ln for ln in lines)
    assert any("every atom is NN: set the charges of these atoms to 0" in ln for ln in lines)
    s = EXAMPLES / "solvated"
    p = dpmd(models("se"), "-o", tmp_path / "s.pt", "-n", s / "index.ndx", "-g", "NN", "-p",
             s / "topol.top", "--pair-list")
    assert p.returncode == 0, p.stderr
    assert "nnpot-pair-cutoff        = 0.45" in p.stdout.splitlines()
    assert "classical charge of the group: +0.0000 e" in p.stdout
    assert "mechanical embedding: NN-MM interactions stay classical" in p.stdout

    bad = [
        ((tmp_path / "nope.pth", "-o", tmp_path / "x.pt"), "dpmd: error: model file not found: "),
        ((models("noH"), "-o", tmp_path / "x.pt", "-n", s / "index.ndx", "-g", "NN", "-p", s / "topol.top"),
         "dpmd: error: element H (10 atoms of group 'NN', e.g. atom 2 HW1) is not in the model's "
         "type_map [O, C]"),
        ((models("se"), "-o", tmp_path / "x.pt", "-n", s / "index.ndx", "-g", "QM", "-p", s / "topol.top"),
         "dpmd: error: group 'QM' is not in"),
        ((models("se"), "-o", tmp_path / "x.pth"), "dpmd: error: GROMACS loads only .pt model files"),
    ]
    for args, msg in bad:
        p = dpmd(*args)
        assert p.returncode == 1 and p.stderr.startswith(msg), (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert not (tmp_path / "x.pt").exists()
    # a GROMACS module is a model file like the others: re-exporting from it works
    p = dpmd(tmp_path / "w.pt", "-o", tmp_path / "again.pt")
    assert p.returncode == 0 and (tmp_path / "again.pt").is_file(), p.stderr

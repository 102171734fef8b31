"""`dpmd model-devi`: DeePMD-kit 3.2's model_devi.out layout, the definitions, and equality
with the LAMMPS plugin's deviation file (pair_style deepmd m1 m2 out_file) on the same frames."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TESTS

from deepmd_md.cli.main import main

sys.path.insert(0, str(TESTS / "lammps"))
from lammps_helpers import lammps_env, run_lmp  # noqa: E402

# DeePMD-kit 3.2.0's lines (dp --pt model-devi -m a.pth b.pth -s sys [--atomic]): a `# <system>`
# line, then this column line, names left-aligned in 19 characters after `# step` in 12
HEADER = ("# step      max_devi_v         min_devi_v         avg_devi_v         max_devi_f"
          "         min_devi_f         avg_devi_f         devi_e             ")
ATOMIC = "atm_devi_f(N)      "


def read_blocks(path) -> dict[str, tuple[str, np.ndarray]]:
    """{system: (column line, rows [nf, ncol])} of a model_devi.out."""
    blocks, name = {}, None
    for ln in Path(path).read_text().splitlines():
        if ln.startswith("# step"):
            blocks[name] = (ln, [])
        elif ln.startswith("# "):
            name = ln[2:]
        else:
            blocks[name][1].append([float(x) for x in ln.split()])
    return {k: (h, np.array(r)) for k, (h, r) in blocks.items()}


def direct(models, s):
    """The deviations by their definitions, written out here independently of
    deepmd_md.tools.model_devi: [nf, 7] columns and [nf, nat] per-atom force deviation."""
    from deepmd_md.infer import DeepPot

    outs = [DeepPot(str(m)).eval(s.coord.reshape(s.nframes, -1), s.box, s.atype) for m in models]
    e = np.array([o[0][:, 0] for o in outs])
    f = np.array([o[1] for o in outs])
    v = np.array([o[2] for o in outs]) / s.natoms
    cols, atoms = [], []
    for i in range(s.nframes):
        df = np.array([np.sqrt(sum(np.sum((f[k, i, a] - f[:, i, a].mean(0)) ** 2)
                                   for k in range(len(models))) / len(models))
                       for a in range(s.natoms)])
        dv = np.array([np.sqrt(np.mean((v[:, i, c] - v[:, i, c].mean()) ** 2)) for c in range(9)])
        cols.append([dv.max(), dv.min(), np.sqrt(np.mean(dv**2)), df.max(), df.min(), df.mean(),
                     np.sqrt(np.mean((e[:, i] - e[:, i].mean()) ** 2)) / s.natoms])
        atoms.append(df)
    return np.array(cols), np.array(atoms)


def test_layout_and_definitions(models, systems, tmp_path):
    from deepmd_md.data.system import load_system

    out = tmp_path / "md.out"
    ms = [models["m1.pth"], models["m2.pth"]]
    assert main(["model-devi", "-m", *map(str, ms), "-s", str(systems), "-o", str(out),
                 "-f", "10"]) == 0
    text = out.read_text().splitlines()
    assert text[0] == f"# {systems / 'a'}" and text[1] == HEADER
    assert all(len(ln) == 12 + 7 * 19 for ln in text[2:5])  # %12d then 7 x ' %18.6e'
    blocks = read_blocks(out)
    assert list(blocks) == [str(systems / n) for n in ("a", "b", "c")]
    for name, (_, rows) in blocks.items():
        s = load_system(name)
        assert list(rows[:, 0]) == [10 * i for i in range(s.nframes)]
        cols, _ = direct(ms, s)
        np.testing.assert_allclose(rows[:, 1:], cols, rtol=6e-7, atol=1e-300)


def test_atomic_relative_and_mixed_formats(models, systems, tmp_path):
    """--atomic adds one column per atom; .dp and .pth of one model give the same numbers;
    --relative/--relative_v divide by |mean| + level."""
    from deepmd_md.data.system import load_system
    from deepmd_md.tools.model_devi import deviation

    a = systems / "a"
    s = load_system(a)
    out1, out2 = tmp_path / "pth.out", tmp_path / "dp.out"
    assert main(["model-devi", "-m", str(models["m1.pth"]), str(models["m2.pth"]), "-s", str(a),
                 "-o", str(out1), "--atomic"]) == 0
    assert main(["model-devi", "-m", str(models["m1.dp"]), str(models["m2.pth"]), "-s", str(a),
                 "-o", str(out2), "--atomic"]) == 0
    head, rows = read_blocks(out1)[str(a)]
    assert head == HEADER + ATOMIC and rows.shape == (3, 8 + s.natoms)
    _, per_atom = direct([models["m1.pth"], models["m2.pth"]], s)
    np.testing.assert_allclose(rows[:, 8:], per_atom, rtol=6e-7)
    assert out1.read_text() == out2.read_text()
    # relative: against the definition applied to the same model outputs
    from deepmd_md.infer import DeepPot

    outs = [DeepPot(str(m)).eval(s.coord.reshape(3, -1), s.box, s.atype)
            for m in (models["m1.pth"], models["m2.pth"])]
    e, f, v = (np.stack([o[i] for o in outs]) for i in range(3))
    rel = deviation(e, f, v, relative=0.5, relative_v=0.2)
    plain = deviation(e, f, v)
    fm = np.linalg.norm(f.mean(0), axis=-1)
    np.testing.assert_allclose(rel["devi_f"], plain["devi_f"] / (fm + 0.5), rtol=1e-14)
    wm = np.linalg.norm(v.mean(0) / s.natoms, axis=-1)
    np.testing.assert_allclose(rel["max_devi_v"], plain["max_devi_v"] / (wm + 0.2), rtol=1e-14)


# -- the LAMMPS plugin on the same frames ------------------------------------------------------


def _lammps_box(box9):
    (lx, _, _), (xy, ly, _), (xz, yz, lz) = np.asarray(box9).reshape(3, 3).tolist()
    return lx, ly, lz, xy, xz, yz


def write_lammps_frames(s, freq: int, folder: Path) -> None:
    """frame.data (frame 0: atoms, restricted triclinic box) and traj.dump (every frame at
    timestep i*freq) of a periodic system whose cell rows are a, b, c (lower triangular)."""
    g = "{:.17g}".format
    lx, ly, lz, xy, xz, yz = _lammps_box(s.box[0])
    atoms = "".join(f"{j + 1} {t + 1} {g(x)} {g(y)} {g(z)}\n"
                    for j, (t, (x, y, z)) in enumerate(zip(s.atype, s.coord[0].tolist(),
                                                        strict=True)))
    (folder / "frame.data").write_text(
        f"frame 0\n\n{s.natoms} atoms\n2 atom types\n\n0 {g(lx)} xlo xhi\n0 {g(ly)} ylo yhi\n"
        f"0 {g(lz)} zlo zhi\n{g(xy)} {g(xz)} {g(yz)} xy xz yz\n\nMasses\n\n1 16\n2 2\n\n"
        f"Atoms # atomic\n\n{atoms}")
    dump = []
    for i in range(s.nframes):
        lx, ly, lz, xy, xz, yz = _lammps_box(s.box[i])
        dump.append(
            f"ITEM: TIMESTEP\n{i * freq}\nITEM: NUMBER OF ATOMS\n{s.natoms}\n"
            f"ITEM: BOX BOUNDS xy xz yz pp pp pp\n"
            f"{g(min(0, xy, xz, xy + xz))} {g(lx + max(0, xy, xz, xy + xz))} {g(xy)}\n"
            f"{g(min(0, yz))} {g(ly + max(0, yz))} {g(xz)}\n0 {g(lz)} {g(yz)}\n"
            "ITEM: ATOMS id type x y z\n"
            + "".join(f"{j + 1} {t + 1} {g(x)} {g(y)} {g(z)}\n"
                      for j, (t, (x, y, z)) in enumerate(zip(s.atype, s.coord[i].tolist(),
                                                          strict=True))))
    (folder / "traj.dump").write_text("".join(dump))


@pytest.fixture(scope="module")
def lmp_env():
    return lammps_env()

@pytest.mark.parametrize("variant", ["plain", "atomic relative"])
def test_equals_lammps_deviation_file(models, systems, lmp_env, tmp_path, variant):
    """The same frames through `rerun` in LAMMPS: every deviation column (and the per-atom
    ones) equal to <= 1e-10 (both files print %.6e, so the texts agree). plain: the
    orthogonal system; atomic relative: the triclinic one."""
    from deepmd_md.data.system import load_system

    m1, m2 = models["m1.pth"], models["m2.pth"]
    extra, opts = "", []
    if variant != "plain":
        extra, opts = " atomic relative 0.5 relative_v 0.2", ["--atomic", "--relative", "0.5",
                                                             "--relative_v", "0.2"]
    for name in ("a",) if variant == "plain" else ("b",):
        s = load_system(systems / name)
        work = tmp_path / name
        work.mkdir()
        write_lammps_frames(s, 5, work)
        inp = "\n".join(["units metal", "boundary p p p", "atom_style atomic",
                         "atom_modify map yes", "read_data frame.data",
                         f"pair_style deepmd {m1} {m2} out_file lmp.out out_freq 1{extra}",
                         "pair_coeff * * O H", "rerun traj.dump dump x y z box yes"]) + "\n"
        p = run_lmp(inp, work, lmp_env)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        assert main(["model-devi", "-m", str(m1), str(m2), "-s", str(systems / name), "-o",
                     str(work / "ours.out"), "-f", "5", *opts]) == 0
        lmp = np.loadtxt(work / "lmp.out", ndmin=2)
        _, ours = read_blocks(work / "ours.out")[str(systems / name)]
        assert lmp.shape[0] == s.nframes
        cols = [0, 1, 2, 3, 4, 5, 6] + ([*range(8, 8 + s.natoms)] if extra else [])
        lcols = [0, 1, 2, 3, 4, 5, 6] + ([*range(7, 7 + s.natoms)] if extra else [])
        np.testing.assert_allclose(ours[:, cols], lmp[:, lcols], rtol=0, atol=1e-10)

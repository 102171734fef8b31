"""deepmd_md models in a real GROMACS (NNPot, built by tools/gromacs/build.sh): `dpmd export-gromacs`,
`gmx grompp` (its dummy-input model check included) and `gmx mdrun`.

- the NN potential at step 0 (gmx energy) and the forces (trr) equal DeepPot on the same frame, in
  kJ/mol and kJ/mol/nm: .pth, .pt2 and a message-passing model, the box or GROMACS' pair list;
- thread-MPI 1 and 2 ranks give the same energies; NVE conserves energy;
- the mixed case (5 NN waters in SPC/Fw water, mechanical embedding) runs, and the forces the NN
  term adds are DeepPot's on the NN atoms alone (a rerun with the model minus a rerun with a zero
  model of the same topology);
- bad input is one clear error, never a hang or a crash."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gmx_helpers import EXAMPLES, KJ, KJ_NM, energies, mdp, nn_lines, read_gro, read_trr, run


def setup_case(tmp: Path, example: str) -> Path:
    for f in ("conf.gro", "topol.top", "index.ndx"):
        shutil.copy(EXAMPLES / example / f, tmp / f)
    return tmp


def export(model, out: Path, *args) -> dict:
    from deepmd_md.gromacs import export as ex

    mode = "pairs" if "--pair-list" in args else "periodic"
    return ex(str(model), str(out), mode=mode)


def grompp(gmx, env, cwd, mdp_text, name="nn", check=True, index="index.ndx", conf="conf.gro"):
    (Path(cwd) / f"{name}.mdp").write_text(mdp_text)
    return run([gmx, "grompp", "-f", f"{name}.mdp", "-c", conf, "-p", "topol.top", "-n", index,
                "-o", f"{name}.tpr", "-po", f"{name}_out.mdp", "-maxwarn", "0"], cwd, env, check=check)


def mdrun(gmx, env, cwd, name="nn", ntmpi=1, check=True, extra=(), timeout=300):
    return run([gmx, "mdrun", "-deffnm", name, "-ntmpi", ntmpi, "-ntomp", 1, *extra], cwd, env,
               check=check, timeout=timeout)


def deeppot(model, x_nm, box_nm, names):
    from deepmd_md.infer.deep_pot import DeepPot

    types = np.array([0 if n.startswith("O") else 1 for n in names])
    x = x_nm.astype(np.float64) * 10.0
    b = None if box_nm is None else (box_nm.astype(np.float64) * 10.0).reshape(1, 9)
    e, f, _ = DeepPot(str(model)).eval(x.reshape(1, -1), b, types)
    return float(e.ravel()[0]) * KJ, f.reshape(-1, 3) * KJ_NM


def step0(gmx, env, cwd, model, mode_args=(), inputs=None, pair_cutoff=None, rlist=None):
    """(NN energy at step 0 from gmx energy, frame 0 of the trr (x, box, f: the positions GROMACS
    used, wrapped into the box, and its forces), grompp output)."""
    out = Path(cwd) / "model.pt"
    r = export(model, out, *mode_args)
    p = grompp(gmx, env, cwd, mdp(nn_lines("model.pt", "NN", r["inputs"], pair_cutoff), nsteps=0,
                                  rlist=rlist))
    mdrun(gmx, env, cwd)
    e = energies(gmx, "nn.edr", cwd, env)
    return e["NN-Potential"][0], read_trr(Path(cwd) / "nn.trr")[0], p.stdout + p.stderr


@pytest.mark.parametrize("name", ["se", "se_pt2", "dpa2"])
def test_step0_equals_deeppot(gmx, gmx_env, models, tmp_path, name):
    """192-atom water, every atom NN (charges 0, so the NN term is the only force)."""
    cwd = setup_case(tmp_path, "water")
    e, fr, log = step0(gmx, gmx_env, cwd, models(name))
    assert "Will use forces from NNP model" in log  # grompp's dummy-input check ran and passed
    _, _, names = read_gro(cwd / "conf.gro")
    x0, box0, _ = read_gro(EXAMPLES / "water" / "conf.gro")
    d = fr["x"] - x0  # the frame of conf.gro, atoms put into the box (whole box vectors)
    assert np.abs(d - np.diag(box0) * np.round(d / np.diag(box0))).max() < 1e-5
    f = fr["f"]
    ref_e, ref_f = deeppot(models("se" if name == "se_pt2" else name), fr["x"], fr["box"], names)
    assert abs(e - ref_e) <= 1e-6 * abs(ref_e), (e, ref_e)  # the .edr holds float32
    # the trr holds float32 forces: GROMACS' own single precision (a few ulp), nothing else
    scale = np.abs(ref_f).max()
    assert scale > 1.0
    np.testing.assert_allclose(f, ref_f, rtol=0, atol=2e-7 * scale)


def test_pair_list_equals_box(gmx, gmx_env, models, tmp_path):
    """GROMACS' pair list (nnpot-pair-cutoff = rcut + 0.1 nm, rebuilt every nstlist steps) gives the
    box route's forces at step 0 and the same energies over 40 MD steps."""
    cwd = setup_case(tmp_path, "water")
    e, fr, _ = step0(gmx, gmx_env, cwd, models("se"), ("--pair-list",), pair_cutoff=0.45, rlist=0.6)
    _, _, names = read_gro(cwd / "conf.gro")
    f = fr["f"]
    ref_e, ref_f = deeppot(models("se"), fr["x"], fr["box"], names)
    assert abs(e - ref_e) <= 1e-6 * abs(ref_e)
    np.testing.assert_allclose(f, ref_f, rtol=0, atol=2e-7 * np.abs(ref_f).max())

    runs = {}
    for mode in ("box", "pairs"):
        d = tmp_path / mode
        d.mkdir()
        setup_case(d, "water")
        r = export(models("se"), d / "model.pt", *(("--pair-list",) if mode == "pairs" else ()))
        lines = nn_lines("model.pt", "NN", r["inputs"], 0.45 if mode == "pairs" else None)
        grompp(gmx, gmx_env, d, mdp(lines, nsteps=40, nstout=10, gen_vel=True, rlist=0.6,
                                    extra="nstlist = 10\n"))
        mdrun(gmx, gmx_env, d)
        runs[mode] = energies(gmx, "nn.edr", d, gmx_env)
    np.testing.assert_allclose(runs["pairs"]["NN-Potential"], runs["box"]["NN-Potential"], rtol=1e-5)


def test_ranks_and_nve(gmx, gmx_env, models, tmp_path):
    """Thread-MPI 1 and 2 ranks (domain decomposition; NNPot gathers the NN atoms on the main rank)
    give the same energies; NVE of NN water (the trained model) conserves energy."""
    res = {}
    for ntmpi in (1, 2):
        d = tmp_path / f"r{ntmpi}"
        d.mkdir()
        setup_case(d, "water")
        r = export(models("water"), d / "model.pt")
        grompp(gmx, gmx_env, d, mdp(nn_lines("model.pt", "NN", r["inputs"]), nsteps=200, nstout=10,
                                    gen_vel=True))
        p = mdrun(gmx, gmx_env, d, ntmpi=ntmpi)
        if ntmpi == 2:
            assert "Domain decomposition grid 2 x 1 x 1" in (d / "nn.log").read_text() or \
                "2 MPI threads" in p.stderr + (d / "nn.log").read_text()
        res[ntmpi] = energies(gmx, "nn.edr", d, gmx_env)
    for k in ("NN-Potential", "Total-Energy"):
        np.testing.assert_allclose(res[2][k], res[1][k], rtol=1e-5, atol=1e-3)
    e = res[1]
    natoms = 192
    pot = e["NN-Potential"]
    cons = e["Total-Energy"]  # NVE: the conserved energy
    # 0.1 ps at 300 K: the potential energy swings by tens of kJ/mol; the conserved energy must
    # stay flat (measured drift ~1e-3 kJ/mol/atom per 0.1 ps; a force or unit error is 100x more)
    assert np.ptp(pot) > 20.0
    drift = abs(cons[-1] - cons[0]) / natoms
    assert drift < 5e-3, (drift, cons)
    assert np.ptp(cons) < 0.05 * np.ptp(pot), (np.ptp(cons), np.ptp(pot))


def test_mixed_region(gmx, gmx_env, models, tmp_path):
    """5 NN water molecules in 507 SPC/Fw ones (PME, mechanical embedding): grompp and 50 MD
    steps run; at the starting frame the NN energy is DeepPot's of the 15 NN atoms alone, and
    the forces the NN term adds (model minus a zero model, same topology) are DeepPot's forces
    on those atoms, nothing on the MM atoms."""
    cwd = setup_case(tmp_path, "solvated")
    base = dict(coulomb="PME", rc=0.9)
    fs, es = {}, {}
    for name in ("se", "zero"):
        r = export(models(name), cwd / f"{name}.pt")
        grompp(gmx, gmx_env, cwd, mdp(nn_lines(f"{name}.pt", "NN", r["inputs"]), nsteps=0, **base), name=name)
        mdrun(gmx, gmx_env, cwd, name=name, extra=("-rerun", "conf.gro"))
        fr = read_trr(cwd / f"{name}.trr")[0]
        fs[name] = fr["f"]
        es[name] = energies(gmx, f"{name}.edr", cwd, gmx_env)["NN-Potential"][0]
    _, _, names = read_gro(cwd / "conf.gro")
    ref_e, ref_f = deeppot(models("se"), fr["x"][:15], fr["box"], names[:15])
    assert abs(es["se"] - ref_e) <= 1e-6 * abs(ref_e) and es["zero"] == 0.0
    diff = fs["se"] - fs["zero"]
    tol = 2e-6 * np.abs(fs["se"]).max()  # float32 sums of MM and NN forces
    assert np.abs(ref_f).max() > 100 * tol
    np.testing.assert_allclose(diff[:15], ref_f, rtol=0, atol=tol)
    assert np.abs(diff[15:]).max() <= tol

    d = tmp_path / "md"
    d.mkdir()
    setup_case(d, "solvated")
    r = export(models("se"), d / "model.pt")
    grompp(gmx, gmx_env, d, mdp(nn_lines("model.pt", "NN", r["inputs"]), nsteps=50, nstout=10, gen_vel=True,
                                **base))
    mdrun(gmx, gmx_env, d)
    e = energies(gmx, "nn.edr", d, gmx_env)
    assert len(e["time"]) == 6 and np.isfinite(e["Total-Energy"]).all()
    assert np.all(e["NN-Potential"] != 0.0)


def fatal(p) -> str:
    """GROMACS' error block (stderr), its lines (wrapped at 80 columns) joined by single spaces."""
    text = p.stdout + p.stderr
    assert p.returncode != 0, text[-3000:]
    assert text.count("\n----------------------------------------------------") >= 2, text[-3000:]
    return " ".join(text.split())


def test_bad_input(gmx, gmx_env, models, tmp_path, op_lib):
    """One clear error each, from grompp or mdrun, no hang (timeouts) and no crash (signals)."""
    cwd = setup_case(tmp_path, "water")
    r = export(models("se"), cwd / "model.pt")
    # the module needs box and pbc: an MDP naming only positions and numbers fails grompp's check
    p = grompp(gmx, gmx_env, cwd, mdp(nn_lines("model.pt", "NN", r["inputs"][:2])), check=False)
    text = fatal(p)
    assert "deepmd_md: this model was exported for a periodic system" in text
    assert "nnpot-model-input3 = box, nnpot-model-input4 = pbc" in text
    # inputs in the wrong order
    p = grompp(gmx, gmx_env, cwd, mdp(nn_lines("model.pt", "NN", ["atom-numbers", "atom-positions", "box",
                                                                  "pbc"])), check=False)
    assert "deepmd_md: nnpot-model-input1 must be atom-positions" in fatal(p)
    # no such model file
    p = grompp(gmx, gmx_env, cwd, mdp(nn_lines("missing.pt", "NN", r["inputs"])), check=False)
    assert "Model file does not exist: missing.pt" in fatal(p)
    # an element the model lacks: grompp's check (all H) passes on zeros, mdrun names the element
    export(models("noH"), cwd / "noH.pt")
    grompp(gmx, gmx_env, cwd, mdp(nn_lines("noH.pt", "NN", r["inputs"])), name="noH")
    p = mdrun(gmx, gmx_env, cwd, name="noH", check=False)
    text = fatal(p)
    assert p.returncode > 0  # an exit status, not a signal
    assert ("deepmd_md: NN atom 1 has atomic number 1 (H), which is not in the model's type_map [O, C]"
            in text)
    # the op library gone (deepmd_md moved or uninstalled): GROMACS names the library it could
    # not load and the op it then lacks
    with zipfile.ZipFile(cwd / "model.pt") as zin, zipfile.ZipFile(cwd / "nolib.pt", "w") as zout:
        for item in zin.infolist():
            buf = zin.read(item.filename)
            if item.filename.endswith("extra/extension_libs"):
                buf = b"/nonexistent/deepmd_md/lib/libdpmd_gromacs.so"
            zout.writestr(item, buf)
    p = grompp(gmx, gmx_env, cwd, mdp(nn_lines("nolib.pt", "NN", r["inputs"])), check=False)
    text = fatal(p)
    assert "/nonexistent/deepmd_md/lib/libdpmd_gromacs.so" in text
    assert "dpmd_gmx::evaluate" in text


def test_blas_capture_reported(gmx, gmx_env, models, tmp_path):
    """A GROMACS with its built-in BLAS (the default build, tools/gromacs/build.sh's) exports
    dgemm_/sgemm_ before libtorch_cpu, so torch's matrix products run on that reference BLAS: the
    op says so once with the remedy, and the remedy (LD_PRELOAD of libtorch_cpu.so) removes the
    warning and changes no energy beyond float32 rounding."""
    import re

    cwd = setup_case(tmp_path, "water")
    r = export(models("se"), cwd / "model.pt")
    grompp(gmx, gmx_env, cwd, mdp(nn_lines("model.pt", "NN", r["inputs"]), nsteps=4, gen_vel=True))
    p = mdrun(gmx, gmx_env, cwd)
    warn = [ln for ln in p.stderr.splitlines()
            if ln.startswith("deepmd_md: warning: torch's matrix products")]
    if not warn:
        pytest.skip("this GROMACS does not capture torch's BLAS (built with an external BLAS)")
    assert len(warn) == 1
    preload = re.search(r"LD_PRELOAD=(\S+libtorch_cpu\.so)", warn[0]).group(1)
    e1 = energies(gmx, "nn.edr", cwd, gmx_env)["NN-Potential"]
    p = mdrun(gmx, dict(gmx_env, LD_PRELOAD=preload), cwd)
    assert "deepmd_md: warning" not in p.stderr
    e2 = energies(gmx, "nn.edr", cwd, gmx_env)["NN-Potential"]
    np.testing.assert_allclose(e2, e1, rtol=1e-6)

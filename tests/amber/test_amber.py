"""`dpmd amber` with the real sander: the QM region's energy and forces as sander receives and
applies them equal DeepPot's on the coordinates sander passed; NVE conserves energy."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amber_helpers import (  # noqa: E402
    BOHR_A,
    HARTREE_EV,
    KCAL_A_PER_EV_A,
    KCAL_PER_EV,
    deeppot_eval,
    env_for,
    mdout_energies,
    mdout_steps,
    nc_forces,
    read_inpcrd,
    read_trace,
    run_amber,
    run_zero_sander,
    write_inpcrd,
)

QMMM = """ &qmmm
  qmmask=':1', qmcharge=0, spin=1, qm_theory='EXTERN', qmmm_int=5, qmshake=0, qm_ewald=0,
  qmcut=7.0,
 /
 &qc
 /
"""
MD_FORCES = """3 MD steps from rest, forces written every step
 &cntrl
  imin=0, nstlim=3, dt=0.0005, ntpr=1, ntwx=1, ntwf=1, ioutfm=1, cut=7.0, ntb=1,
  ntt=0, tempi=0.0, ntc=1, ntf=1, ifqnt=1,
 /
""" + QMMM
NVE = """NVE, one flexible NN water in rigid TIP3P
 &cntrl
  imin=0, nstlim=300, dt=0.0005, ntpr=10, ntwx=0, cut=7.0, ntb=1,
  ntt=0, tempi=300.0, ig=71277, nscm=0, ntc=2, ntf=2, ifqnt=1,
 /
""" + QMMM


def _distorted_start(box_dir: Path, out: Path) -> None:
    """The box with its first water (the NN one) stretched and bent: large QM forces."""
    x, box = read_inpcrd(box_dir / "water.inpcrd")
    d = x[1] - x[0]
    x[1] = x[0] + d * (1 + 0.08 / np.linalg.norm(d))
    x[2] += 0.06 * (x[2] - x[1]) / np.linalg.norm(x[2] - x[1])
    write_inpcrd(out, x, box)


def _molecule(path: Path) -> tuple[list[str], np.ndarray]:
    """(elements, coordinates [n, 3]) of the $molecule block of a qc_job.inp."""
    lines = path.read_text().splitlines()
    k = lines.index("$molecule") + 2
    rows = []
    while lines[k].strip() != "$end":
        rows.append(lines[k].split())
        k += 1
    return [r[0] for r in rows], np.array([[float(v) for v in r[1:4]] for r in rows])


def test_water_energy_forces_equal_deeppot(water_box, water_model, tmp_path):
    env = env_for(tmp_path)
    (tmp_path / "md.in").write_text(MD_FORCES)
    _distorted_start(water_box, tmp_path / "start.inpcrd")
    common = ["-O", "-i", "md.in", "-p", water_box / "water.prmtop", "-c", "start.inpcrd"]
    p = run_amber(water_model, *common, "-o", "md.out", "-frc", "ours.frc", "-x", "ours.nc",
                  opts=["--trace", "trace.jsonl"], cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    trace = read_trace(tmp_path / "trace.jsonl")
    assert len(trace) == 4 and all(t["elements"] == ["O", "H", "H"] for t in trace)

    # the server answers what DeepPot answers on the coordinates sander wrote (eV, eV/A)
    ref = [deeppot_eval(water_model, t["elements"], t["coord"]) for t in trace]
    for t, (e, f) in zip(trace, ref, strict=True):
        assert abs(t["energy"] - e) <= 1e-10 * abs(e)
        np.testing.assert_allclose(np.reshape(t["force"], (-1, 3)), f, rtol=0,
                                   atol=1e-10 * np.abs(f).max())

    # the energy sander prints (kcal/mol): mdout step k is request k (0 and 1 share coordinates)
    steps, printed = mdout_steps(tmp_path / "md.out"), mdout_energies(tmp_path / "md.out")
    assert steps == [0, 1, 2, 3] and len(printed) == 4
    for s, v in zip(steps, printed, strict=True):
        want = ref[s][0] * KCAL_PER_EV
        assert abs(v - want) <= 1e-6 * abs(want), (s, v, want)

    # the files sander read at the last step: energy (Hartree) and efield.dat (Hartree/bohr)
    elements, coord = _molecule(tmp_path / "old.qc_job.inp")
    e, f = deeppot_eval(water_model, elements, coord)
    log = (tmp_path / "old.qc_job.log").read_text()
    escf = float(re.search(r"^ SCF   energy.*= (\S+)", log, re.M).group(1))
    assert abs(escf - e / HARTREE_EV) <= 1e-12 * abs(escf)
    rows = (tmp_path / "old.efield.dat").read_text().splitlines()
    assert len(rows) == 3 and all(len(r) == 75 for r in rows)  # sander reads 3(f25.20)
    grad = np.array([[float(r[25 * k:25 * k + 25]) for k in range(3)] for r in rows])
    np.testing.assert_allclose(grad, -f * BOHR_A / HARTREE_EV, rtol=0,
                               atol=1e-12 * np.abs(f).max())

    # the forces sander applied (ntwf, float32): ours minus a zero-answer qchem's = DeepPot's
    run_zero_sander(*common, "-o", "zero.out", "-frc", "zero.frc", "-x", "zero.nc", cwd=tmp_path,
                    env=env)
    d = nc_forces(tmp_path / "ours.frc")[0] - nc_forces(tmp_path / "zero.frc")[0]
    want = ref[0][1] * KCAL_A_PER_EV_A
    scale = np.abs(want).max()
    assert scale > 20  # kcal/mol/A: the distortion makes float32 rounding of the totals small
    err = np.abs(d[:3] - want).max()
    assert err <= 1e-6 * scale, f"QM forces: max error {err:.2e} kcal/mol/A, scale {scale:.1f}"
    assert np.abs(d[3:]).max() == 0.0  # MM atoms: no force from the QM region (mechanical)
    print(f"\nwater: EXTERNESCF {printed[0]:.4f} kcal/mol = DeepPot {ref[0][0] * KCAL_PER_EV:.4f}; "
          f"sander's QM forces vs DeepPot: max error {err:.1e} of {scale:.1f} kcal/mol/A")


def test_water_nve(water_box, water_model, tmp_path):
    """300 steps (0.15 ps) of NVE: the total energy stays put while the QM energy moves."""
    env = env_for(tmp_path)
    (tmp_path / "nve.in").write_text(NVE)
    p = run_amber(water_model, "-O", "-i", "nve.in", "-o", "nve.out", "-p",
                  water_box / "water.prmtop", "-c", water_box / "water.inpcrd",
                  opts=["--trace", "trace.jsonl"], cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    out = tmp_path / "nve.out"
    steps = np.array(mdout_steps(out))
    etot, ekin = np.array(mdout_energies(out, "Etot")), np.array(mdout_energies(out, "EKtot"))
    eqm = np.array(mdout_energies(out, "EXTERNESCF"))
    keep = steps >= 10  # step 0 reports the unconstrained initial velocities
    t = steps[keep] * 0.0005
    slope = np.polyfit(t, etot[keep], 1)[0]
    drift, fluct = slope * (t[-1] - t[0]), etot[keep].std()
    # the water stays a water: the check is about a bound NN region, not a dissociating one
    for rec in read_trace(tmp_path / "trace.jsonl")[::25]:
        x = np.reshape(rec["coord"], (3, 3))
        assert 0.8 < np.linalg.norm(x[1] - x[0]) < 1.2 and 0.8 < np.linalg.norm(x[2] - x[0]) < 1.2
    print(f"\nNVE 300 x 0.5 fs: Etot drift {drift:+.4f} kcal/mol ({slope:+.3f} kcal/mol/ps), "
          f"Etot std {fluct:.4f}, EKtot std {ekin[keep].std():.3f}, "
          f"EXTERNESCF std {eqm[keep].std():.3f} kcal/mol")
    # a wrong sign, unit or missing force would let Etot follow the QM energy (or blow up)
    assert fluct < 0.2 * eqm[keep].std()
    assert fluct < 0.05 * ekin[keep].std()
    assert abs(drift) < 0.5

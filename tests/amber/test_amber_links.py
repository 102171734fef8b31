"""A QM region cut out of a molecule (alanine dipeptide, examples/md/amber/solute): sander caps
the two cut bonds with link hydrogens; the model sees them as H. What sander applies equals
DeepPot plus the link atoms' chain rule, and finite differences of sander's own single-point
energies (imin=5 over displaced frames) equal the forces it applies."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amber_helpers import (  # noqa: E402
    KCAL_A_PER_EV_A,
    KCAL_PER_EV,
    deeppot_eval,
    env_for,
    mdout_energies,
    nc_forces,
    read_inpcrd,
    read_trace,
    run_amber,
    run_zero_sander,
    write_inpcrd,
    write_nc_traj,
)

QMMM = """ &qmmm
  qmmask=':2@N,H,CA,HA,CB,HB1,HB2,HB3', qmcharge=0, spin=1, qm_theory='EXTERN', qmmm_int=5,
 /
 &qc
 /
"""
VACUUM = "ntb=0, igb=0, cut=999.0, ntpr=1, ifqnt=1,"
SINGLE_POINTS = f"single points of a trajectory\n &cntrl\n  imin=5, maxcyc=1, {VACUUM}\n /\n" + QMMM
FORCES = ("forces at the start\n &cntrl\n  imin=0, nstlim=1, dt=0.0005, tempi=0.0, ntwx=1, ntwf=1, "
          f"ioutfm=1, {VACUUM}\n /\n" + QMMM)
QM_ATOMS = list(range(6, 14))  # ALA N H CA HA CB HB1 HB2 HB3 (0-based)
LINKS = [(4, 6), (14, 8)]      # (MM host, QM host): ACE C - ALA N, ALA C - ALA CA
LINK_DIST = 1.09               # sander's lnk_dis default
H = 2.0 ** -6                  # exact in float32 on a 2^-10 grid


def _link_jacobian(x, mm, qm):
    """d(link position)/d(MM host position): r_L = r_Q + d (r_M - r_Q)/|r_M - r_Q|."""
    u = x[mm] - x[qm]
    n = u / np.linalg.norm(u)
    return LINK_DIST / np.linalg.norm(u) * (np.eye(3) - np.outer(n, n))


def test_link_atoms(dipeptide, chno, tmp_path):
    env = env_for(tmp_path)
    x, box = read_inpcrd(dipeptide / "dipeptide.inpcrd")
    x = np.round(x * 1024) / 1024  # float32-exact, so the displaced frames are exact too
    write_inpcrd(tmp_path / "base.inpcrd", x, box)
    prmtop = dipeptide / "dipeptide.prmtop"

    # forces sander applies at the start: ours minus a zero-answer qchem's (ntwf, float32)
    (tmp_path / "f.in").write_text(FORCES)
    args = ["-O", "-i", "f.in", "-p", prmtop, "-c", "base.inpcrd"]
    p = run_amber(chno, *args, "-o", "f.out", "-frc", "ours.frc", "-x", "ours.nc",
                  opts=["--trace", "f.jsonl"], cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    run_zero_sander(*args, "-o", "z.out", "-frc", "zero.frc", "-x", "zero.nc", cwd=tmp_path, env=env)
    applied = nc_forces(tmp_path / "ours.frc")[0] - nc_forces(tmp_path / "zero.frc")[0]

    # sander passes 8 QM atoms, then the 2 link atoms as H; the model sees exactly that
    t0 = read_trace(tmp_path / "f.jsonl")[0]
    assert t0["elements"] == ["N", "H", "C", "H", "C", "H", "H", "H", "H", "H"]
    coord = np.reshape(t0["coord"], (-1, 3))
    np.testing.assert_allclose(coord[:8], x[QM_ATOMS], atol=2e-7)  # vacuum: not recentred
    for k, (mm, qm) in enumerate(LINKS):
        u = x[mm] - x[qm]
        np.testing.assert_allclose(coord[8 + k], x[qm] + LINK_DIST * u / np.linalg.norm(u), atol=1e-6)
    e, f = deeppot_eval(chno, t0["elements"], coord)
    assert abs(mdout_energies(tmp_path / "f.out")[0] - e * KCAL_PER_EV) <= 1e-6 * abs(e * KCAL_PER_EV)

    # DeepPot's forces, link atoms folded by the chain rule onto their QM and MM hosts
    f = f * KCAL_A_PER_EV_A
    want = np.zeros_like(applied)
    want[QM_ATOMS] = f[:8]
    for k, (mm, qm) in enumerate(LINKS):
        on_mm = _link_jacobian(x, mm, qm) @ f[8 + k]
        want[mm] += on_mm
        want[qm] += f[8 + k] - on_mm
    scale = np.abs(want).max()
    err = np.abs(applied - want).max()
    assert err <= 1e-6 * scale, f"max error {err:.2e} kcal/mol/A of {scale:.2f}"

    # finite differences of sander's single-point QM energies (kcal/mol, 4 decimals printed)
    comps = [(10, 0), (6, 1), (4, 0), (4, 1), (14, 2), (18, 0)]  # CB, N, both MM hosts, NME C
    frames = [x]
    for a, k in comps:
        for s in (1, -1):
            y = x.copy()
            y[a, k] += s * H
            frames.append(y)
    write_nc_traj(tmp_path / "fd.nc", frames)
    (tmp_path / "sp.in").write_text(SINGLE_POINTS)
    p = run_amber(chno, "-O", "-i", "sp.in", "-o", "sp.out", "-p", prmtop, "-c", "base.inpcrd",
                  "-y", "fd.nc", cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    energies = mdout_energies(tmp_path / "sp.out")
    assert len(energies) == len(frames)
    fd = np.array([-(energies[1 + 2 * n] - energies[2 + 2 * n]) / (2 * H) for n in range(len(comps))])
    got = np.array([applied[a, k] for a, k in comps])
    print("\nlink atoms: FD of sander's EXTERNESCF vs its applied QM forces (kcal/mol/A):\n"
          + "\n".join(f"  atom {a + 1} {'xyz'[k]}: FD {d:+.4f}  applied {g:+.4f}"
                      for (a, k), d, g in zip(comps, fd, got, strict=True))
          + f"\n  applied vs DeepPot + chain rule: max error {err:.1e} of {scale:.2f}")
    assert fd[-1] == 0.0 and got[-1] == 0.0  # an MM atom that hosts no link atom
    assert np.abs(fd - got).max() <= 2e-3 * scale

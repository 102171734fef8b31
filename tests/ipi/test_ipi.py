"""`dpmd ipi` against the real i-PI server (PyPI ipi 3.3.1): the energy, forces and virial i-PI
reports on the first frame equal LAMMPS (pair_style deepmd, our plugin) and DeepPot on the same
frame; a 4-bead path-integral run served by two clients over TCP; bad input and a missing or
vanishing server give one line and exit 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from ipi_helpers import (
    BIN,
    client_input,
    dpmd,
    env,
    ipi_xml,
    read_props,
    run_ipi,
    unique_address,
    water_frame,
    write_lammps_data,
    write_xyz,
)

from deepmd_md.ipi import BOHR, HARTREE

ATOMS = (0, 1, 64, 191)  # O, O, H, H: forces i-PI prints with full digits


def _deeppot(model, q, h, names):
    from deepmd_md.infer import DeepPot

    t = np.array([0 if n == "O" else 1 for n in names])
    e, f, v = DeepPot(str(model)).eval((q * BOHR).reshape(1, -1), (h.T * BOHR).reshape(1, 9), t)
    return e[0, 0], f[0], v[0].reshape(3, 3)


def _one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dpmd: error: "), p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_units_are_codata():
    sc = pytest.importorskip("scipy.constants")
    assert BOHR == pytest.approx(sc.physical_constants["Bohr radius"][0] * 1e10, rel=1e-11)
    assert HARTREE == pytest.approx(sc.physical_constants["Hartree energy in eV"][0], rel=1e-11)


def test_classical_first_frame_equals_lammps(ipi_bin, model, lmp_env, tmp_path):
    """NVE on a triclinic water box over a unix socket: i-PI's potential, forces (four atoms)
    and virial at step 0 equal LAMMPS and DeepPot on the frame i-PI sent."""
    from lammps_helpers import run_driver

    names, q, h = water_frame()
    xyz = write_xyz(tmp_path / "conf.xyz", names, q, h)
    addr = unique_address("nve")
    props = "step, potential, " + ", ".join(f"atom_f(atom={a})" for a in ATOMS) + ", virial_md"
    cfg = client_input(tmp_path / "water.json", model, xyz, host=addr)
    srv, (client,) = run_ipi(tmp_path, ipi_xml("conf.xyz", props, steps=3, address=addr), [cfg])
    assert client[0] == 0, client
    assert srv[0] == 0, srv[1][-2000:]
    assert "i-PI sent EXIT after 4 evaluations" in client[1], client[1]
    assert not os.path.exists(f"/tmp/ipi_{addr}")
    row = read_props(tmp_path / "out.props")[0]
    assert row[0] == 0
    u_ipi, f_ipi, vir_ipi = row[1], row[2:2 + 3 * len(ATOMS)].reshape(-1, 3), row[-6:]

    data = write_lammps_data(tmp_path / "frame.lmp", q, h, names)
    res = run_driver({"commands": [
        "units metal", "boundary p p p", "atom_style atomic", "atom_modify map yes",
        f"read_data {data}", "mass 1 16", "mass 2 2", f"pair_style deepmd {model}",
        "pair_coeff * * O H", "compute dpvir all pressure NULL virial",
        "thermo_style custom step pe c_dpvir[1]"]}, tmp_path / "lmp", lmp_env)
    e_dp, f_dp, v_dp = _deeppot(model, q, h, names)
    f_lmp = np.array(res["f"])
    # LAMMPS = DeepPot on this frame
    assert abs(res["pe"] - e_dp) <= 1e-10 * abs(e_dp)
    np.testing.assert_allclose(f_lmp, f_dp, rtol=0, atol=1e-10 * np.abs(f_dp).max())
    # i-PI = LAMMPS, in i-PI's atomic units
    rel_u = abs(u_ipi - res["pe"] / HARTREE) / abs(res["pe"] / HARTREE)
    f_ref = f_lmp[list(ATOMS)] * (BOHR / HARTREE)
    rel_f = np.abs(f_ipi - f_ref).max() / np.abs(f_ref).max()
    vol = abs(np.linalg.det(h))
    v_ref = np.array(res["virial"])[[0, 1, 2, 3, 4, 5]] / HARTREE / vol  # xx yy zz xy xz yz
    rel_v = np.abs(vir_ipi - v_ref).max() / np.abs(v_ref).max()
    print(f"\nfirst frame, i-PI vs LAMMPS: U {u_ipi:.15e} Ha, rel {rel_u:.2e}; "
          f"forces rel {rel_f:.2e}; virial/V rel {rel_v:.2e}")
    assert rel_u <= 1e-8 and rel_f <= 1e-8 and rel_v <= 1e-8
    # the client's units, independently: virial = DeepPot's (symmetric) tensor in Hartree
    np.testing.assert_allclose(vir_ipi[:3], np.diag(v_dp) / HARTREE / vol, rtol=1e-8)


def test_path_integral_four_beads_two_clients_inet(ipi_bin, model, tmp_path):
    """4-bead PIMD (NVT, PILE-L) over TCP served by two clients in parallel: every bead energy
    is finite; at step 0 the beads sit on the input frame and equal DeepPot there, after it
    they spread."""
    import socket

    names, q, h = water_frame()
    xyz = write_xyz(tmp_path / "conf.xyz", names, q, h)
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    steps, nbeads = 3, 4
    xml = ipi_xml("conf.xyz", "step, potential, bead_potentials", steps=steps, nbeads=nbeads,
                  mode="inet", address="127.0.0.1", port=port, ensemble="nvt")
    cfgs = [client_input(tmp_path / f"c{i}.json", model, xyz, use_unix=False,
                         host="127.0.0.1", port=port, verbose=True) for i in range(2)]
    srv, clients = run_ipi(tmp_path, xml, cfgs)
    assert srv[0] == 0, srv[1][-2000:]
    for rc, out, err in clients:
        assert rc == 0, (out, err)
    evals = [int(out.split("i-PI sent EXIT after ")[1].split()[0]) for _, out, _ in clients]
    assert sum(evals) >= nbeads * (steps + 1), evals
    rows = read_props(tmp_path / "out.props")
    assert rows.shape == (steps + 1, 2 + nbeads)
    beads = rows[:, 2:]
    assert np.isfinite(beads).all()
    e_dp = _deeppot(model, q, h, names)[0] / HARTREE
    np.testing.assert_allclose(beads[0], e_dp, rtol=1e-10)
    assert np.ptp(beads[-1]) > 1e-8  # the beads moved apart
    np.testing.assert_allclose(rows[:, 1], beads.mean(1), rtol=1e-12)
    print(f"\nPIMD bead potentials (Ha), last step: {beads[-1]}; evaluations per client {evals}")


# -- bad input and missing servers -------------------------------------------------------------


def test_bad_inputs_one_line(model, tmp_path):
    names, q, h = water_frame()
    xyz = write_xyz(tmp_path / "conf.xyz", names, q, h)
    good = dict(graph_file=str(model), coord_file=str(xyz))
    cases = [
        ({"graph_file": None}, "missing required key 'graph_file'"),
        ({"graph_file": str(tmp_path / "none.pth")}, "'graph_file': file not found"),
        ({"atom_type": {"O": 0, "H": 1}, "gragh_file": "x"}, "unknown key 'gragh_file'"),
        ({"atom_type": {"O": 0}}, "atom name 'H'"),
        ({"atom_type": {"O": 0, "H": 5}}, "'atom_type/H' = 5 is outside the model's type_map"),
        ({"atom_type": {"O": "O", "H": "Cl"}}, "'atom_type/H' = 'Cl' is not in"),
        ({"port": 70000}, "'port': must be a TCP port"),
    ]
    for i, (over, needle) in enumerate(cases):
        cfg = {**good, **over}
        cfg = {k: v for k, v in cfg.items() if v is not None}
        p = client_input(tmp_path / f"bad{i}.json", model, xyz)
        p.write_text(json.dumps(cfg))
        _one_line_error(dpmd("ipi", p, "--wait", "0", cwd=tmp_path), needle)


def test_no_server_one_line(model, tmp_path):
    names, q, h = water_frame()
    xyz = write_xyz(tmp_path / "conf.xyz", names, q, h)
    unix = client_input(tmp_path / "unix.json", model, xyz, host=unique_address("none"))
    t0 = time.monotonic()
    _one_line_error(dpmd("ipi", unix, "--wait", "1", cwd=tmp_path),
                    "no i-PI server at unix socket /tmp/ipi_dpmd_test_", "after waiting 1 s")
    assert time.monotonic() - t0 < 30
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the with-block ends: nobody listens
    inet = client_input(tmp_path / "inet.json", model, xyz, use_unix=False, host="127.0.0.1",
                        port=port)
    _one_line_error(dpmd("ipi", inet, "--wait", "0", cwd=tmp_path),
                    f"no i-PI server at 127.0.0.1:{port} (inet)")


def test_server_killed_mid_run(ipi_bin, model, tmp_path):
    """i-PI killed (SIGKILL) while the client serves: the client stops with one line, exit 1."""
    names, q, h = water_frame()
    xyz = write_xyz(tmp_path / "conf.xyz", names, q, h)
    addr = unique_address("kill")
    (tmp_path / "input.xml").write_text(ipi_xml("conf.xyz", "step, potential", steps=100000,
                                                address=addr))
    cfg = client_input(tmp_path / "water.json", model, xyz, host=addr)
    log = open(tmp_path / "ipi.log", "w")
    server = subprocess.Popen([str(BIN / "i-pi"), "input.xml"], cwd=tmp_path, env=env(),
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = subprocess.Popen([str(BIN / "dpmd"), "ipi", str(cfg), "--wait", "60"],
                              cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in client.stdout:  # verbose: one line per evaluation
            if "evaluation 3 " in line:
                break
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        rc = client.wait(timeout=60)
        err = client.stderr.read()
    finally:
        for p in (server, client):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        log.close()
        if os.path.exists(f"/tmp/ipi_{addr}"):  # a killed i-PI leaves its socket file
            os.unlink(f"/tmp/ipi_{addr}")
    _one_line_error(subprocess.CompletedProcess([], rc, "", err),
                    "i-PI closed the connection without EXIT")


@pytest.mark.parametrize("xml", ["nvt.xml", "nve.xml", "pimd.xml"])
def test_example_inputs_run(ipi_bin, model, tmp_path, xml):
    """examples/md/ipi: each i-PI input with its water.json runs (2 steps, the tiny model)."""
    import re
    import shutil

    from ipi_helpers import REPO

    ex = REPO / "examples" / "md" / "ipi"
    addr = unique_address(xml.split(".")[0])
    text = (ex / xml).read_text()
    text = re.sub(r"<total_steps>\d+</total_steps>", "<total_steps>2</total_steps>", text)
    text = text.replace("<address>dpmd_water</address>", f"<address>{addr}</address>")
    shutil.copy(ex / "conf.xyz", tmp_path / "conf.xyz")
    cfg = json.loads((ex / "water.json").read_text())
    cfg.update(graph_file=str(model), host=addr)
    (tmp_path / "water.json").write_text(json.dumps(cfg))
    nbeads = int(re.search(r'nbeads="(\d+)"', text).group(1))
    srv, clients = run_ipi(tmp_path, text, [tmp_path / "water.json"])
    assert srv[0] == 0, srv[1][-2000:]
    assert clients[0][0] == 0, clients[0]
    assert f"i-PI sent EXIT after {3 * nbeads} evaluations" in clients[0][1], clients[0][1]
    rows = read_props(tmp_path / xml.replace(".xml", ".out"))  # prefix = the name
    assert rows.shape[0] == 1 and np.isfinite(rows).all()  # stride 10: step 0 only

"""Helpers of the i-PI client tests: i-PI inputs, running the real `i-pi` server beside our
`dpmd ipi` clients, reading i-PI's property files (a uniquely named module: several
conftest.py files in one session would shadow each other when imported by name)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WATER_LMP = REPO / "examples" / "md" / "water" / "water.lmp"


def water_frame(tilt=(1.3, -0.8, 0.6)):
    """The 192-atom water box of examples/md/water made triclinic (xy, xz, yz tilts in
    angstrom, atoms kept at their fractional positions) and expressed in bohr, i-PI's unit.

    Returns names [192] ('O'/'H'), q [192, 3] bohr, h [3, 3] bohr (i-PI's cell: vectors as
    columns, upper triangular)."""
    from deepmd_md.ipi import BOHR

    rows = np.loadtxt(WATER_LMP, skiprows=10, max_rows=192)
    names = np.where(rows[:, 1] == 1, "O", "H").tolist()
    edge = 12.4447
    cell = np.array([[edge, 0, 0], [tilt[0], edge, 0], [tilt[1], tilt[2], edge]])  # rows
    q = (rows[:, 2:5] / edge) @ cell / BOHR
    return names, q, cell.T / BOHR


def write_xyz(path: Path, names, q, h) -> Path:
    """An i-PI XYZ input in atomic units, digits enough to give i-PI these exact doubles."""
    lines = [str(len(names)),
             "# CELL(H): " + " ".join(f"{v:.17g}" for v in np.ravel(h))
             + " positions{atomic_unit} cell{atomic_unit}"]
    lines += [f"{n} {x:.17g} {y:.17g} {z:.17g}" for n, (x, y, z) in zip(names, q, strict=True)]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def write_lammps_data(path: Path, q_bohr, h_bohr, names) -> Path:
    """The same frame for LAMMPS (metal units): coordinates and box multiplied by BOHR exactly
    as the client does, written with 17 digits."""
    from deepmd_md.ipi import BOHR

    x = q_bohr.reshape(1, -1) * BOHR
    box = (h_bohr.T * BOHR).reshape(3, 3)
    lx, ly, lz, xy, xz, yz = box[0, 0], box[1, 1], box[2, 2], box[1, 0], box[2, 0], box[2, 1]
    out = ["# water frame from the i-PI test", "", f"{len(names)} atoms", "2 atom types",
           f"0.0 {lx:.17g} xlo xhi", f"0.0 {ly:.17g} ylo yhi", f"0.0 {lz:.17g} zlo zhi",
           f"{xy:.17g} {xz:.17g} {yz:.17g} xy xz yz", "", "Atoms # atomic", ""]
    for i, (n, p) in enumerate(zip(names, x.reshape(-1, 3), strict=True)):
        out.append(f"{i + 1} {1 if n == 'O' else 2} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}")
    Path(path).write_text("\n".join(out) + "\n")
    return Path(path)


def ipi_xml(xyz: str, properties: str, *, steps: int = 2, nbeads: int = 1,
            mode: str = "unix", address: str = "localhost", port: int = 31415,
            ensemble: str = "nve", temperature: float = 300.0) -> str:
    """An i-PI input: `steps` steps of `ensemble` (nve | nvt) on `nbeads` beads, properties
    every step to out.props with 17 digits; i-PI quits when a client disconnects."""
    thermo = ("" if ensemble == "nve" else
              '<thermostat mode="pile_l"><tau units="femtosecond">100</tau></thermostat>')
    return f"""<simulation verbosity="low" floatformat="%.17e">
  <output prefix="out">
    <properties stride="1" filename="props"> [ {properties} ] </properties>
  </output>
  <total_steps>{steps}</total_steps>
  <prng><seed>31415</seed></prng>
  <ffsocket name="dpmd" mode="{mode}" pbc="false">
    <address>{address}</address><port>{port}</port>
    <exit_on_disconnect>true</exit_on_disconnect>
  </ffsocket>
  <system>
    <initialize nbeads="{nbeads}">
      <file mode="xyz">{xyz}</file>
      <velocities mode="thermal" units="kelvin">{temperature}</velocities>
    </initialize>
    <forces><force forcefield="dpmd"/></forces>
    <ensemble><temperature units="kelvin">{temperature}</temperature></ensemble>
    <motion mode="dynamics">
      <dynamics mode="{ensemble}">
        <timestep units="femtosecond">0.25</timestep>
        {thermo}
      </dynamics>
    </motion>
  </system>
</simulation>
"""


def client_input(path: Path, model, xyz, **over) -> Path:
    """A dp_ipi-style input.json."""
    cfg = {"verbose": True, "use_unix": True, "host": "localhost", "port": 31415,
           "graph_file": str(model), "coord_file": str(xyz), "atom_type": {"O": 0, "H": 1}}
    cfg.update(over)
    Path(path).write_text(json.dumps(cfg, indent=1))
    return Path(path)


def env() -> dict:
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "1"
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return e


def dpmd(*args, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`dpmd ARGS...` to completion (stdout, stderr text)."""
    return subprocess.run([str(BIN / "dpmd"), *map(str, args)], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def unique_address(tag: str) -> str:
    return f"dpmd_test_{os.getpid()}_{tag}_{time.monotonic_ns() % 10**9}"


def run_ipi(cwd: Path, xml: str, client_jsons, timeout: float = 150):
    """Start the real i-PI server on `xml` in `cwd`, then one `dpmd ipi` per input in
    `client_jsons`; wait for all. Returns (i-PI (rc, output), [(rc, stdout, stderr)])."""
    cwd = Path(cwd)
    (cwd / "input.xml").write_text(xml)
    logs = [cwd / "ipi.log"] + [cwd / f"client{i}.{k}" for i in range(len(client_jsons))
                                for k in ("out", "err")]
    files = [open(f, "w") for f in logs]
    server = subprocess.Popen([str(BIN / "i-pi"), "input.xml"], cwd=cwd, env=env(),
                              stdout=files[0], stderr=subprocess.STDOUT, start_new_session=True)
    clients = [subprocess.Popen([str(BIN / "dpmd"), "ipi", str(j), "--wait", "60"], cwd=cwd,
                                env=env(), stdout=files[1 + 2 * i], stderr=files[2 + 2 * i],
                                start_new_session=True) for i, j in enumerate(client_jsons)]
    try:
        rcs = [c.wait(timeout=timeout) for c in clients]
        src = server.wait(timeout=60)
    finally:
        for p in (server, *clients):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for f in files:
            f.close()
    text = [f.read_text() for f in logs]
    return (src, text[0]), [(rc, text[1 + 2 * i], text[2 + 2 * i]) for i, rc in enumerate(rcs)]


def read_props(path: Path) -> np.ndarray:
    """i-PI's property file as [nrows, ncols] floats."""
    rows = [[float(v) for v in ln.split()] for ln in Path(path).read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    return np.array(rows)

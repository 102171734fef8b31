"""An i-PI socket client: i-PI integrates (classical or path-integral MD), we give energies,
forces and virials from a deepmd_md model (`dpmd ipi input.json`, as DeePMD-kit's `dp_ipi`).

The wire protocol (i-PI's documented driver protocol): every message starts with a 12-byte
ASCII header padded with spaces; numbers are native-endian int32 and float64; everything is in
atomic units (bohr, Hartree).

    server -> client            client -> server
    STATUS                      NEEDINIT (before INIT) | READY | HAVEDATA (after POSDATA)
    INIT  i4 bead, i4 n, n B    -
    POSDATA h[9] ih[9] i4 nat q[3 nat]
    GETFORCE                    FORCEREADY f8 U, i4 nat, f[3 nat], vir[9], i4 0 (no extras)
    EXIT                        -

`h` is i-PI's cell matrix with the cell vectors as columns, sent row by row (so the rows of
h.T are the vectors, as our boxes store them); `ih` its inverse (unused). The virial is
-sum_i r_i (x) dU/dr_i (the convention i-PI's pressure uses, DeePMD's too), sent row by row.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time

import numpy as np

from deepmd_md.config import load_config
from deepmd_md.config.schema import Arg, normalize_tree
from deepmd_md.errors import ConfigError, DPMDError

# CODATA 2022 (scipy.constants 1.17): i-PI rounds them to 8 digits in its own unit
# conversions, a 1e-7 relative difference for energies it prints in electronvolt
BOHR = 0.529177210544  # angstrom per bohr
HARTREE = 27.211386245981  # eV per Hartree

HDRLEN = 12
SOCKET_PREFIX = "/tmp/ipi_"  # i-PI's unix sockets live at /tmp/ipi_<address>


class IPIError(DPMDError):
    """The i-PI server is not there, went away, or sent something this client cannot serve."""


def _port(v) -> str | None:
    return None if 1 <= v <= 65535 else "must be a TCP port in 1..65535"


def _atom_type(v) -> str | None:
    for name, t in v.items():
        if isinstance(t, bool) or not isinstance(t, int | str):
            return (f"'{name}' maps to {t!r}; give a type index (int) or a type name of the "
                    "model's type_map (str)")
    return None


ARGS = (
    Arg("verbose", "bool", False, "print one line per evaluation (bead, energy, time)"),
    Arg("use_unix", "bool", False,
        "true: a unix domain socket /tmp/ipi_<host> (i-PI's `mode=\"unix\"`, `port` unused); "
        "false: an internet socket host:port (`mode=\"inet\"`)"),
    Arg("port", "int", 31415, "the TCP port, as `<port>` of i-PI's `<ffsocket>`", check=_port),
    Arg("host", "str", "localhost",
        "the host name (inet), or the socket name (unix), as `<address>` of i-PI's `<ffsocket>`"),
    Arg("graph_file", "str", doc="the model: any frozen format deepmd_md reads (.pth, .pt2, .dp, "
        "a checkpoint)"),
    Arg("coord_file", "str", doc="an XYZ file whose atom names (first column; coordinates are "
        "ignored) give the atom order i-PI uses"),
    Arg("atom_type", "dict", None,
        "atom name in coord_file -> model type: an index into the model's type_map or a type "
        "name; default: the names are the model's type names", check=_atom_type),
)


def load_input(path: str | os.PathLike) -> dict:
    """The checked input.json of `dpmd ipi` (ConfigError naming the key on any bad key)."""
    data = load_config(path)  # the JSON checks every input file gets
    cfg = normalize_tree(data, ARGS)
    for key in ("graph_file", "coord_file"):
        if not os.path.isfile(cfg[key]):
            raise ConfigError(f"'{key}': file not found: {cfg[key]}")
    return cfg


def xyz_names(path: str) -> list[str]:
    """The atom names of the first frame of an XYZ file (first column of each atom line)."""
    with open(path) as f:
        lines = f.read().splitlines()
    try:
        nat = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise ConfigError(f"{path}: not an XYZ file (the first line must be the atom count)") \
            from None
    body = lines[2:2 + nat]
    if len(body) < nat or any(not ln.split() for ln in body):
        raise ConfigError(f"{path}: announces {nat} atoms but lists {sum(map(bool, body))}")
    return [ln.split()[0] for ln in body]


def atom_types(names: list[str], atom_type: dict | None, type_map: list[str],
               source: str = "coord_file") -> np.ndarray:
    """Model type index [nat] of each atom name, by `atom_type` (name -> index | type name)."""
    rule = atom_type if atom_type is not None else {t: t for t in type_map}
    index = {}
    for name, t in rule.items():
        if isinstance(t, str):
            if t not in type_map:
                raise ConfigError(f"'atom_type/{name}' = '{t}' is not in the model's type_map "
                                  f"{type_map}")
            index[name] = type_map.index(t)
        elif not 0 <= t < len(type_map):
            raise ConfigError(f"'atom_type/{name}' = {t} is outside the model's type_map "
                              f"{type_map} (valid: 0..{len(type_map) - 1})")
        else:
            index[name] = t
    for i, name in enumerate(names):
        if name not in index:
            what = "'atom_type'" if atom_type is not None else f"the model's type_map {type_map}"
            raise ConfigError(f"atom name '{name}' ({source}, atom {i + 1}) is not in {what}; "
                              f"known names: {', '.join(index)}")
    return np.array([index[n] for n in names], dtype=np.int64)


class Potential:
    """A DeepPot in i-PI's units: evaluate(h [3, 3] bohr, q [nat, 3] bohr) ->
    (U Hartree, f [nat, 3] Hartree/bohr, virial [3, 3] Hartree)."""

    def __init__(self, model: str, atype: np.ndarray | None = None):
        from deepmd_md.infer import DeepPot

        self.dp = DeepPot(model)
        self.atype = atype  # [nat] model type indices

    def evaluate(self, h: np.ndarray, q: np.ndarray):
        coord = q.reshape(1, -1) * BOHR
        # a cell of zero or negative volume is no cell: i-PI sends -1 x identity when its input
        # gives none
        box = None if np.linalg.det(h) <= 0 else (h.T * BOHR).reshape(1, 9)
        e, f, v = self.dp.eval(coord, box, self.atype)
        return (float(e[0, 0]) / HARTREE, f[0] * (BOHR / HARTREE),
                v[0].reshape(3, 3) / HARTREE)


def connect(cfg: dict, wait: float) -> tuple[socket.socket, str]:
    """A socket connected to the i-PI server of `cfg`, retried for `wait` seconds (i-PI takes a
    moment to open it); IPIError with one line if none answers."""
    if cfg["use_unix"]:
        where = SOCKET_PREFIX + cfg["host"]
        family, address = socket.AF_UNIX, where
        what = f"unix socket {where}"
    else:
        where = f"{cfg['host']}:{cfg['port']}"
        try:
            family, _, _, _, address = socket.getaddrinfo(cfg["host"], cfg["port"],
                                                          type=socket.SOCK_STREAM)[0]
        except socket.gaierror as e:
            raise IPIError(f"cannot resolve host '{cfg['host']}': {e.strerror}") from None
        what = f"{where} (inet)"
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.connect(address)
            break
        except OSError as e:
            sock.close()
            if time.monotonic() >= deadline:
                raise IPIError(
                    f"no i-PI server at {what} ({e.strerror or e}) after waiting {wait:g} s; "
                    "start `i-pi input.xml` first and match its <ffsocket> mode/address/port "
                    "(use_unix, host, port)") from None
            time.sleep(0.2)
    if family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small messages, no batching
    return sock, what


class _Closed(Exception):
    pass


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise _Closed
        got += k
    return bytes(buf)


def _header(name: str) -> bytes:
    return name.ljust(HDRLEN).encode()


def serve(sock: socket.socket, pot: Potential, nat: int, verbose: bool = False,
          log=sys.stdout) -> int:
    """Answer i-PI on `sock` until it sends EXIT; returns the number of evaluations."""
    initialized, result, count = False, None, 0
    bead = -1
    try:
        while True:
            msg = _recv(sock, HDRLEN).decode("ascii", "replace").strip()
            if msg == "STATUS":
                reply = ("NEEDINIT" if not initialized else
                         "HAVEDATA" if result is not None else "READY")
                sock.sendall(_header(reply))
            elif msg == "INIT":
                bead, n = np.frombuffer(_recv(sock, 8), dtype=np.int32)
                pars = _recv(sock, int(n)).decode("utf-8", "replace")
                m = re.search(r"batch_size\s*:\s*(\d+)", pars)
                if m and int(m.group(1)) > 1:
                    raise IPIError(f"i-PI asks for batches of {m.group(1)} structures; this "
                                   "client takes one at a time: drop <batch_size> from the "
                                   "<ffsocket>")
                initialized = True
            elif msg == "POSDATA":
                cell = np.frombuffer(_recv(sock, 144), dtype=np.float64)
                n = int(np.frombuffer(_recv(sock, 4), dtype=np.int32)[0])
                q = np.frombuffer(_recv(sock, 24 * n), dtype=np.float64).reshape(n, 3)
                if n != nat:
                    raise IPIError(f"i-PI sent {n} atoms but coord_file lists {nat}; give the "
                                   "same configuration to both (and no <activelist>)")
                t0 = time.perf_counter()
                result = pot.evaluate(cell[:9].reshape(3, 3), q)
                count += 1
                if verbose:
                    print(f"dpmd ipi: evaluation {count} bead {int(bead)}: "
                          f"U = {result[0] * HARTREE:.10f} eV "
                          f"({(time.perf_counter() - t0) * 1e3:.1f} ms)", file=log, flush=True)
            elif msg == "GETFORCE":
                if result is None:
                    raise IPIError("i-PI asked for forces before sending positions")
                u, f, vir = result
                sock.sendall(_header("FORCEREADY") + np.float64(u).tobytes()
                             + np.int32(nat).tobytes() + np.ascontiguousarray(f).tobytes()
                             + np.ascontiguousarray(vir).tobytes() + np.int32(0).tobytes())
                result = None
            elif msg == "EXIT":
                return count
            else:
                raise IPIError(f"unexpected message from i-PI: {msg!r}")
    except (_Closed, ConnectionResetError, BrokenPipeError) as e:
        why = "" if isinstance(e, _Closed) else f", {e.strerror or e}"
        raise IPIError(f"i-PI closed the connection without EXIT after {count} evaluations "
                       f"(server stopped or crashed{why}; see its output)") from None


def run(input_json: str, wait: float = 10.0) -> int:
    """`dpmd ipi`: load the input and the model, connect, serve until EXIT."""
    cfg = load_input(input_json)
    names = xyz_names(cfg["coord_file"])
    if cfg["atom_type"] is not None:  # before the (slower) model load
        unknown = [(i, n) for i, n in enumerate(names) if n not in cfg["atom_type"]]
        if unknown:
            i, n = unknown[0]
            raise ConfigError(f"atom name '{n}' ({cfg['coord_file']}, atom {i + 1}) is not in "
                              f"'atom_type'; known names: {', '.join(cfg['atom_type'])}")
    pot = Potential(cfg["graph_file"])
    pot.atype = atom_types(names, cfg["atom_type"], pot.dp.get_type_map())
    sock, what = connect(cfg, wait)
    print(f"dpmd ipi: connected to {what}; {len(names)} atoms, model {cfg['graph_file']}",
          flush=True)
    try:
        count = serve(sock, pot, len(names), cfg["verbose"])
    finally:
        sock.close()
    print(f"dpmd ipi: i-PI sent EXIT after {count} evaluations", flush=True)
    return 0

"""dpmd_input.exchange (C API 3) at the C level, without LAMMPS: a periodic frame is split by
hand into two domains (x < L/2, x >= L/2), each evaluated by its own dpmd_model on its own
thread, concurrently, with a Python ghost exchange between them (forward: ghosts take their
owners' rows; reverse: ghost rows add into their owners'). The two domains' energies, virials
and folded forces equal the whole-system DeepPot answer, for DPA-2 and DPA-3. Also: the clear
errors for a missing, incomplete or unsized input, and a wrong exchange changes the energy
(the model really uses the exchanged rows)."""

from __future__ import annotations

import ctypes
import itertools
import threading

import numpy as np
import pytest
from capi import DP, IP, Exchange, Input, Output, load_core
from capi import EXCHANGE_FN as XFN
from helpers import make_model, random_frames, tiny_descriptors

from deepmd_md.lmp import native_lib

LIB = native_lib("libdpmd_core.so")
if LIB is None:
    pytest.skip("libdpmd_core.so is not built", allow_module_level=True)

TOL = 1e-10  # relative to max(1, largest component)
SKIN = 0.5  # ghosts and neighbor lists reach rcut + SKIN, as an engine's would
BOX = np.diag([9.0, 6.0, 6.0]).ravel()  # each half (4.5 A) is wider than rcut (3.5 A)
WAIT = 60.0  # seconds: a broken exchange fails instead of hanging

@pytest.fixture(scope="module", params=["dpa2:small", "dpa3:default"])
def frozen(request, tmp_path_factory):
    from deepmd_md.backends.torch.freeze import freeze_pth

    data = make_model(desc=tiny_descriptors()[request.param])
    path = tmp_path_factory.mktemp("exchange") / "m.pth"
    freeze_pth(data, str(path))
    return data, path


def decompose(coord, box, rcut):
    """Two domains by fractional x: per domain its rows (local atoms by global index, then every
    periodic image within rcut + SKIN of a local atom), their owners and the full neighbor list."""
    cell = box.reshape(3, 3)
    shift = np.array(list(itertools.product((-1, 0, 1), repeat=3)))
    img = coord[None] + (shift @ cell)[:, None]  # [27, nat, 3]
    zero = int(np.flatnonzero((shift == 0).all(1))[0])
    fx = (coord[:, 0] / cell[0, 0]) % 1.0
    doms = []
    for loc in (np.flatnonzero(fx < 0.5), np.flatnonzero(fx >= 0.5)):
        near = np.linalg.norm(img[:, :, None] - coord[loc], axis=-1).min(-1) < rcut + SKIN
        near[zero, loc] = False  # the local atoms themselves
        s, g = np.nonzero(near)
        pos = np.concatenate([coord[loc], img[s, g]])
        r = np.linalg.norm(pos[: len(loc), None] - pos[None], axis=-1)
        r[np.arange(len(loc)), np.arange(len(loc))] = np.inf
        doms.append({"coord": np.ascontiguousarray(pos), "owner": np.concatenate([loc, g]),
                     "nloc": len(loc),
                     "nlist": [np.flatnonzero(row < rcut + SKIN).astype(np.int32) for row in r]})
    return doms


def compute(lib, model, dom, atype, exchange=None, mapping=None, size=None):
    """One dpmd_compute on a domain: (rc, error, energy, force rows, virial)."""
    nloc, nall = dom["nloc"], len(dom["owner"])
    coord = dom["coord"].ravel()
    types = np.ascontiguousarray(atype[dom["owner"]], dtype=np.int32)
    ilist = np.arange(nloc, dtype=np.int32)
    numneigh = np.array([len(n) for n in dom["nlist"]], dtype=np.int32)
    first = (IP * nloc)(*[n.ctypes.data_as(IP) for n in dom["nlist"]])
    force = np.zeros(nall * 3)
    inp = Input(ctypes.sizeof(Input) if size is None else size, nloc, nall - nloc,
                coord.ctypes.data_as(DP), types.ctypes.data_as(IP), nloc,
                ilist.ctypes.data_as(IP), numneigh.ctypes.data_as(IP), first,
                BOX.ctypes.data_as(DP), None, None,
                None if mapping is None else mapping.ctypes.data_as(IP),
                None if exchange is None else ctypes.pointer(exchange))
    out = Output(ctypes.sizeof(Output), 0.0)
    out.force = force.ctypes.data_as(DP)
    rc = lib.dpmd_compute(model, ctypes.byref(inp), ctypes.byref(out))
    err = lib.dpmd_last_error().decode()  # thread-local: read on the calling thread
    return rc, err, out.energy, force.reshape(nall, 3), np.array(out.virial[:])


def run_domains(lib, models, doms, atype, nat, wrong=False):
    """Both domains at once, one thread each, exchanging through shared arrays."""
    barrier, lock = threading.Barrier(2, timeout=WAIT), threading.Lock()
    table, acc = {}, [None, None]  # forward: global rows by ncol; reverse: per-domain sums
    counts, widths, errors, results = [[0, 0], [0, 0]], [], [], [None, None]
    # wrong: a ghost takes the row of the next atom instead of its owner's
    source = np.roll(np.arange(nat), -1) if wrong else np.arange(nat)

    def callbacks(d):
        own, nloc = doms[d]["owner"], doms[d]["nloc"]
        nall = len(own)

        def guard(fn):
            def call(ctx, rows, ncol):
                try:
                    fn(np.ctypeslib.as_array(rows, shape=(nall, ncol)), ncol)
                    return 0
                except Exception as e:  # an exception cannot cross the C frames: report it
                    errors.append(f"domain {d}: {e!r}")
                    barrier.abort()
                    return 1
            return XFN(call)

        def forward(rows, ncol):
            with lock:
                glob = table.setdefault(ncol, np.zeros((nat, ncol)))
            glob[own[:nloc]] = rows[:nloc]  # each atom is local in exactly one domain
            barrier.wait()
            rows[nloc:] = glob[source[own[nloc:]]]
            barrier.wait()  # nobody overwrites glob before both have read it
            counts[d][0] += 1
            widths.append(ncol)

        def reverse(rows, ncol):
            acc[d] = np.zeros((nat, ncol))  # safe: the other domain is done with the last one
            np.add.at(acc[d], own[nloc:], rows[nloc:])
            barrier.wait()
            rows[:nloc] += acc[0][own[:nloc]] + acc[1][own[:nloc]]
            barrier.wait()
            counts[d][1] += 1

        return guard(forward), guard(reverse)

    fns = [callbacks(d) for d in range(2)]  # referenced until both threads are joined
    ex = [Exchange(ctypes.sizeof(Exchange), None, *fns[d]) for d in range(2)]

    def work(d):
        results[d] = compute(lib, models[d], doms[d], atype, exchange=ex[d])
        if results[d][0] != 0:
            barrier.abort()  # release the other domain

    threads = [threading.Thread(target=work, args=(d,), daemon=True) for d in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * WAIT)
    assert not any(t.is_alive() for t in threads), "the exchange hung"
    assert not errors, errors
    for d in range(2):
        assert results[d][0] == 0, f"domain {d}: {results[d][1]}"
    return results, counts, widths


def _close(actual, desired, what):
    scale = max(1.0, float(np.max(np.abs(desired))))
    err = float(np.max(np.abs(np.asarray(actual) - desired)))
    assert err <= TOL * scale, f"{what}: max |diff| {err:.3g} (scale {scale:.3g})"


def _setup(frozen):
    from deepmd_md.model.model import rcut_of

    data, path = frozen
    coord, atype, box = random_frames(24, BOX, seed=5, min_dist=0.9)
    coord, atype = coord[0], atype[0]
    doms = decompose(coord, box[0], rcut_of(data["config"]))
    assert all(d["nloc"] > 0 and len(d["owner"]) > d["nloc"] for d in doms)
    lib = load_core()
    models = [lib.dpmd_model_load(str(path).encode()) for _ in range(2)]
    assert all(models), lib.dpmd_last_error().decode()
    return lib, models, doms, coord, atype


def test_two_domains_equal_whole_system(frozen):
    from deepmd_md.infer.deep_pot import DeepPot

    lib, models, doms, coord, atype = _setup(frozen)
    try:
        for m in models:
            assert lib.dpmd_model_message_passing(m) == 1
            assert lib.dpmd_model_supports_exchange(m) == 1
        width = lib.dpmd_model_exchange_width(models[0])
        res, counts, widths = run_domains(lib, models, doms, atype, len(atype))
        # collective: both domains exchanged, equally often, within the advertised width
        assert counts[0] == counts[1] and min(counts[0]) > 0, counts
        assert 0 < max(widths) <= width, (widths, width)
        e, f, v = DeepPot(str(frozen[1])).eval(coord.reshape(1, -1), BOX.reshape(1, 9), atype)
        assert np.max(np.abs(f[0])) > 1e-3, "trivial forces prove nothing"
        force = np.zeros_like(coord)
        for dom, r in zip(doms, res, strict=True):
            np.add.at(force, dom["owner"], r[3])  # ghost forces fold onto their owners
        _close(res[0][2] + res[1][2], e[0, 0], "energy")
        _close(force, f[0], "forces")
        _close(res[0][4] + res[1][4], v[0], "virial")
        # the model reads the exchanged rows: a wrong exchange changes the energy
        wrong, _, _ = run_domains(lib, models, doms, atype, len(atype), wrong=True)
        assert abs(wrong[0][2] + wrong[1][2] - e[0, 0]) > 1e-9, "the exchanged rows are unused"
    finally:
        for m in models:
            lib.dpmd_model_free(m)


def test_exchange_errors(frozen):
    lib, models, doms, _, atype = _setup(frozen)
    dom = doms[0]
    try:
        rc, err, *_ = compute(lib, models[0], dom, atype)
        assert rc != 0 and "dpmd_input.exchange" in err, err
        noop = XFN(lambda ctx, rows, ncol: 0)
        for ex in (Exchange(0, None, noop, noop),
                   Exchange(ctypes.sizeof(Exchange), None, XFN(), noop)):  # NULL forward
            rc, err, *_ = compute(lib, models[0], dom, atype, exchange=ex)
            assert rc != 0 and "dpmd_input.exchange is incomplete" in err, err
        full = Exchange(ctypes.sizeof(Exchange), None, noop, noop)
        rc, err, *_ = compute(lib, models[0], dom, atype, exchange=full, size=0)
        assert rc != 0 and "DPMD_INPUT_INIT" in err, err
    finally:
        for m in models:
            lib.dpmd_model_free(m)

"""A message-passing model (DPA-3, tiny) through deepmd_md's DeePMD-kit C API, called with ctypes:
the library's own images (DP_DeepPotCompute with a cell), and the engine's images and list with
each ghost's owner given by DP_NlistSetMapping (as LAMMPS gives DeePMD-kit on one rank) equal
DeepPot to 1e-10; without the mapping CheckOK says how to give it."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from helpers import ORTHO_BOX, PT2_MESSAGE_PASSING, make_model, random_frames, tiny_descriptors

pytest.importorskip("torch")

TOL = 1e-10
DP = ctypes.POINTER(ctypes.c_double)
IP = ctypes.POINTER(ctypes.c_int)


def _ptr(a: np.ndarray, kind=DP):
    return a.ctypes.data_as(kind)


def _bind(path) -> ctypes.CDLL:
    so = ctypes.CDLL(str(path))
    so.DP_NewDeepPot.restype = ctypes.c_void_p
    so.DP_NewDeepPot.argtypes = [ctypes.c_char_p]
    so.DP_DeepPotCheckOK.restype = ctypes.c_void_p
    so.DP_DeepPotCheckOK.argtypes = [ctypes.c_void_p]
    so.DP_DeleteChar.argtypes = [ctypes.c_void_p]
    so.DP_DeepPotGetCutoff.restype = ctypes.c_double
    so.DP_DeepPotGetCutoff.argtypes = [ctypes.c_void_p]
    so.DP_DeepPotCompute.argtypes = [ctypes.c_void_p, ctypes.c_int, DP, IP, DP, DP, DP, DP, DP, DP]
    so.DP_NewNlist.restype = ctypes.c_void_p
    so.DP_NewNlist.argtypes = [ctypes.c_int, IP, IP, ctypes.POINTER(IP)]
    so.DP_NlistSetMapping.argtypes = [ctypes.c_void_p, IP]
    so.DP_DeleteNlist.argtypes = [ctypes.c_void_p]
    so.DP_DeepPotComputeNList.argtypes = [ctypes.c_void_p, ctypes.c_int, DP, IP, DP, ctypes.c_int,
                                          ctypes.c_void_p, ctypes.c_int, DP, DP, DP, DP, DP]
    so.DP_DeleteDeepPot.argtypes = [ctypes.c_void_p]
    return so


def _check(so, dp) -> str:
    p = so.DP_DeepPotCheckOK(dp)
    msg = ctypes.string_at(p).decode()
    so.DP_DeleteChar(p)
    return msg


def _close(actual, desired, what):
    err = np.max(np.abs(np.asarray(actual) - np.asarray(desired)))
    assert err <= TOL * max(1.0, np.max(np.abs(desired))), f"{what}: max error {err:.3g}"


def test_message_passing_model(lib, tmp_path):
    from deepmd_md.backends.torch.freeze import freeze_pth
    from deepmd_md.data.neighbor import extend_coord, neighbor_candidates
    from deepmd_md.infer import DeepPot

    path = tmp_path / "dpa3.pth"
    freeze_pth(make_model(desc=tiny_descriptors()[PT2_MESSAGE_PASSING]), str(path))
    coord, atype, box = random_frames(12, ORTHO_BOX, seed=5, min_dist=1.2)
    c, b = coord[0].copy(), box[0].copy()
    t = atype[0].astype(np.intc)
    n = len(t)
    e_ref, f_ref, v_ref = (x[0] for x in DeepPot(str(path)).eval(c[None], b[None], t))

    so = _bind(lib)
    dp = so.DP_NewDeepPot(str(path).encode())
    assert _check(so, dp) == ""
    e, f, v = ctypes.c_double(), np.zeros(3 * n), np.zeros(9)
    so.DP_DeepPotCompute(dp, n, _ptr(c), _ptr(t, IP), _ptr(b), ctypes.byref(e), _ptr(f), _ptr(v), None, None)
    assert _check(so, dp) == ""
    _close([e.value], e_ref, "library images: energy")
    _close(f, f_ref.ravel(), "library images: force")
    _close(v, v_ref, "library images: virial")

    # the engine's images (local atoms first) and list, with 0.5 A of skin
    rc = so.DP_DeepPotGetCutoff(dp) + 0.5
    ext, ext_t, mapping, _ = extend_coord(c[None], t[None], b[None], rc)
    ext, ext_t, mapping = ext[0].copy(), ext_t[0].astype(np.intc), mapping[0].astype(np.intc)
    raw = neighbor_candidates(ext[None], n, rc)[0]
    rows = [np.ascontiguousarray(r[r >= 0], dtype=np.intc) for r in raw]
    ilist, numneigh = np.arange(n, dtype=np.intc), np.array([len(r) for r in rows], dtype=np.intc)
    first = (IP * n)(*[_ptr(r, IP) for r in rows])
    nall = len(ext_t)
    fext = np.zeros(3 * nall)
    for with_mapping in (True, False):
        nl = so.DP_NewNlist(n, _ptr(ilist, IP), _ptr(numneigh, IP), first)
        if with_mapping:
            so.DP_NlistSetMapping(nl, _ptr(mapping, IP))
        so.DP_DeepPotComputeNList(dp, nall, _ptr(ext.ravel()), _ptr(ext_t, IP), _ptr(b), nall - n, nl, 0,
                                  ctypes.byref(e), _ptr(fext), _ptr(v), None, None)
        so.DP_DeleteNlist(nl)
        msg = _check(so, dp)
        if with_mapping:
            assert msg == ""
            folded = np.zeros((n, 3))
            np.add.at(folded, mapping, fext.reshape(-1, 3))
            _close([e.value], e_ref, "engine images + mapping: energy")
            _close(folded, f_ref, "engine images + mapping: force")
            _close(v, v_ref, "engine images + mapping: virial")
        else:
            assert "message" in msg and "DP_NlistSetMapping" in msg, msg
    so.DP_DeleteDeepPot(dp)

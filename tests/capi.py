"""ctypes mirror of the C API (core/include/dpmd_c.h, version 3) for tests that call the core
directly, without an engine."""

from __future__ import annotations

import ctypes

from deepmd_md.lmp import native_lib

DP, IP = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int)
EXCHANGE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, DP, ctypes.c_int)


class Exchange(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("ctx", ctypes.c_void_p),
                ("forward", EXCHANGE_FN), ("reverse", EXCHANGE_FN)]


class Input(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("nloc", ctypes.c_int), ("nghost", ctypes.c_int),
                ("coord", DP), ("atype", IP), ("inum", ctypes.c_int), ("ilist", IP),
                ("numneigh", IP), ("firstneigh", ctypes.POINTER(IP)), ("box", DP),
                ("fparam", DP), ("aparam", DP), ("mapping", IP),
                ("exchange", ctypes.POINTER(Exchange)), ("ghost_cutoff", ctypes.c_double)]

    def __init__(self, *args, **kw):  # size defaults to sizeof (DPMD_INPUT_INIT)
        if not args and "size" not in kw:
            kw["size"] = ctypes.sizeof(Input)
        super().__init__(*args, **kw)


class Output(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("energy", ctypes.c_double),
                ("virial", ctypes.c_double * 9), ("force", DP), ("atom_energy", DP),
                ("atom_virial", DP)]

    def __init__(self, *args, **kw):  # size defaults to sizeof (DPMD_OUTPUT_INIT)
        if not args and "size" not in kw:
            kw["size"] = ctypes.sizeof(Output)
        super().__init__(*args, **kw)


def load_core():
    """libdpmd_core.so with the signatures the tests use, or None when it is not built."""
    path = native_lib("libdpmd_core.so")
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    lib.dpmd_model_load.restype = ctypes.c_void_p
    lib.dpmd_model_load.argtypes = [ctypes.c_char_p]
    lib.dpmd_last_error.restype = ctypes.c_char_p
    lib.dpmd_compute.argtypes = [ctypes.c_void_p, ctypes.POINTER(Input), ctypes.POINTER(Output)]
    lib.dpmd_model_free.argtypes = [ctypes.c_void_p]
    for name in ("dpmd_model_message_passing", "dpmd_model_exchange_width",
                 "dpmd_model_supports_exchange"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.dpmd_model_receptive_field.argtypes = [ctypes.c_void_p]
    lib.dpmd_model_receptive_field.restype = ctypes.c_double
    return lib

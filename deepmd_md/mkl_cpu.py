"""MKL's kernel choice on AMD CPUs, made before PyTorch or Paddle is imported.

MKL (inside the torch and paddle wheels) sends every BLAS call on a non-Intel CPU to its generic
branch: fp64 GEMMs at about half the speed of its AVX2/AVX-512 branch on the AMD EPYC we measure
on (docs/performance.md, "MKL on AMD CPUs"). libdpmd_mkl_cpu.so (core/src/mkl_cpu.cc) answers
MKL's vendor question from the CPU's cpuid; loaded into the global symbol scope before the
framework's libraries, it is the definition MKL's lookup finds, and MKL then chooses by the CPU's
features as it does on Intel. Loading it after `import torch` has no effect (torch initialises
MKL on import). DPMD_MD_MKL_AMD=0 turns it off; the C++ core's torch and Paddle backends carry
the same function (LAMMPS, AMBER).
"""

from __future__ import annotations

import os
import platform

LIB = "libdpmd_mkl_cpu.so"
_state = {"loaded": None}


def load() -> bool:
    """Load the library globally (once; a no-op off x86-64 Linux or when the library is not
    built). Returns whether it is loaded."""
    if _state["loaded"] is None:
        _state["loaded"] = False
        # DPMD_MD_MKL_AMD=0 is read by the library itself (one place for the switch)
        if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
            import ctypes

            from deepmd_md.lmp import native_lib

            path = native_lib(LIB)
            if path is not None:
                try:
                    ctypes.CDLL(str(path), mode=os.RTLD_GLOBAL)
                    _state["loaded"] = True
                except OSError:
                    pass
    return _state["loaded"]

"""MKL's kernel branch on AMD CPUs (deepmd_md/mkl_cpu.py, core/src/mkl_cpu.cc).

MKL reports the code branch it chose (mkl_serv_cbwr_get_auto_branch, exported by the torch and
paddle wheels' MKL): 2 is its generic ("compatible") branch, which it takes on any non-Intel CPU
unless our vendor answer is found first. Checked in fresh processes, for Python (torch, paddle)
and for the C++ core's torch backend as LAMMPS loads it (no deepmd_md import in that process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepmd_md.lmp import native_lib
from tests.helpers import make_model

GENERIC = 2  # MKL_CBWR_COMPATIBLE


def _cpu() -> tuple[str, set]:
    vendor, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id") and not vendor:
                vendor = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return vendor, flags


VENDOR, FLAGS = _cpu()
pytestmark = [
    pytest.mark.skipif(VENDOR not in ("AuthenticAMD", "GenuineIntel") or "avx2" not in FLAGS,
                       reason="MKL's vendor check matters on x86-64 CPUs with AVX2 only"),
    pytest.mark.skipif(native_lib("libdpmd_mkl_cpu.so") is None,
                       reason="libdpmd_mkl_cpu.so not built"),
]

BRANCH = """
import ctypes, os, importlib.util as u
def branch(module, lib):
    d = os.path.dirname(u.find_spec(module).origin)
    return ctypes.CDLL(os.path.join(d, lib)).mkl_serv_cbwr_get_auto_branch()
"""

PY = BRANCH + """
import deepmd_md, torch
(torch.ones(64, 64, dtype=torch.float64) @ torch.ones(64, 64, dtype=torch.float64)).sum()
print(branch("torch", "lib/libtorch_cpu.so"))
"""

CORE = BRANCH + """
import sys
core = ctypes.CDLL(sys.argv[1])
core.dpmd_model_load.restype = ctypes.c_void_p
assert core.dpmd_model_load(sys.argv[2].encode()), "model not loaded"
print(branch("torch", "lib/libtorch_cpu.so"))
"""


def _branch(code: str, *args, off: bool = False) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("DPMD_MD_MKL_AMD", None)
    if off:
        env["DPMD_MD_MKL_AMD"] = "0"
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return int(out.split()[-1])


def _check(code: str, *args) -> None:
    assert _branch(code, *args) != GENERIC
    # the switch works, and on AMD it is what changes the branch (the test can fail)
    off = _branch(code, *args, off=True)
    assert (off == GENERIC) == (VENDOR == "AuthenticAMD")


def test_python_torch_branch():
    _check(PY)


def test_python_paddle_branch():
    pytest.importorskip("paddle")
    code = BRANCH + "import deepmd_md, paddle\nprint(branch('paddle', 'libs/libmklml_intel.so'))"
    _check(code)


def test_core_torch_backend_branch(tmp_path):
    from deepmd_md.backends.torch.freeze import freeze_pth

    core = native_lib("libdpmd_core.so")
    if core is None:
        pytest.skip("the C++ core is not built")
    pth = tmp_path / "tiny.pth"
    freeze_pth(make_model(), str(pth))
    assert "import deepmd_md" not in CORE  # the core alone, as an engine loads it
    _check(CORE, core, pth)

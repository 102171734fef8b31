"""Fixtures of the DeePMD-kit C API tests: libdeepmd_c.so (installed, or built here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "plugin" / "deepmd_c"


@pytest.fixture(scope="session")
def lib(tmp_path_factory) -> Path:
    """libdeepmd_c.so: the installed one, else built here from plugin/deepmd_c with the system
    C++ compiler against the installed core (before the package build includes it)."""
    from deepmd_md.deepmd_c import library_path
    from deepmd_md.lmp import native_lib

    installed = library_path()
    if installed is not None:
        return installed
    core = native_lib("libdpmd_core.so")
    if core is None:
        pytest.skip("libdpmd_core.so is not built")
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++ on PATH")
    out = tmp_path_factory.mktemp("lib") / "libdeepmd_c.so"
    cmd = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden",
           f"-I{SRC / 'include'}", f"-I{ROOT / 'core' / 'include'}",
           *map(str, sorted((SRC / "src").glob("*.cc"))),
           f"-L{core.parent}", "-ldpmd_core", f"-Wl,-rpath,{core.parent}", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out

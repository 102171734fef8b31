"""Read deepmd/npy systems (a directory) and the same layout inside HDF5 (`file.h5#/group`).

Layout (DeePMD-kit's): `type.raw` (one int per atom), optional `type_map.raw` (one name per type),
optional `nopbc` marker, and `set.*/` holding `coord.npy` [nf, nat*3], `box.npy` [nf, 9],
`energy.npy` [nf], `force.npy` [nf, nat*3], `virial.npy` [nf, 9]. In HDF5 every file is a dataset
of the same name inside the group (`set.000/coord.npy`; a name without `.npy` is accepted too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from deepmd_md.errors import DataError

__all__ = ["System", "load_system", "find_systems", "remap_types", "split_h5_path"]


@dataclass(frozen=True, eq=False)
class System:
    """One system: fixed atom types, nf frames.

    atype: [nat] int64; coord: [nf, nat, 3] float64; box: [nf, 9] or None (non-periodic);
    energy: [nf] | None; force: [nf, nat, 3] | None; virial: [nf, 9] | None.
    """

    path: str
    type_map: list[str] | None
    atype: np.ndarray
    coord: np.ndarray
    box: np.ndarray | None
    energy: np.ndarray | None = None
    force: np.ndarray | None = None
    virial: np.ndarray | None = None

    @property
    def nframes(self) -> int:
        return int(self.coord.shape[0])

    @property
    def natoms(self) -> int:
        return int(self.atype.shape[0])

    @property
    def pbc(self) -> bool:
        return self.box is not None


def split_h5_path(path: str) -> tuple[str, str | None]:
    """'file.h5#/a/b' -> ('file.h5', '/a/b'); a plain path -> (path, None)."""
    if "#" in path:
        fn, grp = path.split("#", 1)
        return fn, (grp or "/")
    return path, None


def _is_h5(fn: str) -> bool:
    return fn.endswith((".h5", ".hdf5")) and os.path.isfile(fn)


# -- a tiny reader interface over a directory or an HDF5 group --------------------------------


class _DirReader:
    def __init__(self, root: Path):
        self.root = root

    def has(self, name: str) -> bool:
        return (self.root / name).exists()

    def sets(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("set.*") if p.is_dir())

    def read_raw(self, name: str, kind: type) -> np.ndarray | list[str]:
        text = (self.root / name).read_text().split()
        if kind is str:
            return text
        return np.array([int(t) for t in text], dtype=np.int64)

    def read_npy(self, set_name: str, key: str) -> np.ndarray | None:
        fn = self.root / set_name / f"{key}.npy"
        if not fn.is_file():
            return None
        try:
            return np.load(fn)
        except (ValueError, OSError) as e:
            raise DataError(f"{fn}: cannot read ({e}); rewrite it with numpy.save") from None

    def where(self, set_name: str, key: str) -> str:
        return str(self.root / set_name / f"{key}.npy")


class _H5Reader:
    def __init__(self, fn: str, group):
        self.fn = fn
        self.g = group

    def has(self, name: str) -> bool:
        return name in self.g

    def sets(self) -> list[str]:
        return sorted(k for k in self.g.keys() if k.startswith("set."))

    def read_raw(self, name: str, kind: type) -> np.ndarray | list[str]:
        arr = np.asarray(self.g[name][()])
        if kind is str:
            flat = np.atleast_1d(arr).ravel()
            return [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
        try:
            return np.atleast_1d(arr).ravel().astype(np.int64)
        except (ValueError, TypeError):
            raise DataError(f"{self.where('', name)}: type.raw must hold integers") from None

    def read_npy(self, set_name: str, key: str) -> np.ndarray | None:
        s = self.g[set_name]
        for name in (f"{key}.npy", key):
            if name in s:
                return np.asarray(s[name][()])
        return None

    def where(self, set_name: str, key: str) -> str:
        sub = f"{set_name}/{key}.npy" if set_name else key
        return f"{self.fn}#{self.g.name.rstrip('/')}/{sub}"


# -- loading ----------------------------------------------------------------------------------


def _check_finite(arr: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
    if bad.any():
        frame = int(np.argmax(bad))
        raise DataError(f"{where}: NaN or inf in frame {frame}; remove or fix that frame")


def _frames(
    arr: np.ndarray, ncols: int | None, where: str, what: str, nf: int | None
) -> np.ndarray:
    """Check arr is [nf, ncols] (or [nf] when ncols is None) and return it as float64."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected numbers, got dtype {a.dtype}")
    if ncols is None:
        a = a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a
        ok = a.ndim == 1
        want = "[nframes]"
    else:
        ok = a.ndim == 2 and a.shape[1] == ncols
        if a.ndim == 1 and ncols and a.size % ncols == 0 and nf == a.size // ncols:
            a, ok = a.reshape(nf, ncols), True
        want = f"[nframes, {ncols}]"
    if not ok:
        raise DataError(f"{where}: shape {list(a.shape)} does not match {what}; expected {want}")
    if nf is not None and a.shape[0] != nf:
        raise DataError(
            f"{where}: {a.shape[0]} frames but coord.npy has {nf}; every file of a set needs "
            "the same number of frames"
        )
    a = a.astype(np.float64)
    _check_finite(a, where)
    return a


def _load(reader, path: str) -> System:
    if not reader.has("type.raw"):
        raise DataError(f"{path}: missing type.raw (one integer type per atom); is this a system?")
    atype = np.asarray(reader.read_raw("type.raw", int), dtype=np.int64)
    nat = atype.shape[0]
    if nat == 0:
        raise DataError(f"{path}: type.raw is empty; write one integer type per atom")
    if (atype < 0).any():
        raise DataError(f"{path}: type.raw holds a negative type; types are 0-based indices")
    type_map = reader.read_raw("type_map.raw", str) if reader.has("type_map.raw") else None
    if type_map is not None and atype.max() >= len(type_map):
        raise DataError(
            f"{path}: type.raw uses type {int(atype.max())} but type_map.raw names only "
            f"{len(type_map)} types ({' '.join(type_map)}); add the missing names"
        )
    nopbc = reader.has("nopbc")
    sets = reader.sets()
    if not sets:
        raise DataError(f"{path}: no set.* folder; put coord.npy etc. in {path}/set.000")
    cols = {"coord": [], "box": [], "energy": [], "force": [], "virial": []}
    for s in sets:
        coord = reader.read_npy(s, "coord")
        if coord is None:
            raise DataError(f"{reader.where(s, 'coord')}: missing; every set needs coord.npy")
        coord = _frames(coord, nat * 3, reader.where(s, "coord"), f"{nat} atoms in type.raw", None)
        nf = coord.shape[0]
        cols["coord"].append(coord.reshape(nf, nat, 3))
        spec = {"box": 9, "energy": None, "force": nat * 3, "virial": 9}
        for key, ncol in spec.items():
            raw = reader.read_npy(s, key)
            if raw is None:
                if key == "box" and not nopbc:
                    raise DataError(
                        f"{reader.where(s, 'box')}: missing; add box.npy [nframes, 9] or an "
                        f"empty 'nopbc' file in {path} for a non-periodic system"
                    )
                cols[key].append(None)
                continue
            what = f"{nat} atoms in type.raw" if key == "force" else "the expected columns"
            a = _frames(raw, ncol, reader.where(s, key), what, nf)
            cols[key].append(a.reshape(nf, nat, 3) if key == "force" else a)
    out = {"coord": np.concatenate(cols["coord"])}
    for key in ("box", "energy", "force", "virial"):
        present = [a is not None for a in cols[key]]
        if key == "box" and nopbc:
            out[key] = None  # nopbc wins: a box present for convenience is ignored
        elif all(present):
            out[key] = np.concatenate(cols[key])
        elif not any(present):
            out[key] = None
        else:
            miss = sets[present.index(False)]
            raise DataError(
                f"{path}: {key}.npy is in some sets but not in {miss}; add it there or remove it"
            )
    return System(path=path, type_map=type_map, atype=atype, **out)


def load_system(path: str | os.PathLike) -> System:
    """Load one system from a directory or from `file.h5#/group` (group may be the root)."""
    path = os.fspath(path)
    fn, grp = split_h5_path(path)
    if grp is not None or _is_h5(fn):
        import h5py

        if not os.path.isfile(fn):
            raise DataError(f"{fn}: HDF5 file not found; check the systems path")
        try:
            with h5py.File(fn, "r") as f:
                g = f[grp or "/"] if (grp or "/") in f else None
                if g is None:
                    raise DataError(f"{path}: group {grp} not in {fn}; list it with h5ls -r {fn}")
                return _load(_H5Reader(fn, g), path)
        except OSError as e:
            raise DataError(f"{fn}: cannot read HDF5 file ({e})") from None
    if not os.path.exists(path):
        raise DataError(f"{path}: system not found; check the systems path (relative to the cwd)")
    if not os.path.isdir(path):
        raise DataError(f"{path}: not a directory or an .h5 file; a system is a directory")
    return _load(_DirReader(Path(path)), path)


def find_systems(spec: str | os.PathLike | list[str]) -> list[str]:
    """Systems named by `spec`: a list as given; a directory searched recursively for `type.raw`;
    an .h5 file without '#' -> every group in it that holds type.raw; `file.h5#/g` -> [itself]."""
    if isinstance(spec, (list, tuple)):
        return [os.fspath(s) for s in spec]
    spec = os.fspath(spec)
    fn, grp = split_h5_path(spec)
    if grp is not None:
        return [spec]
    if _is_h5(fn):
        import h5py

        found: list[str] = []
        with h5py.File(fn, "r") as f:
            if "type.raw" in f:
                found.append(f"{fn}#/")

            def visit(name, obj):
                if isinstance(obj, h5py.Group) and "type.raw" in obj:
                    found.append(f"{fn}#/{name}")

            f.visititems(visit)
        if not found:
            raise DataError(f"{fn}: no system (group holding type.raw) in this HDF5 file")
        return sorted(found)
    if not os.path.exists(spec):
        raise DataError(f"{spec}: systems path not found; check it (relative to the cwd)")
    if os.path.isfile(os.path.join(spec, "type.raw")):
        return [spec]
    found = sorted(
        root for root, _dirs, files in os.walk(spec, followlinks=True) if "type.raw" in files
    )
    if not found:
        raise DataError(f"{spec}: no system (directory holding type.raw) found under it")
    return found


def remap_types(system: System, model_type_map: list[str]) -> System:
    """Return `system` with atype as indices into `model_type_map` (matched by element name).

    Without type_map.raw the indices are taken as they are (must be < len(model_type_map)).
    """
    nt = len(model_type_map)
    if system.type_map is None:
        if system.atype.max() >= nt:
            raise DataError(
                f"{system.path}: type.raw uses type {int(system.atype.max())} but the model "
                f"type_map has {nt} types {model_type_map}; extend model/type_map"
            )
        return system
    index = {name: i for i, name in enumerate(model_type_map)}
    used = sorted(set(system.atype.tolist()))
    lut = np.full(len(system.type_map), -1, dtype=np.int64)
    for t in used:
        name = system.type_map[t]
        if name not in index:
            raise DataError(
                f"{system.path}: element '{name}' is not in model/type_map {model_type_map}; "
                "add it to type_map"
            )
        lut[t] = index[name]
    return replace(system, atype=lut[system.atype], type_map=list(model_type_map))

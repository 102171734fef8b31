"""Periodic images and neighbor candidates (NumPy, vectorised), plus `sel` checks and neighbor-stat.

Conventions (keys.py): box rows are cell vectors; ext_coord = coord[mapping] + shift.
Local atoms keep their given coordinates (no wrapping); ghosts are exactly the images that can
fall within rcut of some local atom, so unwrapped input (the shipped water data spans ~2 cells)
costs no more images than wrapped input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepmd_md import keys
from deepmd_md.data.system import System, remap_types
from deepmd_md.errors import DataError, NeighborError

__all__ = [
    "extend_coord",
    "neighbor_candidates",
    "build_neighbor_data",
    "count_neighbors",
    "check_sel",
    "neighbor_stat",
]


def _cells(box: np.ndarray) -> np.ndarray:
    """box [nf, 9] -> cell [nf, 3, 3] (rows = vectors); DataError on a singular cell."""
    cell = np.asarray(box, dtype=np.float64).reshape(-1, 3, 3)
    vol = np.linalg.det(cell)
    bad = np.abs(vol) < 1e-10
    if bad.any():
        raise DataError(f"box of frame {int(np.argmax(bad))} has zero volume; fix box.npy")
    return cell


def _face_distances(cell: np.ndarray) -> np.ndarray:
    """cell [nf, 3, 3] -> [nf, 3] distance between opposite faces: V / |b x c| etc."""
    vol = np.abs(np.linalg.det(cell))
    cross = np.stack(
        [np.cross(cell[:, (i + 1) % 3], cell[:, (i + 2) % 3]) for i in range(3)], axis=1
    )
    return vol[:, None] / np.linalg.norm(cross, axis=-1)


def _frame_images(frac: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ghost images of one frame: (owner [ng], n [ng, 3] integer lattice vector).

    frac: [nat, 3] fractional coordinates; reach: [3] rcut / face distance (fractional rcut).
    Image s_j + n can be within rcut of some local atom only if, in every direction, it lies
    inside the slab (min_i s_i - reach, max_i s_i + reach); we keep exactly those (minus n = 0,
    the local atom itself). Unwrapped input therefore costs no more than wrapped input.
    """
    nat = frac.shape[0]
    lo = frac.min(axis=0) - reach
    hi = frac.max(axis=0) + reach
    nlo = np.floor(lo - frac).astype(np.int64) + 1  # smallest n with s + n > lo
    nhi = np.ceil(hi - frac).astype(np.int64) - 1  # largest n with s + n < hi
    cnt = nhi - nlo + 1  # [nat, 3], >= 1 since n = 0 always qualifies
    per_atom = cnt.prod(axis=1)
    owner = np.repeat(np.arange(nat), per_atom)
    k = np.arange(owner.shape[0]) - np.repeat(np.cumsum(per_atom) - per_atom, per_atom)
    cb, cc = cnt[owner, 1], cnt[owner, 2]
    idx = np.stack([k // (cb * cc), (k // cc) % cb, k % cc], axis=1)
    n = nlo[owner] + idx
    ghost = n.any(axis=1)
    return owner[ghost], n[ghost]


def extend_coord(coord: np.ndarray, atype: np.ndarray, box: np.ndarray | None, rcut: float):
    """Local atoms followed by periodic images covering rcut.

    coord: [nf, nat, 3]; atype: [nf, nat]; box: [nf, 9] or None.
    Returns ext_coord [nf, nall, 3], ext_atype [nf, nall], mapping [nf, nall] (owner < nat),
    shift [nf, nall, 3] (lattice vector added; 0 for local atoms). nall is the same for all
    frames (frames with fewer ghosts are padded with far images that are never neighbors).
    box None -> no images (nall = nat, shift 0).
    """
    coord = np.asarray(coord, dtype=np.float64)
    atype = np.asarray(atype, dtype=np.int64)
    nf, nat, _ = coord.shape
    if box is None:
        return (
            coord.copy(),
            atype.copy(),
            np.broadcast_to(np.arange(nat), (nf, nat)).copy(),
            np.zeros_like(coord),
        )
    cell = _cells(box)
    # widen a hair so that rounding never drops a needed image (extra ones are harmless)
    reach = rcut / _face_distances(cell) * (1.0 + 1e-10) + 1e-12  # [nf, 3]
    frac = np.einsum("fnx,fxy->fny", coord, np.linalg.inv(cell))
    images = [_frame_images(frac[f], reach[f]) for f in range(nf)]
    ng = max(o.shape[0] for o, _ in images)
    owner = np.zeros((nf, ng), dtype=np.int64)
    lat = np.zeros((nf, ng, 3), dtype=np.int64)
    for f, (o, n) in enumerate(images):
        owner[f, : o.shape[0]] = o
        lat[f, : o.shape[0]] = n
        # pad to the batch's ghost count with images of atom 0 beyond the slab (never neighbors)
        npad = ng - o.shape[0]
        if npad:
            far = int(np.ceil(frac[f, :, 0].max() - frac[f, 0, 0] + 2 * reach[f, 0])) + 1
            lat[f, o.shape[0] :, 0] = far + np.arange(npad)
    mapping = np.concatenate([np.broadcast_to(np.arange(nat), (nf, nat)), owner], axis=1)
    n_all = np.concatenate([np.zeros((nf, nat, 3), dtype=np.int64), lat], axis=1)
    shift = np.einsum("fix,fxy->fiy", n_all.astype(np.float64), cell)  # [nf, nall, 3]
    ext = np.take_along_axis(coord, mapping[..., None], axis=1) + shift
    return ext, np.take_along_axis(atype, mapping, axis=1), mapping, shift


_OFFSETS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])


def _frame_candidates(ext: np.ndarray, nloc: int, rcut: float):
    """One frame: (rows, cols, d) of pairs i<nloc, j != i with |r_j - r_i| < rcut, sorted by
    (row, distance). ext: [nall, 3].

    Cell list: atoms are binned in cubes of edge rcut, so a neighbor is in one of the 27 cubes
    around an atom's cube. O(nloc * density * 27 rcut^3) work, no BLAS (whose threads stall
    on a busy 2-core machine), exact distances.
    """
    cell = np.floor((ext - ext.min(axis=0)) / rcut).astype(np.int64)  # [nall, 3]
    dims = cell.max(axis=0) + 1
    lin = (cell[:, 0] * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
    order = np.argsort(lin, kind="stable")
    sorted_lin = lin[order]
    # the 27 cubes around each local atom: [nloc, 27, 3]
    near = cell[:nloc, None, :] + _OFFSETS[None]
    inside = ((near >= 0) & (near < dims)).all(axis=-1)
    near_lin = (near[..., 0] * dims[1] + near[..., 1]) * dims[2] + near[..., 2]
    start = np.searchsorted(sorted_lin, near_lin, side="left")
    count = np.where(inside, np.searchsorted(sorted_lin, near_lin, side="right") - start, 0)
    count, start = count.ravel(), start.ravel()
    total = int(count.sum())
    first = np.repeat(np.cumsum(count) - count, count)
    pos = np.arange(total) - first + np.repeat(start, count)
    rows = np.repeat(np.repeat(np.arange(nloc), _OFFSETS.shape[0]), count)
    cols = order[pos]
    diff = ext[cols] - ext[rows]
    dist2 = np.einsum("ij,ij->i", diff, diff)
    keep = (dist2 < rcut * rcut) & (cols != rows)
    rows, cols, dist2 = rows[keep], cols[keep], dist2[keep]
    # rows are non-decreasing; sort by distance within a row (stable: ties keep cell order)
    order = np.argsort(rows * (4.0 * rcut * rcut + 1.0) + dist2, kind="stable")
    return rows[order], cols[order], np.sqrt(dist2[order])


def neighbor_candidates(ext_coord: np.ndarray, nloc: int, rcut: float, return_dist: bool = False):
    """For each local atom, extended atoms (not itself) closer than rcut, nearest first.

    ext_coord: [nf, nall, 3] with the nloc local atoms first.
    Returns nlist [nf, nloc, nmax] int64 padded with -1, nmax = max count over the batch
    (and, if return_dist, dist [nf, nloc, nmax] padded with inf).
    """
    ext_coord = np.asarray(ext_coord, dtype=np.float64)
    nf = ext_coord.shape[0]
    per_frame = [_frame_candidates(ext_coord[f], nloc, rcut) for f in range(nf)]
    counts = [np.bincount(r, minlength=nloc) for r, _, _ in per_frame]
    nmax = max((int(c.max()) for c in counts if c.size), default=0)
    nlist = np.full((nf, nloc, nmax), -1, dtype=np.int64)
    dist = np.full((nf, nloc, nmax), np.inf)
    for f, ((rows, cols, d), cnt) in enumerate(zip(per_frame, counts, strict=True)):
        start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        pos = np.arange(rows.shape[0]) - start[rows]
        nlist[f, rows, pos] = cols
        dist[f, rows, pos] = d
    return (nlist, dist) if return_dist else nlist


def build_neighbor_data(coord, atype, box, rcut: float) -> dict:
    """forward_lower inputs from forward inputs: EXT_COORD, EXT_ATYPE, MAPPING, SHIFT, NLIST
    (NLIST here is the unsorted-by-type candidate list [nf, nloc, nmax])."""
    ext, ext_at, mapping, shift = extend_coord(coord, atype, box, rcut)
    nlist = neighbor_candidates(ext, np.asarray(coord).shape[1], rcut)
    return {
        keys.EXT_COORD: ext,
        keys.EXT_ATYPE: ext_at,
        keys.MAPPING: mapping,
        keys.SHIFT: shift,
        keys.NLIST: nlist,
    }


def count_neighbors(ext_atype: np.ndarray, nlist: np.ndarray, ntypes: int) -> np.ndarray:
    """[nf, nloc, ntypes] number of neighbors of each type. ext_atype: [nf, nall];
    nlist: [nf, nloc, nmax] (-1 = empty)."""
    nf, nloc, nmax = nlist.shape
    valid = nlist >= 0
    t = np.take_along_axis(ext_atype, np.where(valid, nlist, 0).reshape(nf, -1), axis=1)
    t = t.reshape(nf, nloc, nmax)
    slot = np.arange(nf * nloc).reshape(nf, nloc, 1) * ntypes + t
    counts = np.bincount(slot[valid], minlength=nf * nloc * ntypes)
    return counts.reshape(nf, nloc, ntypes)


def check_sel(
    counts: np.ndarray, sel: Sequence[int], type_map: Sequence[str], rcut: float | None = None,
    key: str = "sel", mixed: bool = False,
) -> None:
    """NeighborError if any atom has more neighbors of a type than sel allows.

    counts: [nf, nloc, ntypes] (from count_neighbors) or [ntypes] maxima; mixed: counts
    [..., 1] of all types against sel [n]. key: the input key the advice names (under
    model/descriptor/).
    """
    found = np.asarray(counts).reshape(-1, len(sel)).max(axis=0) if np.size(counts) else None
    if found is None:
        return
    over = found > np.asarray(sel)
    if over.any():
        t = int(np.argmax(over))
        need = [int(max(s, n)) for s, n in zip(sel, found, strict=True)]
        within = f"within rcut {rcut:g}" if rcut is not None else "within rcut"
        of_type = "(any type) " if mixed else f"of type {type_map[t]} "
        now, use = (int(sel[0]), need[0]) if mixed else (list(map(int, sel)), need)
        raise NeighborError(
            f"found {int(found[t])} neighbors {of_type}{within} "
            f"({key} = {now}); set model/descriptor/{key} to at least {use}"
        )


def neighbor_stat(
    systems: Sequence[System | str], rcut: float, type_map: Sequence[str], chunk: int = 16,
    mixed: bool = False,
) -> tuple[float, np.ndarray]:
    """(min distance between any two atoms within rcut, [ntypes] max neighbors per type)
    over all frames of all systems (types remapped to type_map by name); mixed: [1], the
    largest count of neighbors of any type (what a mixed-type list must hold)."""
    from deepmd_md.data.system import load_system

    ntypes = len(type_map)
    min_dist = np.inf
    max_nbor = np.zeros(ntypes, dtype=np.int64)
    total = 0
    for s in systems:
        sysm = remap_types(load_system(s) if isinstance(s, str) else s, list(type_map))
        for start in range(0, sysm.nframes, chunk):
            sl = slice(start, start + chunk)
            coord = sysm.coord[sl]
            atype = np.broadcast_to(sysm.atype, coord.shape[:2])
            box = None if sysm.box is None else sysm.box[sl]
            ext, ext_at, _, _ = extend_coord(coord, atype, box, rcut)
            nlist, dist = neighbor_candidates(ext, sysm.natoms, rcut, return_dist=True)
            if dist.size:
                min_dist = min(min_dist, float(dist.min()))
            cnt = count_neighbors(ext_at, nlist, ntypes).reshape(-1, ntypes)
            max_nbor = np.maximum(max_nbor, cnt.max(axis=0))
            total = max(total, int(cnt.sum(-1).max())) if cnt.size else total
    return min_dist, (np.array([total]) if mixed else max_nbor)

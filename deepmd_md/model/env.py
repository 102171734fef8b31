"""Neighbor geometry as pure array-API functions: gather, smooth switch, environment matrix.

Everything here runs unchanged on NumPy (real or complex, for the complex-step reference),
PyTorch and JAX. Comparisons use the real part so complex-step perturbations pass through.
"""

from __future__ import annotations

from deepmd_md.model.xp import array_namespace


def real(x):
    """Real part of x (x itself when real): comparisons must ignore complex-step perturbations."""
    xp = array_namespace(x)
    return xp.real(x) if xp.isdtype(x.dtype, "complex floating") else x


def gather_rows(x, idx):
    """Rows of x picked per frame: x: [nf, n, *f], idx: [nf, *s] (-1 gathers row 0) -> [nf, *s, *f]."""
    xp = array_namespace(x)
    nf, n = x.shape[0], x.shape[1]
    feat = tuple(x.shape[2:])
    flat = xp.reshape(x, (nf * n, *feat))
    offset = xp.reshape(xp.arange(nf, dtype=idx.dtype) * n, (nf, *([1] * (idx.ndim - 1))))
    gidx = xp.where(idx >= 0, idx, xp.zeros_like(idx)) + offset
    out = xp.take(flat, xp.reshape(gidx, (-1,)), axis=0)
    return xp.reshape(out, (*idx.shape, *feat))


def gather_neighbors(ext, nlist):
    """ext: [nf, nall, *f]; nlist: [nf, nloc, nnei] (-1 = empty) -> [nf, nloc, nnei, *f]."""
    return gather_rows(ext, nlist)


def neighbor_vectors(ext_coord, nlist):
    """r_ij = x_j - x_i. ext_coord: [nf, nall, 3], nlist: [nf, nloc, nnei] -> [nf, nloc, nnei, 3]."""
    nloc = nlist.shape[1]
    return gather_neighbors(ext_coord, nlist) - ext_coord[:, :nloc, None, :]


def switch(r, rcut_smth: float, rcut: float):
    """DeePMD's C2-smooth switch: 1 below rcut_smth, u^3(-6u^2+15u-10)+1 between, 0 beyond rcut."""
    xp = array_namespace(r)
    u = (r - rcut_smth) / (rcut - rcut_smth)
    poly = u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0
    rr = real(r)
    one, zero = xp.ones_like(r), xp.zeros_like(r)
    return xp.where(rr < rcut_smth, one, xp.where(rr < rcut, poly, zero))


def env_matrix(ext_coord, nlist, rcut_smth: float, rcut: float, radial_only: bool = False):
    """Smooth environment matrix rows (s, s x/r, s y/r, s z/r) with s = sw(r)/r; empty slots are 0.

    ext_coord: [nf, nall, 3]; nlist: [nf, nloc, nnei] -> env [nf, nloc, nnei, 4 (or 1)]
    """
    xp = array_namespace(ext_coord)
    diff = neighbor_vectors(ext_coord, nlist)
    mask = nlist >= 0
    r2 = xp.sum(diff * diff, axis=-1)
    # empty slots get r = 1 so that 1/r and the gradient stay finite; the mask zeroes them
    r2 = xp.where(mask, r2, xp.ones_like(r2))
    r = xp.sqrt(r2)
    sw = xp.where(mask, switch(r, rcut_smth, rcut), xp.zeros_like(r))
    s = sw / r
    if radial_only:
        return s[..., None]
    return xp.concat([s[..., None], (s / r)[..., None] * diff], axis=-1)


def format_nlist(ext_coord, ext_atype, nlist, rcut: float, sel: list[int], mixed: bool = False):
    """Type-blocked neighbor list from a raw one: block t holds the sel[t] nearest type-t
    neighbors inside rcut, nearest first, -1 padded. Extra neighbors beyond sel are dropped.
    mixed (sel = [n]): one block of the n nearest neighbors of any type, nearest first.

    ext_coord: [nf, nall, 3]; ext_atype: [nf, nall]; nlist: [nf, nloc, nraw] (any order, -1 empty)
    -> [nf, nloc, sum(sel)]
    """
    xp = array_namespace(ext_coord)
    if mixed:
        return format_nlist(ext_coord, xp.zeros_like(ext_atype), nlist, rcut, sel[:1])
    nf, nloc = nlist.shape[0], nlist.shape[1]
    diff = real(neighbor_vectors(ext_coord, nlist))
    dist = xp.sqrt(xp.sum(diff * diff, axis=-1))
    valid = (nlist >= 0) & (dist < rcut)
    ntype = gather_neighbors(ext_atype, nlist)
    width = max(sel)
    if nlist.shape[2] < width:  # too few candidates: pad so every block can be sliced
        pad = -xp.ones((nf, nloc, width - nlist.shape[2]), dtype=nlist.dtype)
        return format_nlist(ext_coord, ext_atype, xp.concat([nlist, pad], axis=-1), rcut, sel)
    inf = xp.full_like(dist, float("inf"))
    blocks = []
    for t, nsel in enumerate(sel):
        key = xp.where(valid & (ntype == t), dist, inf)
        order = xp.argsort(key, axis=-1)[..., :nsel]
        keep = xp.take_along_axis(key, order, axis=-1) < rcut
        idx = xp.take_along_axis(nlist, order, axis=-1)
        blocks.append(xp.where(keep, idx, -xp.ones_like(idx)))
    return xp.concat(blocks, axis=-1)


def sub_nlist(ext_coord, nlist, rcut: float, nsel: int):
    """The neighbors inside a smaller cutoff from a mixed (distance-sorted) list: a prefix.

    nlist: [nf, nloc, n] nearest first, -1 padded -> [nf, nloc, nsel] (the nearest nsel inside
    rcut; -1 beyond). Both Python and the engines build the mixed list nearest-first."""
    xp = array_namespace(ext_coord)
    if nlist.shape[2] < nsel:
        pad = -xp.ones((nlist.shape[0], nlist.shape[1], nsel - nlist.shape[2]), dtype=nlist.dtype)
        nlist = xp.concat([nlist, pad], axis=-1)
    nlist = nlist[:, :, :nsel]
    diff = real(neighbor_vectors(ext_coord, nlist))
    inside = (nlist >= 0) & (xp.sum(diff * diff, axis=-1) < rcut * rcut)
    return xp.where(inside, nlist, -xp.ones_like(nlist))

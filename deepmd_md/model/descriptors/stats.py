"""Environment-matrix statistics shared by descriptors: per center type, the mean of s and the
std of s and of the (x, y, z) s/r components over every neighbor slot (empty slots count as 0,
so pass the nlist at its full sel width). The angular mean stays 0 (rotations)."""

from __future__ import annotations

import numpy as np

from deepmd_md.model.env import env_matrix


def init_env_stats(ntypes: int, radial: bool, dtype) -> dict:
    ncomp = 1 if radial else 4
    return {"davg": np.zeros((ntypes, ncomp), dtype), "dstd": np.ones((ntypes, ncomp), dtype)}


def env_stat_sums(ext_coord, ext_atype, nlist, rcut_smth: float, rcut: float,
                  ntypes: int) -> np.ndarray:
    """[nt, 6] = (n, sum s, sum s^2, n_ang, sum a, sum a^2) per center type."""
    env = np.asarray(env_matrix(ext_coord, nlist, rcut_smth, rcut))
    nloc = nlist.shape[1]
    atype = np.asarray(ext_atype)[:, :nloc]
    out = np.zeros((ntypes, 6))
    for t in range(ntypes):
        e = env[atype == t]  # [n_t, nnei, 4]
        s, a = e[..., 0], e[..., 1:]
        out[t] = (s.size, s.sum(), (s * s).sum(), a.size, a.sum(), (a * a).sum())
    return out


def env_stats_from_sums(sums: np.ndarray, radial: bool, dtype, protection: float = 1e-2,
                        set_davg_zero: bool = False) -> dict:
    """davg/dstd per center type from accumulated env_stat_sums; std floored at protection."""
    ntypes = sums.shape[0]
    st = init_env_stats(ntypes, radial, dtype)
    for t in range(ntypes):
        n, s1, s2, na, a1, a2 = sums[t]
        if n == 0:
            continue
        mean = s1 / n
        std_r = np.sqrt(max(s2 / n - mean * mean, 0.0))
        std_a = np.sqrt(max(a2 / na - (a1 / na) ** 2, 0.0)) if na else 1.0
        if not set_davg_zero:
            st["davg"][t, 0] = mean
        st["dstd"][t, 0] = max(std_r, protection)
        if not radial:
            st["dstd"][t, 1:] = max(std_a, protection)
    return st

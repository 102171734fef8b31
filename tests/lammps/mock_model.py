"""Development fixture: a small TorchScript many-body potential that honours the
frozen-model contract of deepmd_md (.pth: metadata.json + forward_lower).

Used only while the real freezer is not available, and by the plugin's own
contract tests (e.g. a model whose metadata asks for a larger ghost cutoff).

  E_i = a[t_i] * tanh(g_i) + b[t_i] * g_i**2,
  g_i = sum_j w[t_i, t_j] * exp(-r_ij / lam) * (1 - (r_ij / rc)**2)**3   (r_ij < rc)
"""

from __future__ import annotations

import json

import numpy as np
import torch


class MockPot(torch.nn.Module):
    def __init__(self, type_map, rcut: float = 4.0, seed: int = 0, lam: float = 1.5):
        super().__init__()
        nt = len(type_map)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("a", 0.5 + torch.rand(nt, generator=g, dtype=torch.float64))
        self.register_buffer("b", 0.1 * torch.rand(nt, generator=g, dtype=torch.float64))
        self.register_buffer("w", 0.2 + 0.3 * torch.rand(nt, nt, generator=g, dtype=torch.float64))
        self.rcut = float(rcut)
        self.lam = float(lam)

    @torch.jit.export
    def atom_energy_lower(self, coord: torch.Tensor, atype: torch.Tensor, nlist: torch.Tensor):
        nf, nloc, nnei = nlist.shape
        mask = nlist >= 0
        idx = torch.where(mask, nlist, torch.zeros_like(nlist))
        cj = torch.gather(coord, 1, idx.view(nf, nloc * nnei, 1).expand(nf, nloc * nnei, 3))
        cj = cj.view(nf, nloc, nnei, 3)
        rij = cj - coord[:, :nloc, :].unsqueeze(2)
        r2 = (rij * rij).sum(-1)
        inside = mask & (r2 < self.rcut * self.rcut)
        r2s = torch.where(inside, r2, torch.ones_like(r2))
        r = torch.sqrt(r2s)
        x2 = r2s / (self.rcut * self.rcut)
        sw = (1.0 - x2) ** 3
        ti = atype[:, :nloc]
        tj = torch.gather(atype, 1, idx.view(nf, nloc * nnei)).view(nf, nloc, nnei)
        wij = self.w[ti.unsqueeze(-1).expand(nf, nloc, nnei), tj]
        term = torch.where(inside, wij * torch.exp(-r / self.lam) * sw, torch.zeros_like(r2))
        gi = term.sum(-1)
        return self.a[ti] * torch.tanh(gi) + self.b[ti] * gi * gi

    @torch.jit.export
    def forward_lower(
        self,
        extended_coord: torch.Tensor,
        extended_atype: torch.Tensor,
        nlist: torch.Tensor,
        mapping: torch.Tensor | None = None,
        fparam: torch.Tensor | None = None,
        aparam: torch.Tensor | None = None,
        do_atomic_virial: bool = False,
    ) -> dict[str, torch.Tensor]:
        coord = extended_coord.detach().to(torch.float64).requires_grad_(True)
        ae = self.atom_energy_lower(coord, extended_atype, nlist)
        e = ae.sum(-1)
        grads = torch.autograd.grad([e.sum()], [coord])
        g = grads[0]
        assert g is not None
        f = -g
        av = (coord.unsqueeze(-1) * f.unsqueeze(-2)).reshape(f.shape[0], f.shape[1], 9)
        out: dict[str, torch.Tensor] = {
            "atom_energy": ae.detach(),
            "energy": e.detach(),
            "extended_force": f.detach(),
            "virial": av.sum(1).detach(),
        }
        if do_atomic_virial:
            out["extended_virial"] = av.detach()
        return out

    def forward(self, coord: torch.Tensor, atype: torch.Tensor, box: torch.Tensor | None = None):
        return self.forward_lower(
            coord, atype, torch.zeros(1, 1, 1, dtype=torch.long), None, None, None, False
        )


def save_mock(path, type_map=("O", "H"), rcut=4.0, seed=0, extra_meta=None):
    m = torch.jit.script(MockPot(list(type_map), rcut=rcut, seed=seed))
    meta = {
        "format": "deepmd_md.pth",
        "version": 1,
        "type_map": list(type_map),
        "rcut": rcut,
        "sel": [40] * len(type_map),
        "nnei": 40 * len(type_map),
        "dim_fparam": 0,
        "dim_aparam": 0,
        "precision": "float64",
        "message_passing": False,
        "outputs": {"energy": {"reducible": True, "r_differentiable": True, "c_differentiable": True}},
    }
    meta.update(extra_meta or {})
    torch.jit.save(m, str(path), _extra_files={"metadata.json": json.dumps(meta)})
    return path


def reference_eval(path, coord, box, atype):
    """Brute-force periodic evaluation through forward_lower (independent of LAMMPS).

    coord [nat,3], box [3,3] rows = cell vectors, atype [nat] model types.
    Returns energy, force [nat,3], virial [9], atom_energy [nat], atom_virial [nat,9].
    """
    m = torch.jit.load(str(path))
    rc = float(m.rcut)
    coord = np.asarray(coord, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    nat = len(coord)
    inv = np.linalg.inv(box)
    # number of images needed along each lattice direction
    vol = abs(np.linalg.det(box))
    heights = vol / np.linalg.norm(np.cross(box[[1, 2, 0]], box[[2, 0, 1]]), axis=1)
    nimg = np.ceil(rc / heights).astype(int)
    frac = coord @ inv
    frac -= np.floor(frac)
    coord = frac @ box
    ext, mapping = [coord], [np.arange(nat)]
    for i in range(-nimg[0], nimg[0] + 1):
        for j in range(-nimg[1], nimg[1] + 1):
            for k in range(-nimg[2], nimg[2] + 1):
                if i == j == k == 0:
                    continue
                ext.append(coord + np.array([i, j, k]) @ box)
                mapping.append(np.arange(nat))
    ext = np.concatenate(ext)
    mapping = np.concatenate(mapping)
    d = np.linalg.norm(ext[None, :, :] - coord[:, None, :], axis=-1)
    rows = []
    for i in range(nat):
        js = np.nonzero((d[i] < rc) & (np.arange(len(ext)) != i))[0]
        rows.append(js)
    nnei = max(len(r) for r in rows)
    nlist = -np.ones((nat, nnei), dtype=np.int64)
    for i, r in enumerate(rows):
        nlist[i, : len(r)] = r
    out = m.forward_lower(
        torch.tensor(ext[None]),
        torch.tensor(np.asarray(atype)[mapping][None], dtype=torch.long),
        torch.tensor(nlist[None]),
        None,
        None,
        None,
        True,
    )
    fe = out["extended_force"][0].numpy()
    ve = out["extended_virial"][0].numpy()
    f = np.zeros((nat, 3))
    v = np.zeros((nat, 9))
    np.add.at(f, mapping, fe)
    np.add.at(v, mapping, ve)
    return (
        float(out["energy"][0]),
        f,
        out["virial"][0].numpy(),
        out["atom_energy"][0].numpy(),
        v,
    )

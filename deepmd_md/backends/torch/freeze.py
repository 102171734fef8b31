"""Freeze a model to TorchScript `.pth`: the shared model math is traced (shapes stay dynamic),
then a scripted wrapper adds autograd forces/virial, periodic images for `forward`, and metadata.

Contract (read by the C++ core): methods `forward_lower` and `forward` (see keys.py for shapes),
`forward_blocked` (the engines' fast path: model.atomic_outputs_blocked's inputs), extra files
`metadata.json` (type_map, rcut, sel, nnei, dim_fparam, dim_aparam, precision,
message_passing, blocked, outputs) and `model.dp` (the backend-neutral model, for round trips).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings

import torch

from deepmd_md.backends.common import frozen_metadata
from deepmd_md.backends.torch.adapter import asarray
from deepmd_md.backends.torch.ops import OpExchange
from deepmd_md.model.model import (
    atomic_outputs,
    atomic_outputs_blocked,
    message_passing_of,
    rcut_of,
    sel_of,
    supports_blocked,
)
from deepmd_md.serialize import atomic_write, save_dp
from deepmd_md.tree import flatten, unflatten

PTH_FORMAT = "deepmd_md.pth"
PTH_VERSION = 1


def metadata(data: dict) -> dict:
    cfg = data["config"]
    mp = message_passing_of(cfg)  # the graph holds dpmd::ghost_exchange; weighted (atom_weight)
    return frozen_metadata(data, PTH_FORMAT, PTH_VERSION, widths=exchange_widths(data) if mp else None,
                           blocked=supports_blocked(cfg), receptive_field=mp)


def _example(ntypes: int, width: int):
    """A tiny extended frame (6 atoms, 3 local) to trace on: coord, atype, nlist, mapping."""
    g = torch.Generator().manual_seed(0)
    nall, nloc = 6, 3
    ext_coord = torch.rand(1, nall, 3, generator=g, dtype=torch.float64) * 2.0
    ext_atype = torch.arange(nall).remainder(ntypes).reshape(1, nall)
    nlist = torch.tensor([[[j for j in range(nall) if j != i] + [-1] * (width - nall + 1)
                           for i in range(nloc)]])
    mapping = torch.arange(nall).remainder(nloc).reshape(1, nall)
    return ext_coord, ext_atype, nlist, mapping


def exchange_widths(data: dict) -> list[int]:
    """Columns of each ghost exchange the model makes, in call order (one model evaluation)."""
    from deepmd_md.model.comm import MappingExchange

    widths = []

    class Recording(MappingExchange):
        def __call__(self, node_local):
            widths.append(int(torch.tensor(node_local.shape[2:]).prod()))
            return super().__call__(node_local)

    cfg = data["config"]
    coord, atype, nlist, mapping = _example(len(cfg["type_map"]), max(sel_of(cfg)) + 2)
    t = {k: asarray(data[k]) for k in ("params", "buffers")}
    with torch.no_grad():
        atomic_outputs(cfg, t["params"], t["buffers"], coord, atype, nlist, raw_nlist=True,
                       comm=Recording(mapping))
    return widths


class _AtomEnergy(torch.nn.Module):
    """The shared model math over a raw neighbor list; traced, never scripted."""

    def __init__(self, data: dict):
        super().__init__()
        self.config = data["config"]
        self.names = {}
        for tree in ("params", "buffers"):
            for path, v in flatten(asarray(data[tree])).items():
                name = f"{tree}__" + path.replace("/", "__")
                self.register_buffer(name, v)
                self.names[name] = f"{tree}/{path}"

    def forward(self, ext_coord, ext_atype, nlist, mapping, comm):
        """comm: [1] int64, the exchange handle of dpmd::ghost_exchange (0: by mapping)."""
        t = unflatten({p: getattr(self, n) for n, p in self.names.items()})
        exchange = OpExchange(mapping, comm) if message_passing_of(self.config) else None
        return atomic_outputs(self.config, t["params"], t["buffers"], ext_coord, ext_atype,
                              nlist, raw_nlist=True, mapping=mapping, comm=exchange)["energy"]

    def blocked(self, ext_coord, ext_atype, nlists, center_idx):
        t = unflatten({p: getattr(self, n) for n, p in self.names.items()})
        return atomic_outputs_blocked(self.config, t["params"], t["buffers"], ext_coord,
                                      ext_atype, nlists, center_idx)["energy"]


class FrozenModel(torch.nn.Module):
    def __init__(self, atom_energy: torch.jit.ScriptModule, rcut: float, min_width: int,
                 message_passing: bool):
        super().__init__()
        self.atom_energy = atom_energy
        self.rcut = rcut
        self.min_width = min_width
        self.message_passing = message_passing

    @torch.jit.export
    def forward_lower(self, extended_coord: torch.Tensor, extended_atype: torch.Tensor,
                      nlist: torch.Tensor, mapping: torch.Tensor | None = None,
                      fparam: torch.Tensor | None = None,
                      aparam: torch.Tensor | None = None,
                      do_atomic_virial: bool = False,
                      comm: torch.Tensor | None = None,
                      atom_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """comm: message-passing models' ghost exchange handle ([1] int64, the address of the
        engine's dpmd_exchange; None: ghosts take their owners' features by mapping).
        atom_weight [nf, nloc]: energy = sum of weight x atom energy (and forces its gradient);
        an engine without an exchange passes 0 for the atoms of its widened ghost shell."""
        nf, nloc = nlist.shape[0], nlist.shape[1]
        if nlist.shape[2] < self.min_width:  # the traced selection needs >= max(sel) columns
            pad = torch.full([nf, nloc, self.min_width - nlist.shape[2]], -1,
                             dtype=nlist.dtype, device=nlist.device)
            nlist = torch.cat([nlist, pad], dim=2)
        if mapping is None:
            if self.message_passing:
                raise RuntimeError("this model passes messages between atoms: forward_lower "
                                   "needs `mapping` (owner of each extended atom)")
            nall = extended_coord.shape[1]
            mapping = torch.arange(nall, device=nlist.device).remainder(nloc).unsqueeze(
                0).expand(nf, nall)
        if comm is None:
            comm = torch.zeros([1], dtype=torch.int64, device=nlist.device)
        coord = extended_coord.detach().to(torch.float64).requires_grad_(True)
        ae = self.atom_energy(coord, extended_atype, nlist, mapping, comm).to(torch.float64)
        return self._derive(coord, ae, do_atomic_virial, atom_weight)

    def _derive(self, coord: torch.Tensor, ae: torch.Tensor, do_atomic_virial: bool,
                atom_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        nf = coord.shape[0]
        we = ae if atom_weight is None else ae * atom_weight.to(ae.dtype)
        grad = torch.autograd.grad([we.sum()], [coord])[0]
        assert grad is not None
        force = -grad
        atom_virial = coord.unsqueeze(-1) * force.unsqueeze(-2)  # r_a F_b per atom
        out = {"atom_energy": ae.detach(), "energy": we.detach().sum(-1),
               "extended_force": force.detach(),
               "virial": atom_virial.sum(1).reshape(nf, 9).detach()}
        if do_atomic_virial:
            out["extended_virial"] = atom_virial.reshape(nf, -1, 9).detach()
        return out

    @torch.jit.export
    def extend(self, coord: torch.Tensor, atype: torch.Tensor,
               box: torch.Tensor | None) -> list[torch.Tensor]:
        """Periodic images and a raw neighbor list: (ext_coord, ext_atype, mapping, nlist)."""
        nf, nat = coord.shape[0], coord.shape[1]
        idx = torch.arange(nat, device=coord.device)
        if box is None:
            ext, ext_atype = coord, atype
            mapping = idx.unsqueeze(0).expand(nf, nat)
        else:
            cell = box.reshape(nf, 3, 3).to(coord.dtype)
            inv = torch.linalg.inv(cell)
            frac = torch.bmm(coord, inv)
            wrapped = torch.bmm(frac - torch.floor(frac), cell)
            # images needed per direction: rcut / face distance, face distance = 1/|inv col|
            nimg = torch.ceil(self.rcut * torch.linalg.norm(inv, dim=1)).amax(0).to(torch.int64)
            rng = [torch.arange(-int(nimg[d]), int(nimg[d]) + 1, device=coord.device)
                   for d in range(3)]
            grid = torch.cartesian_prod(rng[0], rng[1], rng[2]).to(coord.dtype)
            order = torch.argsort((grid.abs().sum(1) > 0).to(torch.int64), stable=True)
            grid = grid[order]  # the zero shift first: local atoms lead the extended list
            shift = torch.matmul(grid.unsqueeze(0), cell)  # [nf, ns, 3]
            ns = grid.shape[0]
            ext = (wrapped.unsqueeze(1) + shift.unsqueeze(2)).reshape(nf, ns * nat, 3)
            ext_atype = atype.repeat(1, ns)
            mapping = idx.repeat(ns).unsqueeze(0).expand(nf, ns * nat)
        nall = ext.shape[1]
        d = torch.cdist(ext[:, :nat], ext)
        cand = torch.arange(nall, device=coord.device).expand(nf, nat, nall)
        keep = (d < self.rcut) & (cand != idx.view(1, nat, 1))
        nlist = torch.where(keep, cand, torch.full_like(cand, -1))
        return [ext, ext_atype, mapping, nlist]

    def forward(self, coord: torch.Tensor, atype: torch.Tensor,
                box: torch.Tensor | None = None, fparam: torch.Tensor | None = None,
                aparam: torch.Tensor | None = None,
                do_atomic_virial: bool = False) -> dict[str, torch.Tensor]:
        coord = coord.to(torch.float64)
        ext, ext_atype, mapping, nlist = self.extend(coord, atype, box)
        lo = self.forward_lower(ext, ext_atype, nlist, mapping, fparam, aparam, True, None,
                                None)
        nf, nat = coord.shape[0], coord.shape[1]
        force = torch.zeros([nf, nat, 3], dtype=torch.float64, device=coord.device)
        av = torch.zeros([nf, nat, 9], dtype=torch.float64, device=coord.device)
        for f in range(nf):
            force[f].index_add_(0, mapping[f], lo["extended_force"][f])
            av[f].index_add_(0, mapping[f], lo["extended_virial"][f])
        out = {"energy": lo["energy"], "atom_energy": lo["atom_energy"], "force": force,
               "virial": lo["virial"]}
        if do_atomic_virial:
            out["atom_virial"] = av
        return out


class FrozenBlockedModel(FrozenModel):
    """Typed descriptors: also the engines' per-type fast path (metadata "blocked": true)."""

    @torch.jit.export
    def forward_blocked(self, extended_coord: torch.Tensor, extended_atype: torch.Tensor,
                        nlists: list[torch.Tensor], center_idx: list[torch.Tensor],
                        do_atomic_virial: bool = False) -> dict[str, torch.Tensor]:
        """forward_lower from pre-sorted neighbors (model.atomic_outputs_blocked), nf == 1."""
        coord = extended_coord.detach().to(torch.float64).requires_grad_(True)
        ae = self.atom_energy.blocked(coord, extended_atype, nlists, center_idx)
        return self._derive(coord, ae.to(torch.float64), do_atomic_virial)


def build_frozen(data: dict) -> torch.jit.ScriptModule:
    """Trace the model math on a tiny example, wrap it, script the wrapper."""
    ntypes = len(data["config"]["type_map"])
    nloc = 3
    ext_coord, ext_atype, nlist, mapping = _example(ntypes, max(sel_of(data["config"])) + 2)
    comm = torch.zeros([1], dtype=torch.int64)
    nlists = [torch.tensor([[[1, 3, -1], [4, -1, -1], [0, 5, -1]]]),
              torch.tensor([[[2, 4], [0, 5], [-1, -1]]])][:ntypes]
    nlists += [torch.full((1, nloc, 2), -1)] * (ntypes - len(nlists))
    center = [torch.nonzero(ext_atype[0, :nloc] == t)[:, 0] for t in range(ntypes)]
    with warnings.catch_warnings():  # shape-dependent Python branches are config-static
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        methods = {"forward": (ext_coord, ext_atype, nlist, mapping, comm)}
        if supports_blocked(data["config"]):
            methods["blocked"] = (ext_coord, ext_atype, nlists, center)
        traced = torch.jit.trace_module(_AtomEnergy(data).eval(), methods, check_trace=False)
    cls = FrozenBlockedModel if supports_blocked(data["config"]) else FrozenModel
    return torch.jit.script(cls(traced, rcut_of(data["config"]), max(sel_of(data["config"])),
                                message_passing_of(data["config"])))


def freeze_pth(data: dict, path: str) -> None:
    """Write `path` (TorchScript + metadata.json + model.dp) atomically."""
    module = build_frozen(data)
    with tempfile.TemporaryDirectory() as tmp:
        dp = os.path.join(tmp, "model.dp")
        save_dp(data, dp)
        with open(dp, "rb") as f:
            dp_bytes = f.read()
    extra = {"metadata.json": json.dumps(metadata(data)), "model.dp": dp_bytes}
    buf = io.BytesIO()
    torch.jit.save(module, buf, _extra_files=extra)
    atomic_write(path, lambda tmp: open(tmp, "wb").write(buf.getvalue()))

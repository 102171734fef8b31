"""Contract fixture for the C++ AOTInductor (.pt2) loader: export the mock potential of
mock_model.py through make_fx (symbolic) -> torch.export -> aoti_compile_and_package, with
the input/output/metadata layout documented in docs/lammps.md.

usage: python make_pt2.py out.pt2 [out.pth]   (the .pth is the same potential, TorchScript)
"""

import json
import sys

import torch
from mock_model import MockPot, save_mock
from torch.fx.experimental.proxy_tensor import make_fx

TYPE_MAP = ["O", "H"]
RCUT = 4.0


def main(out_pt2, out_pth=None):
    pot = MockPot(TYPE_MAP, rcut=RCUT, seed=0)

    def fn(coord, atype, nlist):
        o = pot.forward_lower(coord, atype, nlist, None, None, None, True)
        return (o["atom_energy"], o["energy"], o["extended_force"], o["virial"],
                o["extended_virial"])

    g = torch.Generator().manual_seed(0)
    nall, nloc, nnei = 17, 7, 11
    coord = torch.rand(1, nall, 3, generator=g, dtype=torch.float64) * 3
    atype = torch.randint(0, 2, (1, nall), generator=g)
    nlist = torch.randint(-1, nall, (1, nloc, nnei), generator=g)
    gm = make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(coord, atype, nlist)
    dall, dloc, dnei = torch.export.Dim("nall", min=2), torch.export.Dim("nloc", min=1), \
        torch.export.Dim("nnei", min=1)
    ep = torch.export.export(gm, (coord, atype, nlist),
                             dynamic_shapes=({1: dall}, {1: dall}, {1: dloc, 2: dnei}))
    meta = {"format": "deepmd_md.pt2", "version": 1, "type_map": TYPE_MAP, "rcut": RCUT,
            "sel": [40, 40], "nnei": 80, "dim_fparam": 0, "dim_aparam": 0,
            "precision": "float64", "message_passing": False,
            "outputs": {"energy": {"reducible": True, "r_differentiable": True,
                                   "c_differentiable": True}}}
    torch._inductor.aoti_compile_and_package(
        ep, package_path=out_pt2,
        inductor_configs={"aot_inductor.metadata": {"deepmd_md.metadata": json.dumps(meta)}})
    if out_pth:
        save_mock(out_pth, TYPE_MAP, rcut=RCUT, seed=0)


if __name__ == "__main__":
    main(*sys.argv[1:])

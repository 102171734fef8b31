"""ASE calculator: `atoms.calc = DP("frozen_model.pth")` (energy, forces, stress, energies)."""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from deepmd_md.errors import DataError
from deepmd_md.infer import DeepPot


class DP(Calculator):
    """Deep potential for ASE. type_map: element -> model type (default: the model's type_map).

    Stress follows ASE's convention: -virial / volume, Voigt order (xx, yy, zz, yz, xz, xy).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, model: str, type_map: dict | None = None, backend: str | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.dp = DeepPot(model, backend)
        names = self.dp.get_type_map()
        self.type_dict = type_map or {n: i for i, n in enumerate(names)}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        symbols = self.atoms.get_chemical_symbols()
        missing = sorted(set(symbols) - set(self.type_dict))
        if missing:
            raise DataError(f"elements {missing} are not in the model's type_map "
                            f"{list(self.type_dict)}")
        atype = np.array([self.type_dict[s] for s in symbols])
        coord = self.atoms.get_positions().reshape(1, -1)
        pbc = self.atoms.pbc.any()
        box = self.atoms.cell.array.reshape(1, 9) if pbc else None
        e, f, v, ae, _ = self.dp.eval(coord, box, atype, atomic=True)
        self.results["energy"] = self.results["free_energy"] = float(e[0, 0])
        self.results["forces"] = f.reshape(-1, 3)
        self.results["energies"] = ae.reshape(-1)
        if pbc:
            stress = -v.reshape(3, 3) / self.atoms.get_volume()
            s = 0.5 * (stress + stress.T)
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2],
                                               s[0, 1]])

"""Refit a model's per-type energy bias (`bias_atom_e`, added to every atom's energy) on data,
as DeePMD-kit's `dp change-bias`:

  change: predict the frames with the model, then  bias += argmin_d |counts @ d - (E_label -
          E_pred)|^2  (the shift that best removes the energy error on these data)
  set:    bias = argmin_b |counts @ b - E_label|^2  (the statistic of the labels alone, as at
          the start of training)
  values: bias = the given numbers

counts [frames, ntypes] holds each frame's atoms per type. The least squares is
deepmd_md.data.stats.energy_bias (minimum-norm lstsq: a type absent from the data keeps its
bias in `change` mode, rank-deficient compositions such as water's fixed O:H get the
minimum-norm shift). Forces and virials do not depend on the bias.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deepmd_md.tools import ToolError


def load_systems(specs, type_map: list[str], nframes: int = 0) -> list:
    """Systems under `specs` (paths or folders searched for type.raw) with types remapped to
    `type_map`, the first `nframes` frames of each (0 = all); only those with energy labels."""
    from deepmd_md.data.system import find_systems, load_system, remap_types

    out = []
    for spec in specs:
        for path in find_systems(spec):
            s = remap_types(load_system(path), type_map)
            if s.energy is None:
                continue
            if nframes > 0:
                s = dataclasses.replace(s, **{k: getattr(s, k)[:nframes] for k in
                                              ("coord", "box", "energy", "force", "virial")
                                              if getattr(s, k) is not None})
            out.append(s)
    if not out:
        raise ToolError(f"no system with energy labels (energy.npy) under {' '.join(specs)}")
    return out


def predicted_energies(model_path: str, systems, backend: str | None = None) -> list:
    """[nf] energies of each system predicted by the model file (as `dpmd test` evaluates it)."""
    from deepmd_md.infer.deep_pot import DeepPot

    dp = DeepPot(model_path, backend)
    return [dp.eval(s.coord.reshape(s.nframes, -1), s.box, s.atype)[0][:, 0] for s in systems]


def new_bias(data: dict, mode: str, systems=(), values=None, model_path: str | None = None,
             backend: str | None = None) -> dict:
    """The refit of ModelData `data` (read from `model_path`, which `change` evaluates).

    Returns {"old": [nt], "new": [nt], "rmse_per_atom": energy RMSE per atom on the data with
    the new bias (None unless `change`), "nframes": frames used}."""
    from deepmd_md.data.stats import energy_bias, type_counts

    old = np.asarray(data["buffers"]["bias_atom_e"], float)
    nt = old.shape[0]
    rcond = data["config"]["fitting_net"].get("rcond")
    if values is not None:
        if len(values) != nt:
            raise ToolError(f"-b gives {len(values)} values but the model has {nt} types "
                            f"{data['config']['type_map']}; give one per type, in that order")
        return {"old": old, "new": np.asarray(values, float), "rmse_per_atom": None,
                "nframes": 0}
    if mode == "set":
        new = energy_bias(systems, nt, rcond)
        preds = None
    elif mode == "change":
        preds = predicted_energies(model_path, systems, backend)
        resid = [dataclasses.replace(s, energy=s.energy - p) for s, p in zip(systems, preds,
                                                                            strict=True)]
        new = old + energy_bias(resid, nt, rcond)
    else:
        raise ToolError(f"unknown mode {mode!r}: use change or set")
    rmse = None
    if preds is not None:  # the error left after the shift, per atom (DeePMD-kit reports it)
        err = np.concatenate([(s.energy - p - type_counts(s, nt) @ (new - old)) / s.natoms
                              for s, p in zip(systems, preds, strict=True)])
        rmse = float(np.sqrt(np.mean(err**2)))
    return {"old": old, "new": np.asarray(new, float), "rmse_per_atom": rmse,
            "nframes": sum(s.nframes for s in systems)}


def with_bias(data: dict, bias) -> dict:
    """A copy of ModelData `data` (shallow except buffers) with bias_atom_e = bias, in the
    model's dtype."""
    old = data["buffers"]["bias_atom_e"]
    buffers = dict(data["buffers"])
    buffers["bias_atom_e"] = np.asarray(bias, dtype=np.asarray(old).dtype)
    return {**data, "buffers": buffers}

"""DeePMD-kit se_e2_a (type_one_side) state dict -> deepmd_md ModelData with the same weights."""

from __future__ import annotations

import numpy as np


def to_model_data(state: dict, model_section: dict) -> dict:
    from deepmd_md.model.model import init_model

    w = state
    data = init_model(model_section)
    nt = len(model_section["type_map"])
    for part, pre in (("descriptor", "descriptor.sea.filter_layers.networks"),
                      ("fitting", "fitting_net.filter_layers.networks")):
        for t in range(nt):
            for li, layer in enumerate(data["params"][part][f"t{t}"]["layers"]):
                for ours, theirs in (("w", "matrix"), ("b", "bias"), ("idt", "idt")):
                    if ours in layer:
                        src = w[f"{pre}.{t}.layers.{li}.{theirs}"]
                        assert src.shape == layer[ours].shape, (part, t, li, ours)
                        layer[ours] = src
    data["buffers"]["descriptor"]["davg"] = w["descriptor.sea.mean"][:, 0, :]
    data["buffers"]["descriptor"]["dstd"] = w["descriptor.sea.stddev"][:, 0, :]
    data["buffers"]["bias_atom_e"] = (np.ravel(w["out_bias"])
                                      + np.ravel(w["fitting_net.bias_atom_e"]))
    return data

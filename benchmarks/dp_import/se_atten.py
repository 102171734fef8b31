"""DeePMD-kit DPA-1 (se_atten / dpa1 / se_atten_v2) state dict -> deepmd_md ModelData with the
same weights, and a check against DeePMD-kit's own outputs on the water example (`main`).

    .venv/bin/python benchmarks/dp_import/se_atten.py [/tmp/dp_oracle/se_atten_v2 ...]

For each oracle folder (default: /tmp/dp_oracle/se_atten_v2 and /tmp/dp_oracle/se_atten, those
present) reads input.json, state_final.npz and ref.npz (e, f, v and descriptor of DeePMD-kit's
DeepPot on the first frames of examples/water/data/data_3), and state_init.npz/ref_init.npz
when present, and prints max |dE|/atom, |dF|, |dV|/atom and |dD| of our model (torch backend;
D on NumPy) with DeePMD-kit's weights.

se_atten's default (smooth_type_embedding false, attn_dotr true) is ill-conditioned at rcut, in
DeePMD-kit too: a neighbor within ~2e-4 A of rcut has an env row below the 1e-12 floor of the
r^ normalisation, so r^ = row x 1e12 carries the switch's rounding (relative 1e-3 there, from
cancellation) into the attention. DeePMD-kit's own forces then move by ~1e-7 eV/A under a rigid
translation of the water frames; ours differ from its by less (see the final report).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `dp_import` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dp_import.common import (  # noqa: E402
    copy_layer,
    copy_net,
    energy_bias,
    strip_prefix,
)
from dp_import.common import main as _main  # noqa: E402


def descriptor_from_state(params: dict, state: dict, pre: str = "descriptor.") -> dict:
    """Fill our se_atten descriptor params (in place) from `state` (DeePMD-kit names under
    `pre`); returns the statistics tree {davg, dstd} ([nt, 4], DeePMD-kit's are per slot)."""
    copy_net(params["type_embedding"], state, f"{pre}type_embedding.embedding.embedding_net")
    blk = f"{pre}se_atten"
    copy_net(params["embedding"], state, f"{blk}.filter_layers.networks.0")
    if "embedding_strip" in params:
        copy_net(params["embedding_strip"], state, f"{blk}.filter_layers_strip.networks.0")
    else:
        assert f"{blk}.filter_layers_strip.networks.0.layers.0.matrix" not in state
    for i, layer in enumerate(params["attention"]):
        lp = f"{blk}.dpa1_attention.attention_layers.{i}"
        copy_layer(layer["in_proj"], state, f"{lp}.attention_layer.in_proj")
        copy_layer(layer["out_proj"], state, f"{lp}.attention_layer.out_proj")
        if "ln" in layer:
            copy_layer(layer["ln"], state, f"{lp}.attn_layer_norm")
        else:  # trainable_ln false: DeePMD-kit keeps the fixed scale 1 and shift 0
            assert np.all(state[f"{lp}.attn_layer_norm.matrix"] == 1.0)
            assert np.all(state[f"{lp}.attn_layer_norm.bias"] == 0.0)
    n = len(params["attention"])
    assert f"{blk}.dpa1_attention.attention_layers.{n}.attention_layer.in_proj.matrix" not in state
    mean, std = np.asarray(state[f"{blk}.mean"]), np.asarray(state[f"{blk}.stddev"])
    assert np.all(mean == mean[:, :1]) and np.all(std == std[:, :1]), "stats differ by slot"
    return {"davg": mean[:, 0, :].copy(), "dstd": std[:, 0, :].copy()}


def to_model_data(state: dict, model_section: dict) -> dict:
    """ModelData of our normalised `model_section` (deepmd_md.config.normalize(...)["model"])
    holding DeePMD-kit's weights and statistics `state` (tensor names without the
    `model.Default.atomic_model.` prefix; with it is accepted too)."""
    from deepmd_md.model.model import init_model

    state = strip_prefix(state)
    data = init_model(model_section)
    p, b = data["params"], data["buffers"]
    stats = descriptor_from_state(p["descriptor"], state)
    b["descriptor"] = {k: v.astype(b["descriptor"][k].dtype) for k, v in stats.items()}
    copy_net(p["fitting"]["all"], state, "fitting_net.filter_layers.networks.0")
    b["bias_atom_e"] = energy_bias(state, b["bias_atom_e"])
    return data


def main() -> None:
    _main(to_model_data, [Path("/tmp/dp_oracle/se_atten_v2"), Path("/tmp/dp_oracle/se_atten")])


if __name__ == "__main__":
    main()

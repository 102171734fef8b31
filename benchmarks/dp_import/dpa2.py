"""DeePMD-kit DPA-2 (dpa2) state dict -> deepmd_md ModelData with the same weights, and a check
against DeePMD-kit's own outputs on the water example (`main`).

    .venv/bin/python benchmarks/dp_import/dpa2.py [/tmp/dp_oracle/dpa2 ...] [--ref ref.npz]

For each oracle folder (default: /tmp/dp_oracle/dpa2 and /tmp/dp_oracle/dpa2_small, those
present) reads input.json, state_final.npz and ref.npz (e, f, v of DeePMD-kit's DeepPot on the
first frames of examples/water/data/data_3; or --ref), and state_init.npz/ref_init.npz when
present, and prints max |dE|/atom, max |dF| and max |dV|/atom of our model (torch backend,
through a .dp file and DeepPot) with DeePMD-kit's weights and statistics.
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

LAYER_NAMES = {  # ours -> DeePMD-kit's (repformers.layers.<i>.)
    "linear1": "linear1", "linear2": "linear2", "g1_self_mlp": "g1_self_mlp",
    "proj_g1g2": "proj_g1g2", "proj_g1g1g2": "proj_g1g1g2",
    "attn2_mapqk": "attn2g_map.mapqk", "attn2_mapv": "attn2_mh_apply.mapv",
    "attn2_head_map": "attn2_mh_apply.head_map", "attn2_lm": "attn2_lm",
    "attn2_ev_head_map": "attn2_ev_apply.head_map", "attn1_mapq": "loc_attn.mapq",
    "attn1_mapkv": "loc_attn.mapkv", "attn1_head_map": "loc_attn.head_map",
}  # fmt: skip





def _stats(state: dict, pre: str) -> dict:
    """davg/dstd [nt, 4] from DeePMD-kit's per-slot [nt, nnei, 4] (equal over slots)."""
    return {"davg": np.asarray(state[f"{pre}.mean"])[:, 0, :].copy(),
            "dstd": np.asarray(state[f"{pre}.stddev"])[:, 0, :].copy()}


def descriptor_from_state(params: dict, state: dict, pre: str) -> dict:
    """Fill our dpa2 descriptor params (in place) from `state` (names under `pre`); returns
    the statistics tree."""
    copy_net(params["type_embedding"], state, f"{pre}type_embedding.embedding.embedding_net")
    for k in params["repinit"]:  # embedding (and embedding_strip)
        theirs = "filter_layers.networks.0" if k == "embedding" else "filter_layers_strip.networks.0"
        copy_net(params["repinit"][k], state, f"{pre}repinit.{theirs}")
    stats = {"repinit": _stats(state, f"{pre}repinit"),
             "repformer": _stats(state, f"{pre}repformers")}
    if "three_body" in params:
        copy_net(params["three_body"]["embedding"], state,
             f"{pre}repinit_three_body.filter_layers.networks.0")
        stats["three_body"] = _stats(state, f"{pre}repinit_three_body")
    copy_layer(params["g1_shape_tranform"], state, f"{pre}g1_shape_tranform")
    if "tebd_transform" in params:
        copy_layer(params["tebd_transform"], state, f"{pre}tebd_transform")
    rf = params["repformer"]
    copy_layer(rf["g2_embd"], state, f"{pre}repformers.g2_embd")
    for i, layer in enumerate(rf["layers"]):
        lp = f"{pre}repformers.layers.{i}"
        for k, v in layer.items():
            if k.endswith("_residual"):
                for j in range(len(v)):
                    src = np.asarray(state[f"{lp}.{k}.{j}"])
                    assert src.shape == v[j].shape, (lp, k, j)
                    v[j] = src.astype(v[j].dtype)
            else:
                copy_layer(v, state, f"{lp}.{LAYER_NAMES[k]}")
    return stats


def _keep_means(stats: dict, template: dict) -> dict:
    """Our stats keep no mean for set_davg_zero blocks (DeePMD-kit's is 0 there)."""
    out = {}
    for name, st in stats.items():
        if "davg" in template[name]:
            out[name] = st
        else:
            assert not np.any(st["davg"]), f"{name}: set_davg_zero but a non-zero mean"
            out[name] = {"dstd": st["dstd"]}
    return out


def to_model_data(state: dict, model_section: dict) -> dict:
    """ModelData of our normalised `model_section` holding DeePMD-kit's weights and statistics
    `state` (tensor names without the `model.Default.atomic_model.` prefix; with it is accepted
    too)."""
    from deepmd_md.model.model import init_model

    state = strip_prefix(state)
    data = init_model(model_section)
    p = data["params"]
    stats = descriptor_from_state(p["descriptor"], state, "descriptor.")
    data["buffers"]["descriptor"] = _keep_means(stats, data["buffers"]["descriptor"])
    copy_net(p["fitting"]["all"], state, "fitting_net.filter_layers.networks.0")
    data["buffers"]["bias_atom_e"] = energy_bias(state, data["buffers"]["bias_atom_e"])
    return data


def main() -> None:
    _main(to_model_data, [Path("/tmp/dp_oracle/dpa2"), Path("/tmp/dp_oracle/dpa2_small")])


if __name__ == "__main__":
    main()

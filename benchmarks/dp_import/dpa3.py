"""DeePMD-kit DPA-3 (dpa3) state dict -> deepmd_md ModelData with the same weights, and a check
against DeePMD-kit's own outputs on the water example (`main`).

    .venv/bin/python benchmarks/dp_import/dpa3.py [/tmp/dp_oracle/dpa3 ...]

For each oracle folder (default /tmp/dp_oracle/dpa3) reads input.json, state_final.npz and
ref.npz (e, f, v of DeePMD-kit's DeepPot on the first frames of examples/water/data/data_3),
and state_init.npz/ref_init.npz when present, and prints max |dE|/atom, max |dF| and
max |dV|/atom of our model (torch backend, through a .dp file and DeepPot) with DeePMD-kit's
weights and statistics.
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
)
from dp_import.common import main as _main  # noqa: E402

# our layer key -> DeePMD-kit's RepFlowLayer member
LAYER_NAMES = {"node_self": "node_self_mlp", "node_sym": "node_sym_linear",
               "node_edge": "node_edge_linear", "edge_self": "edge_self_linear",
               "edge_angle1": "edge_angle_linear1", "edge_angle2": "edge_angle_linear2",
               "angle_self": "angle_self_linear", "a_compress_n": "a_compress_n_linear",
               "a_compress_e": "a_compress_e_linear"}





def descriptor_from_state(params: dict, state: dict, pre: str = "descriptor.") -> dict:
    """Fill our dpa3 descriptor params (in place) from `state` (DeePMD-kit names under `pre`);
    returns the statistics tree {davg, dstd} ([nt, 4]; DeePMD-kit's are per slot, all equal)."""
    copy_net(params["type_embedding"], state, f"{pre}type_embedding.embedding.embedding_net")
    blk = f"{pre}repflows"
    copy_layer(params["edge_embd"], state, f"{blk}.edge_embd")
    if "angle_embd" in params:  # else no layer reads angles (repflow.reads_angles)
        copy_layer(params["angle_embd"], state, f"{blk}.angle_embd")
    for i, lp in enumerate(params["layers"]):
        pre_l = f"{blk}.layers.{i}"
        # our last layer has node parameters only (repflow.node_only), the one before it no
        # angle update (repflow.keeps_angle_update): DeePMD-kit's updates there reach no
        # output, so those tensors are left out
        last = "edge_self" not in lp or "angle_self" not in lp
        for ours, theirs in LAYER_NAMES.items():
            if ours in lp:
                copy_layer(lp[ours], state, f"{pre_l}.{theirs}")
            else:
                assert last or f"{pre_l}.{theirs}.matrix" not in state, f"{pre_l}.{theirs}"
        for key in ("n_residual", "e_residual", "a_residual"):
            if key in lp:
                rows = [np.asarray(state[f"{pre_l}.{key}.{k}"]) for k in range(lp[key].shape[0])]
                lp[key] = np.stack(rows).astype(lp[key].dtype)
                assert f"{pre_l}.{key}.{len(rows)}" not in state, f"{pre_l}.{key}: more terms"
            else:
                assert last or f"{pre_l}.{key}.0" not in state, f"{pre_l}.{key} unused"
    n = len(params["layers"])
    assert f"{blk}.layers.{n}.node_self_mlp.matrix" not in state, "more layers"
    mean, std = np.asarray(state[f"{blk}.mean"]), np.asarray(state[f"{blk}.stddev"])
    assert np.all(mean == mean[:, :1]) and np.all(std == std[:, :1]), "stats differ by slot"
    return {"davg": mean[:, 0, :].copy(), "dstd": std[:, 0, :].copy()}


def to_model_data(state: dict, model_section: dict) -> dict:
    """ModelData of our normalised `model_section` (deepmd_md.config.normalize(...)["model"])
    holding DeePMD-kit's weights and statistics `state` (tensor names without the
    `model.Default.atomic_model.` prefix; with it, or with `atomic_model.`, is accepted too)."""
    from deepmd_md.model.model import init_model

    for pre in ("model.Default.atomic_model.", "atomic_model."):  # a training checkpoint's, a bare model's
        state = {k[len(pre):] if k.startswith(pre) else k: v for k, v in state.items()}
    data = init_model(model_section)
    p, b = data["params"], data["buffers"]
    stats = descriptor_from_state(p["descriptor"], state)
    b["descriptor"] = {k: v.astype(b["descriptor"][k].dtype) for k, v in stats.items()}
    copy_net(p["fitting"]["all"], state, "fitting_net.filter_layers.networks.0")
    b["bias_atom_e"] = energy_bias(state, b["bias_atom_e"])
    return data


def main() -> None:
    _main(to_model_data, [Path("/tmp/dp_oracle/dpa3")])


if __name__ == "__main__":
    main()

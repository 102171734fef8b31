"""Dense nets: DeePMD-kit's layer layout (which layers carry a timestep) and residual rule."""

from __future__ import annotations

import numpy as np
from helpers import model_config

from deepmd_md.model.model import init_model
from deepmd_md.model.nn import apply_embedding_fm, apply_net, init_net


def test_timestep_only_on_residual_layers():
    """With resnet_dt, DeePMD-kit gives `idt` to the layers that have a residual only: the
    fitting net descriptor -> 240 -> 240 -> 240 -> 1 has it on its 2nd and 3rd layers (this is
    the layout of DeePMD-kit 3.2's serialised water model)."""
    cfg = model_config()
    cfg["descriptor"].update(neuron=[4, 8, 16], resnet_dt=True)
    cfg["fitting_net"].update(neuron=[12, 12, 12], resnet_dt=True)
    params = init_model(cfg, 1)["params"]
    fit = params["fitting"]["t0"]["layers"]
    assert ["idt" in layer for layer in fit] == [False, True, True, False]
    emb = params["descriptor"]["t0"]["layers"]  # 1 -> 4 (none), 4 -> 8 and 8 -> 16 (concat)
    assert ["idt" in layer for layer in emb] == [False, True, True]


def test_residual_rule_by_hand():
    rng = np.random.default_rng(0)
    emb = init_net(rng, [1, 3, 6, 6], True, np.float64, embedding=True)
    x = rng.normal(size=(5, 1))
    h = x
    for i, layer in enumerate(emb["layers"]):
        y = np.tanh(h @ layer["w"] + layer["b"]) * layer.get("idt", 1.0)
        h = y if i == 0 else (y + np.concatenate([h, h], -1) if i == 1 else y + h)
    np.testing.assert_allclose(apply_net(emb, x, "tanh", embedding=True), h, rtol=1e-14)
    # the feature-major form the descriptor runs: the same rule on x^T
    np.testing.assert_allclose(apply_embedding_fm(emb, x.T, "tanh").T, h, rtol=1e-14)
    assert apply_embedding_fm(emb, np.zeros((1, 0)), "tanh").shape == (6, 0)  # no pairs
    fit = init_net(rng, [6, 4, 4, 1], True, np.float64, final_linear=True)
    h = rng.normal(size=(5, 6))
    want = np.tanh(h @ fit["layers"][0]["w"] + fit["layers"][0]["b"])
    l1 = fit["layers"][1]
    want = want + np.tanh(want @ l1["w"] + l1["b"]) * l1["idt"]
    want = want @ fit["layers"][2]["w"] + fit["layers"][2]["b"]
    np.testing.assert_allclose(apply_net(fit, h, "tanh", embedding=False, final_linear=True),
                               want, rtol=1e-14)

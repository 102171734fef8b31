"""Tiny DPA-2 descriptors for the shared physics, backend and path tests (tests/helpers.py).

"small": the switches of DeePMD-kit's small water example (three-body block, convolution and
symmetrizations only, res_residual, narrow switch bands on the inner cutoffs); "switched": every
update switch the other way (g1 and g2 attention, g1 x g1, h2 update with the gate, conv and self
MLP inside the g1 MLP), res_incr, direct distances, strip type embedding, the type embedding
added to repinit's output and not appended. Cutoffs: repinit 3.5 (the model's), repformer and
three-body 3.0; their crossings are tested in tests/test_dpa2.py. nsel 24 / 18 hold the densest
shared test system (20 atoms in ORTHO_BOX: 21 neighbors within 3.5 A, 15 within 3.0 A)."""

_REPINIT = {"rcut": 3.5, "rcut_smth": 2.0, "nsel": 24, "neuron": [4, 8], "axis_neuron": 4,
            "tebd_dim": 4}
_REPFORMER = {"rcut": 3.0, "rcut_smth": 2.5, "nsel": 18, "nlayers": 2, "g1_dim": 8, "g2_dim": 4,
              "axis_neuron": 2, "attn1_hidden": 4, "attn1_nhead": 2, "attn2_hidden": 3,
              "attn2_nhead": 2}

TINY = {
    "small": {"type": "dpa2", "seed": 1,
              "repinit": {**_REPINIT, "use_three_body": True, "three_body_rcut": 3.0,
                          "three_body_rcut_smth": 2.5, "three_body_sel": 18,
                          "three_body_neuron": [2, 4]},
              "repformer": {**_REPFORMER, "update_g1_has_attn": False,
                            "update_g2_has_g1g1": False, "update_g2_has_attn": False,
                            "update_style": "res_residual", "update_residual": 0.01,
                            "attn2_has_gate": True}},
    "switched": {"type": "dpa2", "seed": 2, "add_tebd_to_repinit_out": True,
                "concat_output_tebd": False,
                "repinit": {**_REPINIT, "tebd_input_mode": "strip", "type_one_side": True},
                "repformer": {**_REPFORMER, "rcut_smth": 1.0, "update_h2": True,
                              "attn2_has_gate": True, "g1_out_conv": False,
                              "g1_out_mlp": False, "update_style": "res_incr",
                              "direct_dist": True, "use_sqrt_nnei": False}},
}

"""Tiny DPA-3 descriptors for the shared physics and backend tests (tests/helpers.py).

"default": DeePMD-kit's defaults (polynomial switch, edges without angles padded with
themselves, trainable residual weights); "smooth": the water example's switches (smooth edge
update, r-initialised edges, split angle compression, silut) with res_avg; "node_edge": no
angle update, res_incr, two edge-message heads, the type embedding appended. The exponential
switch cannot cut at rcut to rounding while still interacting 0.1 A inside it, so it is tested
in tests/test_dpa3.py instead of here."""

_BASE = {"n_dim": 16, "e_dim": 8, "a_dim": 8, "nlayers": 2, "e_rcut": 3.5, "e_rcut_smth": 1.0,
         "e_sel": 24, "a_rcut": 3.0, "a_rcut_smth": 1.5, "a_sel": 16, "axis_neuron": 4}

TINY = {
    "default": {"type": "dpa3", "repflow": dict(_BASE), "seed": 1},
    "smooth": {"type": "dpa3", "repflow": {**_BASE, "update_style": "res_avg",
                                            "smooth_edge_update": True, "edge_init_use_dist": True,
                                            "a_compress_rate": 1, "a_compress_e_rate": 2,
                                            "a_compress_use_split": True},
               "activation_function": "silut:3.0", "seed": 2},
    "node_edge": {"type": "dpa3", "repflow": {**_BASE, "update_angle": False,
                                               "update_style": "res_incr",
                                               "n_multi_edge_message": 2},
                  "concat_output_tebd": True, "seed": 3},
}

"""Tiny hybrid descriptors for the shared physics and backend tests (tests/helpers.py)."""

TINY = {
    "se_a+se_r": {"type": "hybrid", "list": [
        {"type": "se_e2_a", "sel": [16, 16], "rcut": 3.5, "rcut_smth": 1.0, "neuron": [4, 8],
         "axis_neuron": 4, "type_one_side": True},
        {"type": "se_e2_r", "sel": [12, 12], "rcut": 3.0, "rcut_smth": 0.5, "neuron": [4]},
    ]},
    # a mixed-type member: one distance-sorted list for both, one fitting net for all types
    "atten+se_r": {"type": "hybrid", "list": [
        {"type": "se_atten_v2", "sel": 20, "rcut": 3.5, "rcut_smth": 1.0, "neuron": [4, 8],
         "axis_neuron": 4, "tebd_dim": 4, "attn": 6, "attn_layer": 1, "seed": 3},
        {"type": "se_e2_r", "sel": [12, 12], "rcut": 3.0, "rcut_smth": 0.5, "neuron": [4]},
    ]},
}

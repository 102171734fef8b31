"""Tiny DPA-1 descriptors for the shared physics and backend tests (tests/helpers.py).

"v2": se_atten_v2 (strip, smooth) with two attention layers; "strip_one_side": se_atten in strip
mode with the smooth attention, the neighbor's type only, one layer without the angle gate and
without normalisation, a temperature, a resnet timestep and no type embedding in D.
Only smooth variants are here: se_atten's default (smooth_type_embedding false) is not
continuous at rcut, as DeePMD-kit's; the concat mode gives an empty slot the type of atom 0
(DeePMD-kit's rule), which permuting atoms changes when davg != 0. Both are tested in
tests/test_se_atten.py."""

_BASE = {"sel": 20, "rcut": 3.5, "rcut_smth": 1.0, "neuron": [4, 8], "axis_neuron": 4,
         "tebd_dim": 4, "attn": 6}

TINY = {
    "v2": {"type": "se_atten_v2", **_BASE, "attn_layer": 2, "seed": 1},
    "strip_one_side": {"type": "dpa1", **_BASE, "neuron": [4, 8, 16], "resnet_dt": True,
                       "tebd_input_mode": "strip", "smooth_type_embedding": True,
                       "type_one_side": True, "attn_layer": 1, "attn_dotr": False,
                       "normalize": False, "temperature": 0.8, "concat_output_tebd": False,
                       "set_davg_zero": False, "seed": 2},
}

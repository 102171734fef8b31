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

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "model.Default.atomic_model."


def _copy(dst: dict, state: dict, pre: str) -> None:
    """A layer {"w", "b"?, "idt"?} from DeePMD-kit's {matrix, bias, idt}."""
    for ours, theirs in (("w", "matrix"), ("b", "bias"), ("idt", "idt")):
        if ours in dst:
            src = np.asarray(state[f"{pre}.{theirs}"])
            assert src.shape == dst[ours].shape, (pre, ours, src.shape, dst[ours].shape)
            dst[ours] = src.astype(dst[ours].dtype)
        else:
            assert f"{pre}.{theirs}" not in state, f"{pre}.{theirs} has no place in our model"


def _net(dst: dict, state: dict, pre: str) -> None:
    for i, layer in enumerate(dst["layers"]):
        _copy(layer, state, f"{pre}.layers.{i}")
    assert f"{pre}.layers.{len(dst['layers'])}.matrix" not in state, f"{pre}: more layers"


def descriptor_from_state(params: dict, state: dict, pre: str = "descriptor.") -> dict:
    """Fill our se_atten descriptor params (in place) from `state` (DeePMD-kit names under
    `pre`); returns the statistics tree {davg, dstd} ([nt, 4], DeePMD-kit's are per slot)."""
    _net(params["type_embedding"], state, f"{pre}type_embedding.embedding.embedding_net")
    blk = f"{pre}se_atten"
    _net(params["embedding"], state, f"{blk}.filter_layers.networks.0")
    if "embedding_strip" in params:
        _net(params["embedding_strip"], state, f"{blk}.filter_layers_strip.networks.0")
    else:
        assert f"{blk}.filter_layers_strip.networks.0.layers.0.matrix" not in state
    for i, layer in enumerate(params["attention"]):
        lp = f"{blk}.dpa1_attention.attention_layers.{i}"
        _copy(layer["in_proj"], state, f"{lp}.attention_layer.in_proj")
        _copy(layer["out_proj"], state, f"{lp}.attention_layer.out_proj")
        if "ln" in layer:
            _copy(layer["ln"], state, f"{lp}.attn_layer_norm")
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

    state = {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}
    data = init_model(model_section)
    p, b = data["params"], data["buffers"]
    stats = descriptor_from_state(p["descriptor"], state)
    b["descriptor"] = {k: v.astype(b["descriptor"][k].dtype) for k, v in stats.items()}
    _net(p["fitting"]["all"], state, "fitting_net.filter_layers.networks.0")
    b["bias_atom_e"] = (np.ravel(state["out_bias"])
                        + np.ravel(state["fitting_net.bias_atom_e"])).astype(b["bias_atom_e"].dtype)
    return data


def descriptor(data: dict, coord, atype, box) -> np.ndarray:
    """Our descriptor D [nf, nat, out_dim] (NumPy) of frames coord [nf, nat, 3]."""
    from deepmd_md import keys
    from deepmd_md.model.descriptors import kind
    from deepmd_md.model.frames import extended_coord, prepare_frames

    prep = prepare_frames(data["config"], coord, atype, box)
    ext = extended_coord(coord, np.zeros((coord.shape[0], 3, 3)), prep[keys.MAPPING],
                         prep[keys.SHIFT])
    dcfg = data["config"]["descriptor"]
    return np.asarray(kind(dcfg).compute(dcfg, data["params"]["descriptor"],
                                         data["buffers"]["descriptor"], np.asarray(ext),
                                         prep[keys.EXT_ATYPE], prep[keys.NLIST]))


def compare(folder: Path, which: str = "final") -> tuple[float, float, float, float] | None:
    """(max |dE|/atom, max |dF|, max |dV|/atom, max |dD|) of our model holding DeePMD-kit's
    weights (state_{which}.npz) against DeePMD-kit's outputs (ref.npz, or ref_init.npz for
    "init"; D: its eval_descriptor, nan when absent)."""
    import tempfile

    from deepmd_md.config import normalize
    from deepmd_md.data.system import load_system
    from deepmd_md.infer.deep_pot import DeepPot
    from deepmd_md.serialize import save_dp

    ref_name = "ref.npz" if which == "final" else f"ref_{which}.npz"
    if not (folder / f"state_{which}.npz").is_file() or not (folder / ref_name).is_file():
        return None
    npz = np.load(folder / f"state_{which}.npz")
    cfg = normalize(json.loads((folder / "input.json").read_text()))
    data = to_model_data({k: npz[k] for k in npz.files}, cfg["model"])
    ref = np.load(folder / ref_name)
    nf = np.ravel(ref["e"]).shape[0]
    if "coord" in ref:  # the frames DeePMD-kit evaluated
        coord, box = ref["coord"].reshape(nf, -1, 3), ref["box"].reshape(nf, 9)
        atype = np.tile(ref["atype"].reshape(1, -1), (nf, 1))
    else:  # the first frames of data_3
        sysd = load_system(ROOT / "examples/water/data/data_3")
        coord, box = sysd.coord[:nf], sysd.box[:nf]
        atype = np.tile(sysd.atype, (nf, 1)) if sysd.atype.ndim == 1 else sysd.atype[:nf]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.dp")
        save_dp(data, path)
        e, f, v = DeepPot(path, backend="torch").eval(coord, box, atype)[:3]
    nat = coord.shape[1]
    de = float(np.abs(np.ravel(e) - np.ravel(ref["e"])).max() / nat)
    df = float(np.abs(np.ravel(f) - np.ravel(ref["f"])).max())
    dv = float(np.abs(np.ravel(v) - np.ravel(ref["v"])).max() / nat) if "v" in ref else float("nan")
    dd = (float(np.abs(descriptor(data, coord, atype, box) - ref["descriptor"]).max())
          if "descriptor" in ref else float("nan"))
    return de, df, dv, dd


def main() -> None:
    sys.path.insert(0, str(ROOT))
    folders = [Path(a) for a in sys.argv[1:]] or [Path("/tmp/dp_oracle/se_atten_v2"),
                                                  Path("/tmp/dp_oracle/se_atten")]
    worst = 0.0
    for folder in folders:
        for which in ("final", "init"):
            res = compare(folder, which)
            if res is None:
                print(f"{folder.name} ({which}): no state_{which}.npz / reference, skipped")
                continue
            de, df, dv, dd = res
            worst = max(worst, de, df)
            print(f"{folder.name} ({which} weights), data_3 frames: max |dE|/atom {de:.3e} eV, "
                  f"max |dF| {df:.3e} eV/A, max |dV|/atom {dv:.3e} eV, max |dD| {dd:.3e}")
    print(f"worst {worst:.3e} ({'<=' if worst <= 1e-10 else '>'} 1e-10)")


if __name__ == "__main__":
    main()

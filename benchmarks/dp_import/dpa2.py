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

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "model.Default.atomic_model."
LAYER_NAMES = {  # ours -> DeePMD-kit's (repformers.layers.<i>.)
    "linear1": "linear1", "linear2": "linear2", "g1_self_mlp": "g1_self_mlp",
    "proj_g1g2": "proj_g1g2", "proj_g1g1g2": "proj_g1g1g2",
    "attn2_mapqk": "attn2g_map.mapqk", "attn2_mapv": "attn2_mh_apply.mapv",
    "attn2_head_map": "attn2_mh_apply.head_map", "attn2_lm": "attn2_lm",
    "attn2_ev_head_map": "attn2_ev_apply.head_map", "attn1_mapq": "loc_attn.mapq",
    "attn1_mapkv": "loc_attn.mapkv", "attn1_head_map": "loc_attn.head_map",
}  # fmt: skip


def _copy(dst: dict, state: dict, pre: str) -> None:
    """A layer {"w", "b"?, "idt"?} from DeePMD-kit's {matrix, bias, idt}."""
    for ours, theirs in (("w", "matrix"), ("b", "bias"), ("idt", "idt")):
        if ours in dst:
            src = np.asarray(state[f"{pre}.{theirs}"])
            assert src.shape == dst[ours].shape, (pre, ours, src.shape, dst[ours].shape)
            dst[ours] = src.astype(dst[ours].dtype)


def _net(dst: dict, state: dict, pre: str) -> None:
    for i, layer in enumerate(dst["layers"]):
        _copy(layer, state, f"{pre}.layers.{i}")


def _stats(state: dict, pre: str) -> dict:
    """davg/dstd [nt, 4] from DeePMD-kit's per-slot [nt, nnei, 4] (equal over slots)."""
    return {"davg": np.asarray(state[f"{pre}.mean"])[:, 0, :].copy(),
            "dstd": np.asarray(state[f"{pre}.stddev"])[:, 0, :].copy()}


def descriptor_from_state(params: dict, state: dict, pre: str) -> dict:
    """Fill our dpa2 descriptor params (in place) from `state` (names under `pre`); returns
    the statistics tree."""
    _net(params["type_embedding"], state, f"{pre}type_embedding.embedding.embedding_net")
    for k in params["repinit"]:  # embedding (and embedding_strip)
        theirs = "filter_layers.networks.0" if k == "embedding" else "filter_layers_strip.networks.0"
        _net(params["repinit"][k], state, f"{pre}repinit.{theirs}")
    stats = {"repinit": _stats(state, f"{pre}repinit"),
             "repformer": _stats(state, f"{pre}repformers")}
    if "three_body" in params:
        _net(params["three_body"]["embedding"], state,
             f"{pre}repinit_three_body.filter_layers.networks.0")
        stats["three_body"] = _stats(state, f"{pre}repinit_three_body")
    _copy(params["g1_shape_tranform"], state, f"{pre}g1_shape_tranform")
    if "tebd_transform" in params:
        _copy(params["tebd_transform"], state, f"{pre}tebd_transform")
    rf = params["repformer"]
    _copy(rf["g2_embd"], state, f"{pre}repformers.g2_embd")
    for i, layer in enumerate(rf["layers"]):
        lp = f"{pre}repformers.layers.{i}"
        for k, v in layer.items():
            if k.endswith("_residual"):
                for j in range(len(v)):
                    src = np.asarray(state[f"{lp}.{k}.{j}"])
                    assert src.shape == v[j].shape, (lp, k, j)
                    v[j] = src.astype(v[j].dtype)
            else:
                _copy(v, state, f"{lp}.{LAYER_NAMES[k]}")
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

    state = {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}
    data = init_model(model_section)
    p = data["params"]
    stats = descriptor_from_state(p["descriptor"], state, "descriptor.")
    data["buffers"]["descriptor"] = _keep_means(stats, data["buffers"]["descriptor"])
    _net(p["fitting"]["all"], state, "fitting_net.filter_layers.networks.0")
    data["buffers"]["bias_atom_e"] = (np.ravel(state["out_bias"])
                                      + np.ravel(state["fitting_net.bias_atom_e"])).astype(
        data["buffers"]["bias_atom_e"].dtype)
    return data


def compare(folder: Path, which: str = "final", ref_path: Path | None = None):
    """(max |dE|/atom, max |dF|, max |dV|/atom) of our model holding DeePMD-kit's weights
    (state_{which}.npz) against DeePMD-kit's outputs (ref.npz, or ref_init.npz for "init")."""
    import tempfile

    from deepmd_md.config import normalize
    from deepmd_md.data.system import load_system
    from deepmd_md.infer.deep_pot import DeepPot
    from deepmd_md.serialize import save_dp

    ref_path = ref_path or folder / ("ref.npz" if which == "final" else f"ref_{which}.npz")
    if not (folder / f"state_{which}.npz").is_file() or not ref_path.is_file():
        return None
    npz = np.load(folder / f"state_{which}.npz")
    model = normalize(json.loads((folder / "input.json").read_text()))["model"]
    data = to_model_data({k: npz[k] for k in npz.files}, model)
    ref = np.load(ref_path)
    sysd = load_system(ROOT / "examples/water/data/data_3")
    nf = np.ravel(ref["e"]).shape[0]
    coord, box = sysd.coord[:nf], sysd.box[:nf]
    atype = np.tile(sysd.atype, (nf, 1)) if sysd.atype.ndim == 1 else sysd.atype[:nf]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.dp")
        save_dp(data, path)
        e, f, v = DeepPot(path, backend="torch").eval(coord, box, atype)[:3]
    nat = np.asarray(coord).reshape(nf, -1, 3).shape[1]
    de = float(np.abs(np.ravel(e) - np.ravel(ref["e"])).max() / nat)
    df = float(np.abs(np.ravel(f) - np.ravel(ref["f"])).max())
    dv = float(np.abs(np.ravel(v) - np.ravel(ref["v"])).max() / nat) if "v" in ref else float("nan")
    if "descriptor" in ref.files:
        dd = np.abs(descriptor(data, coord, atype, box) - ref["descriptor"].reshape(nf, nat, -1))
        print(f"  {folder.name} ({which}): max |dD| {dd.max():.3e} (DeepPot.eval_descriptor)")
    return de, df, dv


def descriptor(data: dict, coord, atype, box) -> np.ndarray:
    """Our descriptor D [nf, nat, out_dim] (NumPy), as DeePMD-kit's eval_descriptor."""
    from deepmd_md import keys
    from deepmd_md.model.comm import MappingExchange
    from deepmd_md.model.descriptors import dpa2
    from deepmd_md.model.frames import prepare_frames

    nf = len(coord)
    coord = np.asarray(coord, float).reshape(nf, -1, 3)
    box = np.asarray(box, float).reshape(nf, 9)
    prep = prepare_frames(data["config"], coord, atype, box)
    ext = np.take_along_axis(coord, prep[keys.MAPPING][..., None], axis=1) + prep[keys.SHIFT]
    return np.asarray(dpa2.compute(data["config"]["descriptor"], data["params"]["descriptor"],
                                   data["buffers"]["descriptor"], ext, prep[keys.EXT_ATYPE],
                                   prep[keys.NLIST], comm=MappingExchange(prep[keys.MAPPING])))


def main() -> None:
    """[folder ...] [--ref ref.npz]: each folder's state_final.npz (and state_init.npz) against
    its ref.npz (ref_init.npz), or against --ref for the final weights."""
    sys.path.insert(0, str(ROOT))
    args = sys.argv[1:]
    ref = None
    if "--ref" in args:
        i = args.index("--ref")
        ref = Path(args[i + 1])
        args = args[:i] + args[i + 2:]
    folders = [Path(a) for a in args] or [p for p in (Path("/tmp/dp_oracle/dpa2"),
                                                      Path("/tmp/dp_oracle/dpa2_small"))
                                          if p.is_dir()]
    worst = 0.0
    for folder in folders:
        for which in ("final", "init"):
            res = compare(folder, which, ref if which == "final" else None)
            if res is None:
                print(f"{folder.name} ({which}): no state_{which}.npz / reference, skipped")
                continue
            de, df, dv = res
            worst = max(worst, de, df)
            print(f"{folder.name} ({which} weights), data_3 frames: max |dE|/atom {de:.3e} eV, "
                  f"max |dF| {df:.3e} eV/A, max |dV|/atom {dv:.3e} eV")
    print(f"worst {worst:.3e} ({'<=' if worst <= 1e-10 else '>'} 1e-10)")


if __name__ == "__main__":
    main()

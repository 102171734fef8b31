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

import copy
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "model.Default.atomic_model."

# our layer key -> DeePMD-kit's RepFlowLayer member
LAYER_NAMES = {"node_self": "node_self_mlp", "node_sym": "node_sym_linear",
               "node_edge": "node_edge_linear", "edge_self": "edge_self_linear",
               "edge_angle1": "edge_angle_linear1", "edge_angle2": "edge_angle_linear2",
               "angle_self": "angle_self_linear", "a_compress_n": "a_compress_n_linear",
               "a_compress_e": "a_compress_e_linear"}


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
    """Fill our dpa3 descriptor params (in place) from `state` (DeePMD-kit names under `pre`);
    returns the statistics tree {davg, dstd} ([nt, 4]; DeePMD-kit's are per slot, all equal)."""
    _net(params["type_embedding"], state, f"{pre}type_embedding.embedding.embedding_net")
    blk = f"{pre}repflows"
    _copy(params["edge_embd"], state, f"{blk}.edge_embd")
    if "angle_embd" in params:  # else no layer reads angles (repflow.reads_angles)
        _copy(params["angle_embd"], state, f"{blk}.angle_embd")
    for i, lp in enumerate(params["layers"]):
        pre_l = f"{blk}.layers.{i}"
        # our last layer has node parameters only (repflow.node_only), the one before it no
        # angle update (repflow.keeps_angle_update): DeePMD-kit's updates there reach no
        # output, so those tensors are left out
        last = "edge_self" not in lp or "angle_self" not in lp
        for ours, theirs in LAYER_NAMES.items():
            if ours in lp:
                _copy(lp[ours], state, f"{pre_l}.{theirs}")
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

    for pre in (PREFIX, "atomic_model."):  # a training checkpoint's, a bare model's
        state = {k[len(pre):] if k.startswith(pre) else k: v for k, v in state.items()}
    data = init_model(model_section)
    p, b = data["params"], data["buffers"]
    stats = descriptor_from_state(p["descriptor"], state)
    b["descriptor"] = {k: v.astype(b["descriptor"][k].dtype) for k, v in stats.items()}
    _net(p["fitting"]["all"], state, "fitting_net.filter_layers.networks.0")
    b["bias_atom_e"] = (np.ravel(state["out_bias"])
                        + np.ravel(state["fitting_net.bias_atom_e"])).astype(b["bias_atom_e"].dtype)
    return data


def normalized_model(inp: dict) -> dict:
    """Our normalised `model` section of a DeePMD-kit input. Where the shared schema does not
    list silu/silut for the fitting net yet, normalise with a stand-in and put it back (the
    model code evaluates every activation of deepmd_md.model.nn)."""
    from deepmd_md.config import normalize
    from deepmd_md.errors import ConfigError

    try:
        return normalize(inp)["model"]
    except ConfigError as e:
        act = inp["model"]["fitting_net"].get("activation_function", "tanh")
        if "activation" not in str(e) or not act.startswith(("silu", "custom_silu")):
            raise
        inp = copy.deepcopy(inp)
        inp["model"]["fitting_net"]["activation_function"] = "tanh"
        model = normalize(inp)["model"]
        model["fitting_net"]["activation_function"] = act
        print(f"note: fitting activation {act!r} not in the shared schema yet ({e})")
        return model


def descriptor(data: dict, coord, atype, box) -> np.ndarray:
    """Our descriptor [nf, nat, out_dim] (NumPy, frame by frame)."""
    from deepmd_md import keys
    from deepmd_md.model.comm import MappingExchange
    from deepmd_md.model.frames import extended_coord, prepare_frames
    from deepmd_md.model.model import descriptor_kind

    cfg = data["config"]
    out = []
    for i in range(coord.shape[0]):
        c, t, b = coord[i:i + 1].reshape(1, -1, 3), atype[i:i + 1], box[i:i + 1]
        prep = prepare_frames(cfg, c, t, b)
        ext = extended_coord(c, np.zeros((1, 3, 3)), prep[keys.MAPPING], prep[keys.SHIFT])
        out.append(descriptor_kind(cfg).compute(
            cfg["descriptor"], data["params"]["descriptor"], data["buffers"]["descriptor"], ext,
            prep[keys.EXT_ATYPE], prep[keys.NLIST], comm=MappingExchange(prep[keys.MAPPING])))
    return np.concatenate(out)


def compare(folder: Path, which: str = "final") -> tuple[float, float, float] | None:
    """(max |dE|/atom, max |dF|, max |dV|/atom) of our model holding DeePMD-kit's weights
    (state_{which}.npz) against DeePMD-kit's outputs (ref.npz, or ref_init.npz for "init");
    prints max |dD| too where the reference holds DeePMD-kit's descriptor."""
    import tempfile

    from deepmd_md.data.system import load_system
    from deepmd_md.infer.deep_pot import DeepPot
    from deepmd_md.serialize import save_dp

    ref_name = "ref.npz" if which == "final" else f"ref_{which}.npz"
    if not (folder / f"state_{which}.npz").is_file() or not (folder / ref_name).is_file():
        return None
    npz = np.load(folder / f"state_{which}.npz")
    model = normalized_model(json.loads((folder / "input.json").read_text()))
    data = to_model_data({k: npz[k] for k in npz.files}, model)
    ref = np.load(folder / ref_name)
    sysd = load_system(ROOT / "examples/water/data/data_3")
    nf = np.ravel(ref["e"]).shape[0]
    coord, box = sysd.coord[:nf], sysd.box[:nf]
    atype = np.tile(sysd.atype, (nf, 1)) if sysd.atype.ndim == 1 else sysd.atype[:nf]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.dp")
        save_dp(data, path)
        dp = DeepPot(path, backend="torch")
        # frame by frame: one 192-atom water frame of the full model takes ~6.6 GB on torch
        outs = [dp.eval(coord[i:i + 1], box[i:i + 1], atype[i:i + 1])[:3] for i in range(nf)]
        e, f, v = (np.concatenate([np.reshape(o[k], (1, -1)) for o in outs]) for k in range(3))
    nat = coord.shape[1]
    if "descriptor" in ref.files:
        d_ref = np.asarray(ref["descriptor"]).reshape(nf, nat, -1)
        d = descriptor(data, coord, atype, box)
        print(f"{folder.name} ({which}): max |dD| {np.abs(d - d_ref).max():.3e} "
              f"(|D| up to {np.abs(d_ref).max():.3g})")
    de = float(np.abs(np.ravel(e) - np.ravel(ref["e"])).max() / nat)
    df = float(np.abs(np.ravel(f) - np.ravel(ref["f"])).max())
    dv = float(np.abs(np.ravel(v) - np.ravel(ref["v"])).max() / nat) if "v" in ref else float("nan")
    return de, df, dv


def main() -> None:
    sys.path.insert(0, str(ROOT))
    folders = [Path(a) for a in sys.argv[1:]] or [Path("/tmp/dp_oracle/dpa3")]
    worst = 0.0
    for folder in folders:
        for which in ("final", "init"):
            res = compare(folder, which)
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

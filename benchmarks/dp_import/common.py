"""What every importer shares: copying DeePMD-kit's layers into ours, our descriptor on frames,
and the comparison of a model holding DeePMD-kit's weights with DeePMD-kit's own outputs."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "model.Default.atomic_model."


def strip_prefix(state: dict) -> dict:
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}


def copy_layer(dst: dict, state: dict, pre: str) -> None:
    """A layer {"w", "b"?, "idt"?} from DeePMD-kit's {matrix, bias, idt}; shapes must agree and
    a tensor with no place in ours is an error (nothing silently dropped)."""
    for ours, theirs in (("w", "matrix"), ("b", "bias"), ("idt", "idt")):
        if ours in dst:
            src = np.asarray(state[f"{pre}.{theirs}"])
            assert src.shape == dst[ours].shape, (pre, ours, src.shape, dst[ours].shape)
            dst[ours] = src.astype(dst[ours].dtype)
        else:
            assert f"{pre}.{theirs}" not in state, f"{pre}.{theirs} has no place in our model"


def copy_net(dst: dict, state: dict, pre: str) -> None:
    for i, layer in enumerate(dst["layers"]):
        copy_layer(layer, state, f"{pre}.layers.{i}")
    assert f"{pre}.layers.{len(dst['layers'])}.matrix" not in state, f"{pre}: more layers"


def energy_bias(state: dict, like) -> np.ndarray:
    """DeePMD-kit keeps the per-type energy bias in out_bias (+ the fitting's bias_atom_e)."""
    return (np.ravel(state["out_bias"]) + np.ravel(state["fitting_net.bias_atom_e"])).astype(
        like.dtype)


def descriptor(data: dict, coord, atype, box) -> np.ndarray:
    """Our descriptor D [nf, nat, out_dim] (NumPy, frame by frame), as DeePMD-kit's
    DeepPot.eval_descriptor."""
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


def _frames(ref, nf: int):
    """The frames DeePMD-kit evaluated (stored with the reference), else data_3's first nf."""
    from deepmd_md.data.system import load_system

    if "coord" in ref:
        return (ref["coord"].reshape(nf, -1, 3), ref["box"].reshape(nf, 9),
                np.tile(ref["atype"].reshape(1, -1), (nf, 1)))
    s = load_system(ROOT / "examples/water/data/data_3")
    atype = np.tile(s.atype, (nf, 1)) if s.atype.ndim == 1 else s.atype[:nf]
    return s.coord[:nf], s.box[:nf], atype


def compare(to_model_data, folder: Path, which: str = "final", ref_path: Path | None = None):
    """(max |dE|/atom, max |dF|, max |dV|/atom, max |dD|) of our model holding DeePMD-kit's
    weights (state_{which}.npz) against DeePMD-kit's outputs (ref.npz, ref_init.npz for
    "init", or ref_path; D: its eval_descriptor, nan when absent); None without files."""
    from deepmd_md.config import normalize
    from deepmd_md.infer.deep_pot import DeepPot
    from deepmd_md.serialize import save_dp

    ref_path = ref_path or folder / ("ref.npz" if which == "final" else f"ref_{which}.npz")
    if not (folder / f"state_{which}.npz").is_file() or not ref_path.is_file():
        return None
    npz = np.load(folder / f"state_{which}.npz")
    model = normalize(json.loads((folder / "input.json").read_text()))["model"]
    data = to_model_data({k: npz[k] for k in npz.files}, model)
    ref = np.load(ref_path)
    nf = np.ravel(ref["e"]).shape[0]
    coord, box, atype = _frames(ref, nf)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.dp")
        save_dp(data, path)
        e, f, v = DeepPot(path, backend="torch").eval(coord, box, atype)[:3]  # frame by frame
    nat = coord.shape[1]
    de = float(np.abs(np.ravel(e) - np.ravel(ref["e"])).max() / nat)
    df = float(np.abs(np.ravel(f) - np.ravel(ref["f"])).max())
    dv = float(np.abs(np.ravel(v) - np.ravel(ref["v"])).max() / nat) if "v" in ref else np.nan
    dd = (float(np.abs(descriptor(data, coord, atype, box)
                       - np.asarray(ref["descriptor"]).reshape(nf, nat, -1)).max())
          if "descriptor" in ref.files else np.nan)
    return de, df, dv, dd


def main(to_model_data, default_folders: list[Path]) -> None:
    """[folder ...] [--ref ref.npz]: each oracle folder's state_final.npz (and state_init.npz)
    against its ref.npz (ref_init.npz), or against --ref for the final weights; exit status 1
    when any |dE|/atom or |dF| is above 1e-10."""
    sys.path.insert(0, str(ROOT))
    args = sys.argv[1:]
    ref = None
    if "--ref" in args:
        i = args.index("--ref")
        ref = Path(args[i + 1])
        args = args[:i] + args[i + 2:]
    folders = [Path(a) for a in args] or [p for p in default_folders if p.is_dir()]
    worst = 0.0
    for folder in folders:
        for which in ("final", "init"):
            res = compare(to_model_data, folder, which, ref if which == "final" else None)
            if res is None:
                print(f"{folder.name} ({which}): no state_{which}.npz / reference, skipped")
                continue
            de, df, dv, dd = res
            worst = max(worst, de, df)
            print(f"{folder.name} ({which} weights), data_3 frames: max |dE|/atom {de:.3e} eV, "
                  f"max |dF| {df:.3e} eV/A, max |dV|/atom {dv:.3e} eV, max |dD| {dd:.3e}")
    print(f"worst {worst:.3e} ({'<=' if worst <= 1e-10 else '>'} 1e-10)")
    sys.exit(0 if worst <= 1e-10 else 1)

"""DeePMD-kit 3.x models -> our ModelData (same weights, same energies and forces).

    from deepmd_md.interop import is_deepmd_kit, read_deepmd_kit
    data = read_deepmd_kit("model.dp")   # or .yaml, a frozen .pth, a training checkpoint .pt

Reads DeePMD-kit's backend-neutral serialization (`dp convert-backend x.pth x.dp|x.yaml`)
without DeePMD-kit; its PyTorch files need PyTorch only (interop/torch_files.py). The model's
definition comes from the `model_def_script` saved with it (interop/config.py), the weights from
the serialized tree (interop/mapping.py). Energy models with the descriptors we implement
(se_e2_a, se_e2_r, se_atten / dpa1, se_atten_v2, dpa2, dpa3, hybrid of them); anything else is
one error naming the piece.
"""

from __future__ import annotations

import os

from deepmd_md.errors import DPMDError, ModelFileError

SUFFIXES = (".dp", ".yaml", ".yml", ".pth", ".pt")


def is_deepmd_kit(path: str) -> bool:
    """Whether `path` is a DeePMD-kit model file (not one of ours under the same suffix)."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path) or ext not in SUFFIXES:
        return False
    if ext in (".yaml", ".yml"):
        return True
    if ext == ".dp":
        from deepmd_md.interop.serial import is_deepmd_kit_dp

        return is_deepmd_kit_dp(path)
    from deepmd_md.interop.torch_files import is_deepmd_kit_torch

    return is_deepmd_kit_torch(path)


def read_deepmd_kit(path: str) -> dict:
    """ModelData holding the weights and statistics of DeePMD-kit model file `path`."""
    from deepmd_md.interop import mapping
    from deepmd_md.interop.config import model_section
    from deepmd_md.interop.serial import load
    from deepmd_md.model.model import init_model

    tree = load(path)
    model = tree.get("model")
    if not isinstance(model, dict) or "descriptor" not in model:
        kind = model.get("type") if isinstance(model, dict) else None
        raise ModelFileError(f"{path}: DeePMD-kit model kind '{kind}' is not implemented here "
                             "(energy models with one descriptor and one fitting)")
    if model.get("type", "standard") != "standard":
        raise ModelFileError(f"{path}: DeePMD-kit model type '{model['type']}' is not "
                             "implemented here")
    try:
        cfg = model_section(tree.get("model_def_script"), model)
        data = init_model(cfg)
        p, b = data["params"], data["buffers"]
        b["descriptor"] = mapping.descriptor(p["descriptor"], b["descriptor"],
                                             model["descriptor"], cfg["descriptor"])
        mapping.fitting(p["fitting"], model["fitting"])
        mapping.fold_descriptor_scale(p["fitting"], cfg["descriptor"], len(cfg["type_map"]))
        b["bias_atom_e"] = mapping.energy_bias(model, b["bias_atom_e"])
    except DPMDError as e:
        raise type(e)(f"{path}: {e}") from None
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: unexpected DeePMD-kit model layout ({type(e).__name__}: "
                             f"{e})") from None
    return data

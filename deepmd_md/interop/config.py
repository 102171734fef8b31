"""DeePMD-kit's `model_def_script` (its input's `model` section, as saved with the model) ->
our normalised `model` section.

Our input schema already reads DeePMD-kit's keys (and rejects, naming them, those it does not
implement); what is left here are the bookkeeping keys DeePMD-kit adds when it saves a model,
which do not change the model's outputs."""

from __future__ import annotations

import copy

from deepmd_md.errors import ConfigError, ModelFileError

# keys DeePMD-kit writes into a saved model section: value check (None: any value is inert)
_MODEL_INERT = {
    "info": None, "model_branch_alias": None,
    "bridging_method": lambda v: v in (None, "None", "none"),
    "bridging_r_inner": None, "bridging_r_outer": None,
}
_FITTING_INERT = {"default_fparam": lambda v: v is None}
_DESCRIPTOR_INERT = {"use_econf_tebd": lambda v: not v, "spin": lambda v: v is None}


def _drop(section: dict, inert: dict, where: str) -> None:
    for key, ok in inert.items():
        if key in section:
            value = section.pop(key)
            if ok is not None and not ok(value):
                raise ConfigError(f"DeePMD-kit setting '{where}/{key}' = {value!r} is not "
                                  "implemented here")


def _descriptor(d: dict, where: str) -> dict:
    from deepmd_md.model import descriptors

    d = dict(d)
    _drop(d, _DESCRIPTOR_INERT, where)
    t = d.get("type")
    known, alias = descriptors.schemas()
    if alias.get(t, t) not in known:
        raise ConfigError(f"DeePMD-kit descriptor '{t}' is not implemented here "
                          f"(known: {', '.join(known)})")
    if t == "hybrid":
        d["list"] = [_descriptor(s, f"{where}/list/{i}") for i, s in enumerate(d["list"])]
    return d


def model_section(script: dict, serialized: dict | None = None) -> dict:
    """Our normalised `model` section for DeePMD-kit's saved model section `script`.

    serialized: the model's serialized tree (for the `sel` lists DeePMD-kit resolved from
    "auto" at training time)."""
    from deepmd_md.config import normalize

    if not isinstance(script, dict) or "descriptor" not in script:
        raise ModelFileError("the DeePMD-kit model carries no model definition "
                             "(model_def_script / model_params)")
    m = copy.deepcopy(script)
    if m.get("type", "standard") != "standard" or "fitting_net" not in m:
        kind = m.get("type") if m.get("type", "standard") != "standard" else "multi-task"
        raise ConfigError(f"DeePMD-kit model type '{kind}' is not implemented here "
                          "(energy models only)")
    _drop(m, _MODEL_INERT, "model")
    fit = m["fitting_net"] = dict(m["fitting_net"])
    _drop(fit, _FITTING_INERT, "model/fitting_net")
    if fit.get("type", "ener") != "ener":
        raise ConfigError(f"DeePMD-kit fitting '{fit['type']}' is not implemented here "
                          "(energy fitting only)")
    m["descriptor"] = _descriptor(m["descriptor"], "model/descriptor")
    if serialized is not None:
        _as_built(m["descriptor"], serialized["descriptor"])
        if serialized.get("type_map"):  # after `dp change-bias` / fine-tuning, the model's
            m["type_map"] = list(serialized["type_map"])
    stub = {"training_data": {"systems": "-"}, "numb_steps": 0}
    return normalize({"model": m, "training": stub})["model"]


_TYPED = ("se_e2_a", "se_a", "se_e2_r", "se_r")


def _as_built(d: dict, ser: dict) -> None:
    """Where the saved script and the model differ, the model as built wins: 'auto' sel -> the
    widths resolved at training time; type_one_side of se_e2_r, which DeePMD-kit 3.2 builds
    one-sided whatever the script says (its serialized se_r says so, with one net per type)."""
    if d.get("type") == "hybrid":
        for sub, s in zip(d["list"], ser.get("list", []), strict=False):
            _as_built(sub, s)
        return
    if isinstance(d.get("sel"), str) and "sel" in ser:
        d["sel"] = ser["sel"] if d["type"] in _TYPED else sum(ser["sel"])
    if d.get("type") in _TYPED and "type_one_side" in ser:
        d["type_one_side"] = bool(ser["type_one_side"])
    elif d.get("type") in _TYPED and isinstance(ser.get("embeddings"), dict):
        # a PyTorch state dict says it by its count of nets: one per type, or per type pair
        nets = ser["embeddings"].get("networks") or []
        ntypes = len(d["sel"]) if isinstance(d.get("sel"), list) else 0
        if ntypes > 1 and len(nets) in (ntypes, ntypes * ntypes):
            d["type_one_side"] = len(nets) == ntypes

"""Arg builders and value checks shared by the schema of args.py and the descriptor modules
(each descriptor module declares its own keys with these, see model/descriptors)."""

from __future__ import annotations

import re

from deepmd_md.config.schema import Arg

U = "unsupported"
IGN = "ignored"

# every activation of model/nn.py; silut / custom_silu take ":threshold" (default 3.0)
ACTIVATIONS = ("tanh", "gelu", "gelu_tf", "relu", "relu6", "softplus", "sigmoid", "silu", "silut",
               "custom_silu", "linear", "none")
PRECISIONS = ("default", "float64", "float32")
PRECISION_MAP = {"default": "float64"}  # DeePMD-kit v3's interface precision is float64

U = "unsupported"
IGN = "ignored"


def check_sel(value) -> str | None:
    if isinstance(value, str):
        if not re.fullmatch(r"auto(:\d+(\.\d*)?)?", value):
            return f"bad sel '{value}'; use a list of int, 'auto' or 'auto:factor' (e.g. auto:1.1)"
        return None
    if any(v < 0 for v in value):
        return "sel entries must be >= 0"
    return None


def check_neuron(value) -> str | None:
    return "every layer needs >= 1 neuron" if any(v < 1 for v in value) else None


def check_positive(value) -> str | None:
    return None if value is None or value > 0 else f"must be > 0, got {value}"


def check_nonneg(value) -> str | None:
    return None if value is None or value >= 0 else f"must be >= 0, got {value}"


def check_activation(value) -> str | None:
    base, _, arg = str(value).partition(":")
    if base not in ACTIVATIONS or (arg and base not in ("silut", "custom_silu")):
        return (f"unknown activation {value!r}; use one of {', '.join(ACTIVATIONS)} "
                "(silut and custom_silu as 'silut:threshold', e.g. silut:10.0)")
    try:
        float(arg or 0)
    except ValueError:
        return f"bad threshold in {value!r} (e.g. silut:10.0)"
    return None


def activation(doc_net: str, default: str = "tanh", name: str = "activation_function") -> Arg:
    return Arg(
        name,
        "str",
        default,
        f"Activation of the {doc_net} hidden layers: {', '.join(ACTIVATIONS)} ('none' = "
        "'linear'; silut:t and custom_silu:t with a threshold t, default 3.0).",
        check=check_activation,
    )


def precision(doc_net: str, default: str = "default") -> Arg:
    return Arg(
        "precision",
        "str",
        default,
        f"Floating point precision of the {doc_net} parameters; 'default' is float64.",
        choices=PRECISIONS,
        value_map=PRECISION_MAP,
    )



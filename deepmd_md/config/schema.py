"""A small declarative schema for input.json: Arg/Variant trees, normalisation and markdown docs.

Each Arg has a status:
  supported   - implemented;
  ignored     - accepted and harmless: it does not change the result (e.g. numb_test); a value
                other than the default is reported once at run time (inert_keys);
  unsupported - documented by DeePMD-kit and would change the result, but not implemented yet:
                only a value different from the default is an error.
Types are written as strings: "int", "float", "bool", "str", "dict", "None", "list",
"list[int]", "list[list[int]]", "list[float|None]", joined by "|" for alternatives.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deepmd_md.errors import ConfigError

__all__ = ["REQUIRED", "Arg", "Variant", "normalize_tree", "doc_tree", "inert_keys"]

class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
STATUSES = ("supported", "ignored", "unsupported")


@dataclass(frozen=True)
class Variant:
    """Sub-schemas chosen by the value of `flag` (e.g. descriptor `type`)."""

    flag: str
    choices: dict[str, tuple[Arg, ...]]
    default: str | None = None
    alias: dict[str, str] = field(default_factory=dict)  # alias -> canonical name
    unsupported: tuple[str, ...] = ()  # documented by DeePMD-kit, not implemented here
    doc: str = ""


@dataclass(frozen=True)
class Arg:
    name: str
    dtype: str
    default: Any = REQUIRED
    doc: str = ""
    alias: tuple[str, ...] = ()
    status: str = "supported"
    sub: tuple[Arg, ...] | None = None  # fields of a dict value
    # variant sub-fields of a dict value (or of each dict of a list value); a zero-argument
    # callable returning the Variant for a recursive schema (hybrid descriptors)
    variant: Variant | Callable[[], Variant] | None = None
    choices: tuple | None = None  # supported values
    unsupported_choices: tuple = ()  # documented values we do not implement yet
    value_map: dict | None = None  # value rewrites after checks, e.g. precision default
    check: Callable[[Any], str | None] | None = None  # returns an error text or None

    @property
    def optional(self) -> bool:
        return self.default is not REQUIRED


# -- types ------------------------------------------------------------------------------------


def _split_top(spec: str) -> list[str]:
    """Split 'a|list[b|c]|d' on the '|' outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in spec:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _matches(value: Any, spec: str) -> bool:
    for s in _split_top(spec):
        if s == "None" and value is None:
            return True
        if s == "bool" and isinstance(value, bool):
            return True
        if s == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if s == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if s == "str" and isinstance(value, str):
            return True
        if s == "dict" and isinstance(value, dict):
            return True
        if s.startswith("list") and isinstance(value, list):
            inner = s[5:-1] if s.startswith("list[") else None
            if inner is None or all(_matches(v, inner) for v in value):
                return True
    return False


def _type_name(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}
    if value is None:
        return "null"
    return names.get(type(value), type(value).__name__)


def _as_float(value: Any, spec: str) -> Any:
    """An int given where only float (not int) is accepted becomes a float (6 -> 6.0)."""
    alts = _split_top(spec)
    if isinstance(value, int) and not isinstance(value, bool) and "float" in alts:
        if "int" not in alts:
            return float(value)
    return value


# -- normalisation ----------------------------------------------------------------------------


def _closest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "valid keys: " + ", ".join(sorted(valid))


def _default_text(default: Any) -> str:
    import json

    return "" if default is None else f" or set it to {json.dumps(default)}"


def _value(value: Any, arg: Arg, path: str) -> Any:
    if not _matches(value, arg.dtype):
        raise ConfigError(
            f"'{path}' must be {arg.dtype.replace('None', 'null')}, "
            f"got {_type_name(value)} ({value!r})"
        )
    value = _as_float(value, arg.dtype)
    variant = arg.variant() if callable(arg.variant) else arg.variant  # callable: recursive
    if isinstance(value, dict) and (arg.sub is not None or variant is not None):
        value = normalize_tree(value, arg.sub or (), variant, path)
    elif isinstance(value, list) and (arg.sub is not None or variant is not None):
        value = [normalize_tree(v, arg.sub or (), variant, f"{path}/{i}")
                 for i, v in enumerate(value)]
    if arg.choices is not None and value not in arg.choices and value is not None:
        if value in arg.unsupported_choices:
            raise ConfigError(
                f"'{path}' = {value!r} is not supported yet by deepmd_md "
                f"(use one of {', '.join(map(str, arg.choices))})"
            )
        raise ConfigError(
            f"'{path}' = {value!r} is not valid; use one of {', '.join(map(str, arg.choices))}"
        )
    if arg.check is not None:
        err = arg.check(value)
        if err:
            raise ConfigError(f"'{path}': {err}")
    if arg.status != "supported" and value != arg.default:
        if arg.status == "unsupported":
            raise ConfigError(
                f"'{path}' is not supported yet by deepmd_md "
                f"(remove it{_default_text(arg.default)})"
            )
    if arg.value_map and isinstance(value, str | int | float) and value in arg.value_map:
        value = arg.value_map[value]
    return value


def _variant_args(data: dict, variant: Variant, path: str) -> tuple[str, tuple[Arg, ...]]:
    flag_path = f"{path}/{variant.flag}" if path else variant.flag
    name = data.get(variant.flag, variant.default)
    if name is None:
        raise ConfigError(f"'{flag_path}' is required; use one of {', '.join(variant.choices)}")
    if not isinstance(name, str):
        raise ConfigError(f"'{flag_path}' must be str, got {_type_name(name)} ({name!r})")
    name = variant.alias.get(name, name)
    if name in variant.unsupported:
        raise ConfigError(
            f"'{flag_path}' = '{name}' is not supported yet by deepmd_md "
            f"(use one of {', '.join(variant.choices)})"
        )
    if name not in variant.choices:
        valid = list(variant.choices) + list(variant.alias) + list(variant.unsupported)
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hint = (
            f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(variant.choices)}"
        )
        raise ConfigError(f"'{flag_path}' = '{name}' is unknown; {hint}")
    return name, variant.choices[name]


def normalize_tree(
    data: dict, args: tuple[Arg, ...], variant: Variant | None = None, path: str = ""
) -> dict:
    """Check `data` against args (+ the chosen variant's args) and return a new dict with
    comments (keys starting with '_') dropped, aliases resolved and defaults filled, in schema
    order. Raises ConfigError with one line naming the key."""
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("_"))}
    out: dict = {}
    if variant is not None:
        name, extra = _variant_args(data, variant, path)
        data.pop(variant.flag, None)
        args = (Arg(variant.flag, "str", name, variant.doc), *args, *extra)
    by_name = {a.name: a for a in args}
    alias = {al: a.name for a in args for al in a.alias}
    given: dict = {}
    for key, value in data.items():
        name = alias.get(key, key)
        kpath = f"{path}/{key}" if path else key
        if name not in by_name:
            raise ConfigError(f"unknown key '{kpath}'; {_closest(key, list(by_name))}")
        if name in given:
            raise ConfigError(f"'{kpath}' is given twice (as '{name}' and an alias); keep one")
        given[name] = value
    for arg in args:
        kpath = f"{path}/{arg.name}" if path else arg.name
        if variant is not None and arg.name == variant.flag:
            out[arg.name] = arg.default
        elif arg.name in given:
            out[arg.name] = _value(given[arg.name], arg, kpath)
        elif not arg.optional:
            raise ConfigError(f"missing required key '{kpath}'")
        elif isinstance(arg.default, dict) and (arg.sub is not None or arg.variant is not None):
            out[arg.name] = _value(copy.deepcopy(arg.default), arg, kpath)
        else:
            default = copy.deepcopy(arg.default)
            if arg.value_map and isinstance(default, str) and default in arg.value_map:
                default = arg.value_map[default]
            out[arg.name] = default
    return out


def inert_keys(data: dict, args: tuple[Arg, ...], variant: Variant | None = None,
               path: str = "") -> list[tuple[str, Any, Arg]]:
    """(path, value, arg) of every 'ignored' key whose value in the normalised `data` is not
    its default: what a run must report as having no effect. Walks variants and sub-dicts
    (and lists of them) as normalize_tree does."""
    out: list = []
    if variant is not None:
        args = (*args, *variant.choices.get(data.get(variant.flag), ()))
    for arg in args:
        if arg.name not in data:
            continue
        kpath = f"{path}/{arg.name}" if path else arg.name
        value = data[arg.name]
        if arg.status == "ignored" and value != arg.default:
            out.append((kpath, value, arg))
        var = arg.variant() if callable(arg.variant) else arg.variant
        if arg.sub is None and var is None:
            continue
        if isinstance(value, dict):
            out += inert_keys(value, arg.sub or (), var, kpath)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if isinstance(v, dict):
                    out += inert_keys(v, arg.sub or (), var, f"{kpath}/{i}")
    return out


# -- documentation ----------------------------------------------------------------------------


def _doc_arg(arg: Arg, path: str, lines: list[str], depth: int) -> None:
    import json

    kpath = f"{path}/{arg.name}" if path else arg.name
    head = "#" * min(depth + 2, 6)
    lines.append(f"{head} `{kpath}`\n")
    facts = [f"type: `{arg.dtype.replace('None', 'null')}`"]
    if arg.optional:
        facts.append(f"default: `{json.dumps(arg.default)}`")
    else:
        facts.append("required")
    if arg.alias:
        facts.append("alias: " + ", ".join(f"`{a}`" for a in arg.alias))
    if arg.status != "supported":
        facts.append(
            "**not supported yet** (only the default is accepted)"
            if arg.status == "unsupported"
            else "accepted, no effect"
        )
    if arg.choices is not None:
        facts.append("values: " + ", ".join(f"`{c}`" for c in arg.choices))
    lines.append(" · ".join(facts) + "\n")
    if arg.doc:
        lines.append(arg.doc + "\n")
    # a recursive (callable) variant is documented where it is defined, not again here
    doc_tree(arg.sub or (), None if callable(arg.variant) else arg.variant, kpath, lines,
             depth + 1)


def doc_tree(
    args: tuple[Arg, ...], variant: Variant | None, path: str, lines: list[str], depth: int
) -> None:
    """Append markdown for args (and each variant choice) to lines."""
    for arg in args:
        _doc_arg(arg, path, lines, depth)
    if variant is None:
        return
    vpath = f"{path}/{variant.flag}" if path else variant.flag
    head = "#" * min(depth + 2, 6)
    lines.append(f"{head} `{vpath}`\n")
    default = f"default: `{variant.default}` · " if variant.default else "required · "
    lines.append(f"{default}values: " + ", ".join(f"`{c}`" for c in variant.choices) + "\n")
    if variant.alias:
        lines.append(
            "aliases: " + ", ".join(f"`{a}` → `{c}`" for a, c in variant.alias.items()) + "\n"
        )
    if variant.unsupported:
        lines.append(
            "documented by DeePMD-kit, not supported yet: "
            + ", ".join(f"`{u}`" for u in variant.unsupported)
            + "\n"
        )
    if variant.doc:
        lines.append(variant.doc + "\n")
    for name, sub in variant.choices.items():
        lines.append(f"{head}# `{path}` with `{variant.flag}` = `{name}`\n")
        doc_tree(sub, None, f"{path}[{name}]", lines, depth + 2)

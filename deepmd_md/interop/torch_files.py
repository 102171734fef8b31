"""DeePMD-kit's PyTorch files -> its serialized model tree (the layout serial.py reads), without
PyTorch or DeePMD-kit.

Both are zip archives holding a pickle (`*/data.pkl`) whose tensors live in `*/data/<key>`:
- a training checkpoint `.pt` (`dp --pt train`): {"model": state dict, "optimizer": ...}, the
  model definition in state["_extra_state"]["model_params"];
- a frozen `.pth` (`dp --pt freeze`, TorchScript): the module tree as objects whose state is a
  dict of attributes; the definition in the top module's `model_def_script` (JSON text).
The pickle is read by a restricted unpickler (only containers, tensors and plain data; module
objects become attribute dicts), so no code from the file runs and DeePMD-kit's custom operators,
which TorchScript would need to load the module, are not needed.
Tensor names (`atomic_model.descriptor.sea.filter_layers.networks.0.layers.0.matrix`) are mapped
to the serialized tree's paths by the renaming rules below (read from the two layouts side by
side on files written by DeePMD-kit 3.2).
"""

from __future__ import annotations

import collections
import json
import pickle
import re
import zipfile

import numpy as np

from deepmd_md.errors import ModelFileError

_DTYPES = {"DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
           "BFloat16Storage": np.uint16}


class _Module(dict):
    """A TorchScript module object: its attributes."""

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.update(state)
        else:
            self["__state__"] = state


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, *_):
    if not size:
        return storage[offset].copy() if storage.size else np.zeros((), storage.dtype)
    item = storage.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], tuple(size),
                                           tuple(s * item for s in stride)).copy()


def _rebuild_parameter(data, *_):
    return data


def _restore(value, _type=None):
    return value


def _identity(value):
    return value


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, archive: zipfile.ZipFile, root: str):
        super().__init__(f)
        self.archive, self.root = archive, root

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return type(name, (_Module,), {})
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch.jit._pickle":  # TorchScript's typed containers: the value itself
            return _restore if name == "restore_type_tag" else _identity
        if module == "torch" and name in ("device", "Size"):
            return lambda *a: a
        raise pickle.UnpicklingError(f"{module}.{name} is not read from model files")

    def persistent_load(self, pid):
        kind, stype, key = pid[0], pid[1], pid[2]
        if kind != "storage":
            raise pickle.UnpicklingError(f"persistent id {kind!r}")
        raw = self.archive.read(f"{self.root}/data/{key}")
        return np.frombuffer(raw, dtype=stype.dtype)


def _unpickle(path: str):
    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if not pkl:
                raise ModelFileError(f"{path}: not a PyTorch archive (no data.pkl)")
            root = pkl[0].split("/")[0]
            with z.open(pkl[0]) as f:
                return _Unpickler(f, z, root).load()
    except (zipfile.BadZipFile, OSError, EOFError, pickle.UnpicklingError, KeyError) as e:
        raise ModelFileError(f"cannot read {path} as a DeePMD-kit PyTorch file: {e}") from None


def is_deepmd_kit_torch(path: str) -> bool:
    """A DeePMD-kit frozen model (code under deepmd/pt) or training checkpoint."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    if any("/code/__torch__/deepmd/pt/" in n for n in names):
        return True
    if not any(n.endswith("/data.pkl") for n in names) or any("/code/" in n for n in names):
        return False
    try:
        obj = _unpickle(path)
    except ModelFileError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("model"), dict) and \
        "_extra_state" in obj["model"]


def _flatten_module(mod: dict, prefix: str, out: dict) -> None:
    """Tensors of a TorchScript module tree, by dotted name (as a state dict names them)."""
    for k, v in mod.items():
        name = f"{prefix}{k}"
        if isinstance(v, _Module):
            _flatten_module(v, name + ".", out)
        elif isinstance(v, np.ndarray):
            out[name] = v


def _state_and_script(path: str) -> tuple[dict, dict, bool]:
    obj = _unpickle(path)
    if isinstance(obj, _Module):  # frozen TorchScript module
        state: dict = {}
        _flatten_module(obj, "", state)
        script = obj.get("model_def_script")
        try:
            script = json.loads(script) if isinstance(script, str) else script
        except json.JSONDecodeError:
            script = None
        return state, script, False
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # training checkpoint
        sd = obj["model"]
        extra = sd.get("_extra_state") or {}
        script = extra.get("model_params") if isinstance(extra, dict) else None
        if isinstance(script, dict) and "model_dict" in script:
            raise ModelFileError(f"{path}: a multi-task DeePMD-kit checkpoint is not "
                                 "implemented here (freeze one head with `dp --pt freeze "
                                 "--head NAME` first)")
        return {k: v for k, v in sd.items() if isinstance(v, np.ndarray)}, script, True
    raise ModelFileError(f"{path}: not a DeePMD-kit model or checkpoint")


# state-dict names -> serialized tree paths (applied in order, on the dotted name)
_RENAMES = [
    (r"^(model\.Default\.)?atomic_model\.", ""),
    (r"^descriptor\.(sea|ser|se_atten|se_a_tebd)\.", "descriptor."),
    (r"^descriptor\.descrpt_list\.", "descriptor.list."),
    (r"^(descriptor\.list\.\d+\.)(sea|ser|se_atten)\.", r"\1"),
    (r"^fitting_net\.filter_layers\.", "fitting.nets."),
    (r"^fitting_net\.", "fitting."),
    (r"\.filter_layers_strip\.", ".embeddings_strip."),
    (r"\.filter_layers\.", ".embeddings."),
    (r"\.dpa1_attention\.", ".attention_layers."),
    (r"\.type_embedding\.embedding\.embedding_net\.", ".type_embedding.embedding."),
    (r"^descriptor\.repinit\.", "descriptor.repinit_variable."),
    (r"^descriptor\.repinit_three_body\.", "descriptor.repinit_three_body_variable."),
    (r"^descriptor\.repformers\.layers\.", "descriptor.repformers_variable.repformer_layers."),
    (r"^descriptor\.repformers\.", "descriptor.repformers_variable."),
    (r"^descriptor\.repflows\.layers\.", "descriptor.repflow_variable.repflow_layers."),
    (r"^descriptor\.repflows\.", "descriptor.repflow_variable."),
]
_LEAVES = {"matrix": "w", "bias": "b", "idt": "idt", "mean": "davg", "stddev": "dstd",
           "out_bias": "out_bias", "out_std": "out_std", "bias_atom_e": "bias_atom_e"}
_SKIP = re.compile(r"(^|\.)(_networks|compress_info|compress_data|type_embd_data|"
                   r"min_nbor_dist|_extra_state)(\.|$)|^model\.Default\.(?!atomic_model)")


def _tree(state: dict, strict: bool) -> dict:
    """Serialized-tree form {"descriptor": ..., "fitting": ..., "@variables": ...} of a state
    dict: each tensor under its path, leaves as "@variables" entries, numbered levels as lists.
    strict: an unknown tensor is an error (a checkpoint's state dict); a frozen module also
    holds derived buffers (masks, tables), whose names are not parameters and are skipped."""
    root: dict = {}
    for name, value in state.items():
        if _SKIP.search(name):
            continue
        for pat, rep in _RENAMES:
            name = re.sub(pat, rep, name)
        parts = name.split(".")
        m = re.search(r"(^|\.)([a-z0-9]+_residual)\.(\d+)$", name)
        if m:  # residual weights: a list under "@variables"
            parts = [*name[: m.start(2)].rstrip(".").split("."), "@variables", m.group(2),
                     m.group(3)]
            parts = [p for p in parts if p]
        elif parts[-1] in _LEAVES:
            parts = [*parts[:-1], "@variables", _LEAVES[parts[-1]]]
        elif strict:
            raise ModelFileError(f"DeePMD-kit tensor '{name}' is not known here")
        else:
            continue
        node = root
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    if isinstance(node, dict):
        node = {k: _lists(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[str(i)] for i in range(len(node))]
    return node


def load_torch(path: str) -> dict:
    """The serialized-tree form of a DeePMD-kit `.pth` / `.pt`: {"model", "model_def_script"}."""
    state, script, strict = _state_and_script(path)
    model = _tree(state, strict)
    if script is not None:
        model["type_map"] = script.get("type_map")
    return {"model": model, "model_def_script": script}

"""Freeze a model to a TensorFlow `.pb`: one GraphDef (TF1 graph, no variables, no functions)
with the shared model math, forces by tf.gradients, every size dynamic, and the model's
metadata JSON and `.dp` bytes as string constants. Contract: docs/backend_tensorflow.md.

    inputs  (placeholders)  extended_coord [nf, nall, 3] f64, extended_atype [nf, nall] i64,
                            nlist [nf, nloc, nnei] i64 (raw: any order, -1 padded, neighbors
                            beyond rcut allowed), mapping [nf, nall] i64 (owner < nloc of each
                            extended atom; read by message-passing models only)
    outputs (Identity)      atom_energy [nf, nloc], energy [nf], extended_force [nf, nall, 3],
                            virial [nf, 9], extended_virial [nf, nall, 9]  (all f64)
    constants               metadata (string: metadata JSON), model_dp (string: the .dp file)
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from deepmd_md.backends.common import frozen_metadata
from deepmd_md.backends.tensorflow.adapter import TFArray, tf
from deepmd_md.errors import ModelFileError
from deepmd_md.model.model import (
    atomic_outputs,
    message_passing_of,
    mixed_of,
    rcut_of,
    sel_of,
)
from deepmd_md.serialize import atomic_write, load_dp, save_dp
from deepmd_md.tree import tree_map

PB_FORMAT = "deepmd_md.pb"
PB_VERSION = 1
INPUTS = ("extended_coord", "extended_atype", "nlist", "mapping")
OUTPUT_NAMES = ("atom_energy", "energy", "extended_force", "virial", "extended_virial")


def metadata(data: dict, fmt: str = PB_FORMAT, exchange: bool = False) -> dict:
    """metadata.json of a TensorFlow-run model (the fields of the .pth's, docs/core_contract.md);
    exchange: the graph holds DpmdGhostExchange (message-passing models on several ranks)."""
    return frozen_metadata(data, fmt, PB_VERSION, widths=exchange_widths(data) if exchange else None,
                           blocked=False, receptive_field=exchange)


def exchange_widths(data: dict) -> list[int]:
    """Columns of each ghost exchange of one evaluation, in call order (NumPy, tiny frame)."""
    from deepmd_md.model.comm import MappingExchange

    widths = []

    class Recording(MappingExchange):
        def __call__(self, node_local):
            widths.append(int(np.prod(node_local.shape[2:])))
            return super().__call__(node_local)

    cfg = data["config"]
    nall, nloc, ntypes = 6, 3, len(cfg["type_map"])
    coord = np.random.default_rng(0).random((1, nall, 3)) * 2.0
    atype = (np.arange(nall) % ntypes).reshape(1, nall)
    nlist = np.array([[[j for j in range(nall) if j != i] for i in range(nloc)]])
    mapping = (np.arange(nall) % nloc).reshape(1, nall)
    atomic_outputs(cfg, data["params"], data["buffers"], coord, atype, nlist, raw_nlist=True,
                   comm=Recording(mapping))
    return widths


def _exchange_op_available(cfg) -> bool:
    from deepmd_md.backends.tensorflow.ops import load_ops

    return message_passing_of(cfg) and load_ops() is not None


def format_nlist_static(config: dict, ext_coord, ext_atype, nlist):
    """The model's formatted nlist (env.format_nlist: per type block the sel[t] nearest inside
    rcut, nearest first, -1 padded; one block of any type when mixed) from a raw list of any
    width, with tf.math.top_k so every block has a static width. tf.Tensors in and out.

    ext_coord [nf, nall, 3], ext_atype [nf, nall], nlist [nf, nloc, nraw] -> [nf, nloc, sum(sel)]
    """
    rcut, sel, mixed = rcut_of(config), sel_of(config), mixed_of(config)
    nf, nloc = tf.shape(nlist)[0], tf.shape(nlist)[1]
    # pad so that top_k always has >= max(sel) candidates
    nlist = tf.concat([nlist, -tf.ones(tf.stack([nf, nloc, max(sel)]), nlist.dtype)], axis=-1)
    safe = tf.where(nlist >= 0, nlist, tf.zeros_like(nlist))
    nb = tf.gather(ext_coord, safe, batch_dims=1)  # [nf, nloc, nraw, 3]
    diff = nb - ext_coord[:, :nloc, None, :]
    dist = tf.sqrt(tf.reduce_sum(diff * diff, axis=-1))
    valid = (nlist >= 0) & (dist < rcut)
    ntype = tf.gather(ext_atype, safe, batch_dims=1)
    inf = tf.fill(tf.shape(dist), tf.constant(np.inf, dist.dtype))
    blocks = []
    for t, nsel in enumerate(sel):
        ok = valid if mixed else valid & tf.equal(ntype, t)
        key = tf.where(ok, dist, inf)
        neg, order = tf.math.top_k(-key, k=nsel, sorted=True)  # the nsel smallest, ascending
        idx = tf.gather(nlist, order, batch_dims=2)
        blocks.append(tf.where(-neg < rcut, idx, -tf.ones_like(idx)))
    return tf.concat(blocks, axis=-1)


def forward_lower(data: dict, coord, atype, nlist, mapping, comm=None, atom_weight=None) -> dict:
    """The frozen entry on tf.Tensors (graph mode: TF1 graph or tf.function) -> OUTPUT_NAMES.
    comm: [1] int64 exchange handle (message-passing models with the op), else None.
    atom_weight [nf, nloc] f64: energy = sum of weight x atom energy, forces its gradient (the
    core's widened-ghost-shell fallback: 0 for the ghosts it evaluates); None = all ones."""
    from deepmd_md.backends.tensorflow.ops import OpExchange

    cfg = data["config"]
    params = tree_map(lambda a: TFArray(tf.constant(np.asarray(a))), data["params"])
    buffers = tree_map(lambda a: TFArray(tf.constant(np.asarray(a))), data["buffers"])
    formatted = format_nlist_static(cfg, coord, atype, nlist)
    mp = message_passing_of(cfg)
    ex = OpExchange(mapping, comm) if mp and comm is not None else None
    ae = atomic_outputs(cfg, params, buffers, TFArray(coord), TFArray(atype),
                        TFArray(formatted), mapping=TFArray(mapping) if mp else None, comm=ex)
    ae = tf.cast(ae["energy"].t, tf.float64)
    we = ae if atom_weight is None else ae * atom_weight
    force = -tf.gradients(tf.reduce_sum(we), coord)[0]
    atom_virial = coord[..., :, None] * force[..., None, :]  # r_a F_b per atom
    nf = tf.shape(coord)[0]
    return {"atom_energy": ae, "energy": tf.reduce_sum(we, axis=-1), "extended_force": force,
            "virial": tf.reshape(tf.reduce_sum(atom_virial, axis=1), tf.stack([nf, 9])),
            "extended_virial": tf.reshape(atom_virial, tf.stack([nf, -1, 9]))}


def build_graph(data: dict) -> tf.Graph:
    """The frozen graph (see the module docstring)."""
    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        coord = v1.placeholder(tf.float64, [None, None, 3], name=INPUTS[0])
        atype = v1.placeholder(tf.int64, [None, None], name=INPUTS[1])
        nlist = v1.placeholder(tf.int64, [None, None, None], name=INPUTS[2])
        mapping = v1.placeholder(tf.int64, [None, None], name=INPUTS[3])
        exchange = _exchange_op_available(data["config"])
        comm = weight = None
        if exchange:
            comm = v1.placeholder_with_default(tf.zeros([1], tf.int64), [1], name="comm")
            weight = v1.placeholder_with_default(tf.ones(tf.shape(nlist)[:2], tf.float64),
                                                 [None, None], name="atom_weight")
        out = forward_lower(data, coord, atype, nlist, mapping, comm, weight)
        for k in OUTPUT_NAMES:
            tf.identity(out[k], name=k)
        tf.constant(json.dumps(metadata(data, exchange=exchange)), name="metadata")
        tf.constant(_dp_bytes(data), name="model_dp")
    return graph


def _dp_bytes(data: dict) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "model.dp")
        save_dp(data, p)
        with open(p, "rb") as f:
            return f.read()


def freeze_pb(data: dict, path: str) -> None:
    """Write `path` (a serialized GraphDef) atomically."""
    blob = build_graph(data).as_graph_def().SerializeToString()
    atomic_write(path, lambda tmp: open(tmp, "wb").write(blob))


SIGNATURE = (tf.TensorSpec([None, None, 3], tf.float64, name=INPUTS[0]),
             tf.TensorSpec([None, None], tf.int64, name=INPUTS[1]),
             tf.TensorSpec([None, None, None], tf.int64, name=INPUTS[2]),
             tf.TensorSpec([None, None], tf.int64, name=INPUTS[3]))


def write_savedmodel(data: dict, path: str) -> None:
    """A SavedModel folder with the C++ backend's signatures (docs/backend_tensorflow.md):
    "forward_lower" (INPUTS -> OUTPUT_NAMES) and "metadata" (-> {"metadata": JSON string}),
    plus "model_dp" (-> {"model_dp": the .dp bytes}). TensorFlow-native: the contract's
    reference for other writers (JAX's jax2tf exporter) and for the backend's tests."""
    import shutil

    exchange = _exchange_op_available(data["config"])
    meta = json.dumps(metadata(data, "deepmd_md.savedmodel", exchange=exchange))
    dp = _dp_bytes(data)
    module = tf.Module()
    if exchange:  # message passing with the op: the exchange handle is a fifth input
        def entry(extended_coord, extended_atype, nlist, mapping, comm, atom_weight):
            return forward_lower(data, extended_coord, extended_atype, nlist, mapping, comm,
                                 atom_weight)

        sig = (*SIGNATURE, tf.TensorSpec([1], tf.int64, name="comm"),
               tf.TensorSpec([None, None], tf.float64, name="atom_weight"))
    else:
        def entry(extended_coord, extended_atype, nlist, mapping):
            return forward_lower(data, extended_coord, extended_atype, nlist, mapping)

        sig = SIGNATURE
    module.forward_lower = tf.function(entry, input_signature=sig, autograph=False)
    module.metadata = tf.function(lambda: {"metadata": tf.constant(meta)}, input_signature=[])
    module.model_dp = tf.function(lambda: {"model_dp": tf.constant(dp)}, input_signature=[])
    tmp = f"{path}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, tmp, signatures={
        "forward_lower": module.forward_lower.get_concrete_function(),
        "metadata": module.metadata.get_concrete_function(),
        "model_dp": module.model_dp.get_concrete_function()})
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _graph_def(path: str):
    from google.protobuf.message import DecodeError

    if not os.path.isfile(path):
        raise ModelFileError(f"model file not found: {path}")
    gd = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        blob = f.read()
    try:
        gd.ParseFromString(blob)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelFileError(f"cannot read {path}: not a TensorFlow GraphDef ({e})") from None
    return gd


def _string_const(gd, name: str, path: str) -> bytes:
    for node in gd.node:
        if node.name == name and node.op == "Const":
            return node.attr["value"].tensor.string_val[0]
    raise ModelFileError(f"{path}: a TensorFlow graph without the '{name}' constant "
                         "(not frozen by deepmd_md?)")


def read_pb(path: str) -> dict:
    """ModelData (config, params, buffers) of a .pb written by freeze_pb."""
    gd = _graph_def(path)
    blob = _string_const(gd, "model_dp", path)
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "model.dp")
        with open(p, "wb") as f:
            f.write(blob)
        return load_dp(p)


def read_metadata(path: str) -> dict:
    return json.loads(_string_const(_graph_def(path), "metadata", path).decode())


def load_pb(path: str):
    """A callable forward_lower(ext_coord, ext_atype, nlist, mapping) -> dict of NumPy arrays,
    running the frozen graph itself (tests; Python inference uses the adapter on read_pb)."""
    from deepmd_md.backends.tensorflow.ops import load_ops

    gd = _graph_def(path)
    if any(n.op.startswith("DpmdGhostExchange") for n in gd.node):
        load_ops()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    sess = tf.compat.v1.Session(graph=graph)
    fetches = {k: graph.get_tensor_by_name(f"{k}:0") for k in OUTPUT_NAMES}

    def run(ext_coord, ext_atype, nlist, mapping):
        feed = {f"{k}:0": np.asarray(v, dtype=np.float64 if k == INPUTS[0] else np.int64)
                for k, v in zip(INPUTS, (ext_coord, ext_atype, nlist, mapping), strict=True)}
        return sess.run(fetches, feed)

    return run

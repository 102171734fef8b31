"""JAX `.savedmodel`: the model's lower entry through jax2tf, as a TensorFlow SavedModel folder.

Layout of `NAME.savedmodel/` (docs/backend_jax_savedmodel.md is the contract):
- `saved_model.pb`: signatures `forward_lower` (INPUTS -> OUTPUTS below), `metadata`
  (-> {"metadata": JSON string}) and `model_dp` (-> {"model_dp": the .dp bytes}): the TensorFlow
  C++ backend's contract (docs/backend_tensorflow.md);
- `assets/metadata.json`: the keys the torch freezer writes (type_map, rcut, sel, ...);
- `assets/model.dp`: the backend-neutral model, so read_savedmodel needs no TensorFlow.

Shapes: nf, nall, nloc, nnei are symbolic in the exported StableHLO, but TensorFlow's
XlaCallModule compiles once per concrete input shape (3-11 s for tiny models here). The TF
wrapper therefore pads nloc, the ghost count and nnei up to BUCKETS before the call: padded
atoms have type -1 (type 0 inside the model, their energy masked out), no neighbors, and nobody
lists them, so they change nothing; outputs are sliced back. An MD run then compiles once per
bucket it visits.

TensorFlow is imported only to write a SavedModel, and then in a child process
(`python -m deepmd_md.backends.jax.savedmodel DP OUT`): importing TensorFlow before Paddle in one
process crashes (platform notes), so the caller's process never gets TensorFlow from here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from deepmd_md.errors import ConfigError, ModelFileError

SIGNATURE = "forward_lower"
FORMAT = "deepmd_md.savedmodel"
VERSION = 1
# padded sizes: powers of 2 to 64, then x1.25 steps rounded up to multiples of 8 (<= 25% padding
# beyond 64; below, the padding costs little and fewer sizes mean fewer compiles)
_B = [1, 2, 4, 8, 16, 32, 64]
while _B[-1] < 2**31 // 2:
    _B.append(-(-int(_B[-1] * 1.25) // 8) * 8)
BUCKETS = np.array(_B, dtype=np.int64)
INPUTS = {  # name: (dtype, shape)
    "extended_coord": ("float64", ["nf", "nall", 3]),
    "extended_atype": ("int64", ["nf", "nall"]),
    "nlist": ("int64", ["nf", "nloc", "nnei"]),
    "mapping": ("int64", ["nf", "nall"]),
    # energy = sum of weight x atom energy (ones: the plain energy); the core's widened ghost
    # shell passes 0 for the ghosts it evaluates as local atoms (metadata "atom_weight": true)
    "atom_weight": ("float64", ["nf", "nloc"]),
}
OUTPUTS = {
    "atom_energy": ("float64", ["nf", "nloc"]),
    "energy": ("float64", ["nf"]),
    "extended_force": ("float64", ["nf", "nall", 3]),
    "virial": ("float64", ["nf", 9]),
    "extended_virial": ("float64", ["nf", "nall", 9]),
}


def bucket(n: int) -> int:
    """The padded size of n (the smallest BUCKETS entry >= n)."""
    return int(BUCKETS[np.searchsorted(BUCKETS, n)])


def metadata(data: dict) -> dict:
    """The frozen model's metadata: the torch freezer's keys (no exchange op, no blocked path), and
    `atom_weight: true` (forward_lower takes per-atom weights: without an exchange op, the core
    runs message-passing models across domains with a widened ghost shell instead)."""
    from deepmd_md.backends.common import frozen_metadata
    from deepmd_md.model.model import message_passing_of

    mp = message_passing_of(data["config"])
    meta = frozen_metadata(data, FORMAT, VERSION, widths=None, blocked=False, receptive_field=mp)
    return meta | {"signature": SIGNATURE, "atom_weight": True}


def lower_fn(data: dict):
    """The JAX function exported: (coord, atype, nlist, mapping, weight) -> OUTPUTS tuple.

    extended_coord [nf, nall, 3] f64; extended_atype [nf, nall] (-1: padding); nlist [nf, nloc,
    nnei] raw candidates, -1 padded, nnei >= max(sel); mapping [nf, nall] owner < nloc;
    atom_weight [nf, nloc]: energy = sum weight x atom energy, forces its gradient."""
    import jax
    import jax.numpy as jnp

    from deepmd_md.backends.jax.adapter import asarray
    from deepmd_md.model.model import atomic_outputs

    cfg = data["config"]
    params, buffers = asarray(data["params"]), asarray(data["buffers"])

    def fn(coord, atype, nlist, mapping, weight):
        nloc = nlist.shape[1]
        real = atype >= 0
        at = jnp.where(real, atype, 0)
        w = jnp.where(real[:, :nloc], weight, 0.0)

        def etot(x):
            ae = atomic_outputs(cfg, params, buffers, x, at, nlist, raw_nlist=True,
                                mapping=mapping)["energy"].astype(jnp.float64)
            ae = jnp.where(real[:, :nloc], ae, 0.0)
            return jnp.sum(ae * w), ae

        (_, ae), g = jax.value_and_grad(etot, has_aux=True)(coord)
        force = -g
        av = coord[..., :, None] * force[..., None, :]
        nf = coord.shape[0]
        return (ae, jnp.sum(ae * w, axis=-1), force, jnp.sum(av, axis=1).reshape(nf, 9),
                av.reshape(nf, -1, 9))

    return fn


def _tf_module(data: dict):
    """A tf.Module whose `forward_lower` (INPUTS -> OUTPUTS) pads to BUCKETS, calls the jax2tf
    function (the caller's atom weights, padding 0), slices back."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    from deepmd_md.model.model import sel_of

    min_nnei = max(sel_of(data["config"]))
    poly = ["(f, a, 3)", "(f, a)", "(f, l, n)", "(f, a)", "(f, l)"]
    conv = jax2tf.convert(lower_fn(data), polymorphic_shapes=poly, with_gradient=False,
                          polymorphic_constraints=(f"n >= {min_nnei}", "a >= l"),
                          native_serialization_platforms=("cpu",))
    buckets = tf.constant(BUCKETS)
    specs = [tf.TensorSpec([None, None, 3], tf.float64, "extended_coord"),
             tf.TensorSpec([None, None], tf.int64, "extended_atype"),
             tf.TensorSpec([None, None, None], tf.int64, "nlist"),
             tf.TensorSpec([None, None], tf.int64, "mapping"),
             tf.TensorSpec([None, None], tf.float64, "atom_weight")]

    def up(n):
        return tf.gather(buckets, tf.searchsorted(buckets, tf.reshape(n, [1])))[0]

    @tf.function(input_signature=specs, autograph=False)
    def forward_lower(extended_coord, extended_atype, nlist, mapping, atom_weight):
        nf = tf.shape(nlist, tf.int64)[0]
        nloc = tf.shape(nlist, tf.int64)[1]
        nall = tf.shape(extended_atype, tf.int64)[1]
        nnei = tf.shape(nlist, tf.int64)[2]
        nloc_b = up(nloc)
        dl = nloc_b - nloc
        ng_b = up(nall - nloc)
        dg = ng_b - (nall - nloc)
        nnei_b = up(tf.maximum(nnei, min_nnei))

        def pad_atoms(x, value):  # [nf, nall, ...] -> [nf, nloc_b + ng_b, ...]
            tail = tf.shape(x, tf.int64)[2:]
            loc = tf.concat([x[:, :nloc], tf.fill(tf.concat([[nf, dl], tail], 0), value)], 1)
            ghost = tf.concat([x[:, nloc:], tf.fill(tf.concat([[nf, dg], tail], 0), value)], 1)
            return tf.concat([loc, ghost], 1)

        coord = pad_atoms(extended_coord, tf.constant(0.0, tf.float64))
        atype = pad_atoms(extended_atype, tf.constant(-1, tf.int64))
        own = tf.broadcast_to(tf.range(nloc_b + ng_b), [nf, nloc_b + ng_b])
        mp = pad_atoms(mapping, tf.constant(0, tf.int64))
        mp = tf.where(tf.logical_and(own >= nloc, own < nloc_b), own, mp)  # padded locals
        nl = tf.where(nlist >= nloc, nlist + dl, nlist)  # ghosts moved up by dl
        nl = tf.pad(nl, [[0, 0], [0, dl], [0, nnei_b - nnei]], constant_values=-1)
        w = tf.pad(atom_weight, [[0, 0], [0, dl]])  # padded atoms weigh 0 (and are masked inside)
        ae, e, f, v, av = conv(coord, atype, nl, mp, w)

        def unpad(x):
            return tf.concat([x[:, :nloc], x[:, nloc_b:nloc_b + nall - nloc]], 1)

        return {"atom_energy": ae[:, :nloc], "energy": e, "extended_force": unpad(f),
                "virial": v, "extended_virial": unpad(av)}

    module = tf.Module()
    module.forward_lower = forward_lower
    return module


def export(data: dict, path: str) -> None:
    """Write the SavedModel folder at `path` (in this process: imports TensorFlow)."""
    import tensorflow as tf

    from deepmd_md.serialize import save_dp

    module = _tf_module(data)
    parent = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-savedmodel-")
    try:
        with tempfile.TemporaryDirectory() as side:
            dp = os.path.join(side, "model.dp")
            meta = os.path.join(side, "metadata.json")
            save_dp({k: data[k] for k in ("config", "params", "buffers")}, dp)
            with open(dp, "rb") as f:
                dp_bytes = f.read()
            meta_text = json.dumps(metadata(data))
            with open(meta, "w") as f:
                f.write(meta_text)
            module.dp_asset = tf.saved_model.Asset(dp)
            module.metadata_asset = tf.saved_model.Asset(meta)
            # the TensorFlow backend's contract (docs/backend_tensorflow.md): the metadata and
            # .dp also as string signatures, read through the C API without touching files
            module.metadata = tf.function(lambda: {"metadata": tf.constant(meta_text)},
                                          input_signature=[], autograph=False)
            module.model_dp = tf.function(lambda: {"model_dp": tf.constant(dp_bytes)},
                                          input_signature=[], autograph=False)
            out = os.path.join(tmp, "m")
            tf.saved_model.save(module, out, signatures={
                SIGNATURE: module.forward_lower,
                "metadata": module.metadata.get_concrete_function(),
                "model_dp": module.model_dp.get_concrete_function()})
        os.chmod(out, 0o777 & ~_umask())
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=".old-savedmodel-")
            os.replace(path, os.path.join(old, "m"))
        os.replace(out, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    u = os.umask(0)
    os.umask(u)
    return u


def freeze_savedmodel(data: dict, path: str) -> None:
    """Write `path` (a SavedModel folder) atomically; the export runs in a child process so that
    this one never imports TensorFlow (see the module doc)."""
    missing = [m for m in ("jax", "tensorflow") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f".savedmodel files need {' and '.join(missing)} (jax2tf); "
                          "pip install 'deepmd-md[jax,tensorflow]'")
    from deepmd_md.serialize import save_dp

    with tempfile.TemporaryDirectory() as side:
        dp = os.path.join(side, "model.dp")
        save_dp({k: data[k] for k in ("config", "params", "buffers")}, dp)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        r = subprocess.run([sys.executable, "-m", __name__, dp, os.path.abspath(path)],
                           capture_output=True, text=True, env=env)
    if r.returncode != 0:
        lines = [x for x in (r.stderr or r.stdout).strip().splitlines() if x.strip()]
        raise ModelFileError(f"cannot write {path}: jax2tf export failed: "
                             f"{lines[-1] if lines else r.returncode}")


def read_savedmodel(path: str) -> dict:
    """ModelData from the folder's assets/model.dp (no TensorFlow needed)."""
    dp = os.path.join(path, "assets", "model.dp")
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ModelFileError(f"{path}: not a SavedModel folder (no saved_model.pb)")
    if not os.path.isfile(dp):
        raise ModelFileError(f"{path}: a SavedModel without assets/model.dp (not written by "
                             "deepmd_md); its weights cannot be read back")
    from deepmd_md.serialize import load_dp

    return load_dp(dp)


def read_metadata(path: str) -> dict:
    with open(os.path.join(path, "assets", "metadata.json")) as f:
        return json.load(f)


if __name__ == "__main__":  # child process of freeze_savedmodel: DP OUT [DP OUT ...]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from deepmd_md.serialize import load_dp

    for i in range(1, len(sys.argv) - 1, 2):
        export(load_dp(sys.argv[i]), sys.argv[i + 1])

"""The normalised environment matrix of compressed models: the fused kernel of
kernels/env_mat.cc where the framework has one, the array-API math of model/env.py elsewhere.

Rule: a descriptor whose nets are tabulated (`dpmd compress`: stats["compress"]) calls
`normalised(..., fused=True)`; every other model keeps the array-API graph (fused=False), which
is also the oracle of the kernels (tests/compress/test_env_mat_kernel.py). The kernels are
first order only (forces and virials), as the tabulation ops: compressed models are for
inference.

Dispatch goes through KERNELS as in kernels/tabulate.py: the first entry whose framework is
imported and whose predicate accepts the coordinates runs (PyTorch tensors: dpmd::env_mat and
dpmd::se_a_tab of libdpmd_torch_ops.so; TensorFlow arrays: DpmdSeATab of libdpmd_tf_ops.so;
each when the installed library has it); any other array runs the array-API math.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepmd_md.kernels import first_kernel
from deepmd_md.model.env import env_matrix
from deepmd_md.model.xp import array_namespace


def reference(ext_coord, ext_atype, nlist, davg, dstd, rcut_smth: float, rcut: float):
    """(env_matrix - davg[t_i]) / dstd[t_i] by array ops (any namespace, complex included).

    ext_coord: [nf, nall, 3]; ext_atype: [nf, nall] (the first nloc are the centers);
    nlist: [nf, nloc, nnei] (-1 empty); davg, dstd: [ntypes, C] with C = 4, or 1 (radial)
    -> [nf, nloc, nnei, C]. An empty slot's row is -davg/dstd (env 0)."""
    xp = array_namespace(ext_coord)
    ncol = davg.shape[-1]
    env = env_matrix(ext_coord, nlist, rcut_smth, rcut, radial_only=ncol == 1)
    nloc = nlist.shape[1]
    atype = ext_atype[:, :nloc]
    flat = xp.reshape(atype, (-1,))
    shape = (atype.shape[0], nloc, 1, ncol)
    avg = xp.reshape(xp.take(davg, flat, axis=0), shape)
    std = xp.reshape(xp.take(dstd, flat, axis=0), shape)
    return (env - avg) / std


@dataclass(frozen=True)
class EnvKernels:
    """A framework's fused ops; fields but `framework` are "module:function", imported on first
    use and asked only once `framework` is imported (dispatching never imports a framework).

    accepts(ext_coord) -> bool: its array, and the compiled op is available.
    env_mat(ext_coord, ext_atype, nlist, davg, dstd, rcut_smth, rcut): as `reference`.
    se_a(tab, ext_coord, ext_atype, nlist, davg, dstd, rcut_smth, rcut, skip_empty): as
    `se_a_block`, or "" when the framework has env_mat only."""

    framework: str
    accepts: str
    env_mat: str
    se_a: str = ""


KERNELS: list[EnvKernels] = []


def register(kernels: EnvKernels) -> None:
    KERNELS.append(kernels)


def kernel_for(ext_coord, kind: str = "env_mat"):
    """The registered fused function `kind` ("env_mat" or "se_a") for this array, or None
    (then the array-API math runs)."""
    return first_kernel(KERNELS, ext_coord, kind)


def se_a_block(tab: dict, ext_coord, ext_atype, nlist, davg, dstd, rcut_smth: float,
               rcut: float, skip_empty: bool):
    """The compressed se_e2_a block in one op, or None when the framework has none:
    sum_k G(row_k[0]) (x) em_k [nf, nloc, M, 4] with rows = `normalised` [nf, nloc, nnei, 4]
    and em_k = row_k (0 for empty slots when skip_empty), G the tabulated net `tab`
    (kernels/tabulate.py) = dpmd::tabulate_fusion(tab, rows[..., 0], em)."""
    fn = kernel_for(ext_coord, "se_a")
    if fn is None:
        return None
    return fn(tab, ext_coord, ext_atype, nlist, davg, dstd, float(rcut_smth), float(rcut),
              bool(skip_empty))


def normalised(ext_coord, ext_atype, nlist, davg, dstd, rcut_smth: float, rcut: float,
               fused: bool = False):
    """The normalised environment matrix [nf, nloc, nnei, C] (shapes: `reference`); by the
    framework's fused op when `fused` and one accepts ext_coord."""
    fn = kernel_for(ext_coord) if fused else None
    if fn is not None:
        return fn(ext_coord, ext_atype, nlist, davg, dstd, float(rcut_smth), float(rcut))
    return reference(ext_coord, ext_atype, nlist, davg, dstd, rcut_smth, rcut)


# -- PyTorch: dpmd::env_mat ---------------------------------------------------------------------


def _torch_accepts(x) -> bool:
    import torch

    if not isinstance(x, torch.Tensor):
        return False
    from deepmd_md.backends.torch.ops import load_ops

    load_ops(required=False)
    # an older libdpmd_torch_ops.so has no dpmd::env_mat: the reference then runs
    return hasattr(torch.ops.dpmd, "env_mat") and x.device.type == "cpu"


def _torch_env_mat(ext_coord, ext_atype, nlist, davg, dstd, rcut_smth, rcut):
    import torch

    return torch.ops.dpmd.env_mat(ext_coord, nlist, ext_atype, davg, dstd, rcut_smth, rcut)


def _torch_se_a(tab, ext_coord, ext_atype, nlist, davg, dstd, rcut_smth, rcut, skip_empty):
    import torch

    if not hasattr(torch.ops.dpmd, "se_a_tab"):  # a library with env_mat only
        return None
    return torch.ops.dpmd.se_a_tab(tab["coef"], tab["grid"], tab["net"], ext_coord, nlist,
                                   ext_atype, davg, dstd, rcut_smth, rcut, skip_empty)


register(EnvKernels("torch", "deepmd_md.kernels.env_mat:_torch_accepts",
                    "deepmd_md.kernels.env_mat:_torch_env_mat",
                    "deepmd_md.kernels.env_mat:_torch_se_a"))


# -- TensorFlow: DpmdSeATab (the se_e2_a block only) ---------------------------------------------

_tf_grads = False


def _tf_accepts(x) -> bool:
    from deepmd_md.backends.tensorflow.ops import load_ops
    from deepmd_md.backends.tensorflow.xp_tf import TFArray

    if not isinstance(x, TFArray):
        return False
    ops = load_ops()
    if ops is None or not hasattr(ops, "dpmd_se_a_tab"):
        return False
    _tf_register_gradients()
    return True


def _tf_register_gradients() -> None:
    """DpmdSeATabGrad as DpmdSeATab's gradient (first order; its own gradient raises)."""
    global _tf_grads
    if _tf_grads:
        return
    from deepmd_md.backends.tensorflow.ops import _no_second_order, load_ops
    from deepmd_md.backends.tensorflow.xp_tf import tf

    ops = load_ops()

    @tf.RegisterGradient("DpmdSeATab")
    def _grad(op, dy):
        return [None, None, None, ops.dpmd_se_a_tab_grad(*op.inputs, dy), None, None, None,
                None, None]

    tf.RegisterGradient("DpmdSeATabGrad")(_no_second_order)
    _tf_grads = True


def _tf_se_a(tab, ext_coord, ext_atype, nlist, davg, dstd, rcut_smth, rcut, skip_empty):
    from deepmd_md.backends.tensorflow.ops import load_ops
    from deepmd_md.backends.tensorflow.xp_tf import TFArray, tf

    def t(x, dtype=None):
        x = x.t if isinstance(x, TFArray) else tf.convert_to_tensor(x)
        return x if dtype is None or x.dtype == dtype else tf.cast(x, dtype)

    coord = t(ext_coord)
    params = tf.constant([rcut_smth, rcut, 1.0 if skip_empty else 0.0], tf.float64)
    return TFArray(load_ops().dpmd_se_a_tab(
        t(tab["coef"]), t(tab["grid"]), t(tab["net"]), coord, t(nlist, tf.int64),
        t(ext_atype, tf.int64), t(davg, coord.dtype), t(dstd, coord.dtype), params))


register(EnvKernels("tensorflow", "deepmd_md.kernels.env_mat:_tf_accepts", "",
                    "deepmd_md.kernels.env_mat:_tf_se_a"))

"""An array-API namespace over Paddle tensors: exactly the functions the model code calls
(`grep -o 'xp\\.[a-z_]*' deepmd_md/model deepmd_md/train deepmd_md/kernels`), with the array
API's names and semantics on top of paddle's (array-api-compat does not cover Paddle).

Registered with deepmd_md.model.xp by the adapter: model code never changes for Paddle.
"""

from __future__ import annotations

import numpy as np

from deepmd_md.backends.paddle import import_paddle

paddle = import_paddle()

bool = paddle.bool  # noqa: A001 - the array-API name
float32 = paddle.float32
float64 = paddle.float64
int32 = paddle.int32
int64 = paddle.int64
complex64 = paddle.complex64
complex128 = paddle.complex128


_ARRAY_TYPES = (paddle.Tensor, paddle.pir.Value)  # eager tensors, static-graph values (freeze)


def is_array(x) -> bool:
    return isinstance(x, _ARRAY_TYPES)


def _dtype(dtype):
    """A paddle dtype from a paddle, NumPy or string dtype (None stays None)."""
    if dtype is None or isinstance(dtype, paddle.dtype):
        return dtype
    return paddle.base.framework.convert_np_dtype_to_dtype_(np.dtype(dtype))


def _shape(shape) -> list:
    """A paddle shape list; runtime sizes (0-d Values, when freezing) stay symbolic."""
    return [s if isinstance(s, paddle.pir.Value) else int(s) for s in shape]


def _axes(axis):
    return list(axis) if isinstance(axis, tuple) else axis


# -- creation -------------------------------------------------------------------------------
def asarray(x, dtype=None):
    if is_array(x):
        return x if dtype is None else astype(x, dtype)
    return paddle.to_tensor(np.asarray(x), dtype=_dtype(dtype))


def zeros(shape, dtype=None):
    return paddle.zeros(_shape(shape), dtype=_dtype(dtype) or paddle.float64)


def ones(shape, dtype=None):
    return paddle.ones(_shape(shape), dtype=_dtype(dtype) or paddle.float64)


def zeros_like(x, dtype=None):
    return paddle.zeros_like(x, dtype=_dtype(dtype))


def ones_like(x, dtype=None):
    return paddle.ones_like(x, dtype=_dtype(dtype))


def full_like(x, fill_value, dtype=None):
    return paddle.full_like(x, fill_value, dtype=_dtype(dtype))


def eye(n, m=None, dtype=None):
    return paddle.eye(n, m, dtype=_dtype(dtype) or paddle.float64)


def arange(start, stop=None, step=1, dtype=None):
    if stop is None:
        start, stop = 0, start
    return paddle.arange(start, stop, step, dtype=_dtype(dtype) or paddle.int64)


# -- dtypes -----------------------------------------------------------------------------------
_KINDS = {
    "bool": (paddle.bool,),
    "signed integer": (paddle.int8, paddle.int16, paddle.int32, paddle.int64),
    "unsigned integer": (paddle.uint8,),
    "integral": (paddle.int8, paddle.int16, paddle.int32, paddle.int64, paddle.uint8),
    "real floating": (paddle.float16, paddle.bfloat16, paddle.float32, paddle.float64),
    "complex floating": (paddle.complex64, paddle.complex128),
}
_KINDS["numeric"] = (_KINDS["integral"] + _KINDS["real floating"] + _KINDS["complex floating"])


def isdtype(dtype, kind) -> bool:
    if isinstance(kind, tuple):
        return any(isdtype(dtype, k) for k in kind)
    if isinstance(kind, str):
        return _dtype(dtype) in _KINDS[kind]
    return _dtype(dtype) == _dtype(kind)


def astype(x, dtype, copy: bool = True):
    dtype = _dtype(dtype)
    return x if x.dtype == dtype and not copy else paddle.cast(x, dtype)


# -- shapes -----------------------------------------------------------------------------------
def reshape(x, shape, copy=None):
    return paddle.reshape(x, _shape(shape))


def concat(arrays, axis: int = 0):
    return paddle.concat(list(arrays), axis=axis)


def broadcast_to(x, shape):
    return paddle.broadcast_to(x, _shape(shape))


def permute_dims(x, axes):
    return paddle.transpose(x, list(axes))


def matrix_transpose(x):
    perm = list(range(x.ndim))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return paddle.transpose(x, perm)


# -- indexing ---------------------------------------------------------------------------------
def take(x, indices, axis=None):
    if axis is None:
        x, axis = paddle.reshape(x, [-1]), 0
    return paddle.index_select(x, indices, axis=axis)


def take_along_axis(x, indices, axis: int = -1):
    return paddle.take_along_axis(x, indices, axis, broadcast=False)


def nonzero(x):
    idx = paddle.nonzero(x)  # [n, ndim]
    return tuple(idx[:, d] for d in range(idx.shape[1]))


def where(cond, x1, x2):
    return paddle.where(cond, x1, x2)


def argsort(x, axis: int = -1, descending: bool = False, stable: bool = True):
    return paddle.argsort(x, axis=axis, descending=descending, stable=stable)


# -- elementwise ------------------------------------------------------------------------------
def _scalar_like(v, x):
    return v if is_array(v) else paddle.full([], v, dtype=x.dtype)


sqrt, exp, log, tanh, abs = paddle.sqrt, paddle.exp, paddle.log, paddle.tanh, paddle.abs  # noqa: A001


def floor(x):
    return paddle.floor(x)


def real(x):
    return paddle.real(x)


def clip(x, min=None, max=None):  # noqa: A002
    if min is not None:
        x = paddle.maximum(x, _scalar_like(min, x))
    if max is not None:
        x = paddle.minimum(x, _scalar_like(max, x))
    return x


def minimum(x1, x2):
    return paddle.minimum(x1, _scalar_like(x2, x1))


def maximum(x1, x2):
    return paddle.maximum(x1, _scalar_like(x2, x1))


def matmul(x1, x2):
    return paddle.matmul(x1, x2)


# -- reductions -------------------------------------------------------------------------------
def sum(x, axis=None, keepdims: bool = False, dtype=None):  # noqa: A001
    return paddle.sum(x, axis=_axes(axis), keepdim=keepdims, dtype=_dtype(dtype))


def any(x, axis=None, keepdims: bool = False):  # noqa: A001
    return paddle.any(x, axis=_axes(axis), keepdim=keepdims)


def mean(x, axis=None, keepdims: bool = False):
    return paddle.mean(x, axis=_axes(axis), keepdim=keepdims)


def _extreme(x, axis, keepdims: bool, arg):
    """max/min as a gather at the arg-extreme index: paddle's max_grad/min_grad have no
    gradient of their own, a gather does (force training differentiates twice)."""
    if axis is None:
        x, axis = paddle.reshape(x, [-1]), 0
    if isinstance(axis, tuple):  # move the reduced axes last, merge them
        axes = [a % x.ndim for a in axis]
        keep = [d for d in range(x.ndim) if d not in axes]
        y = paddle.transpose(x, keep + axes)
        y = paddle.reshape(y, [int(x.shape[d]) for d in keep] + [-1])
        out = _extreme(y, -1, False, arg)
        if keepdims:
            out = paddle.reshape(out, [1 if d in axes else int(x.shape[d]) for d in range(x.ndim)])
        return out
    idx = arg(x, axis=axis, keepdim=True)
    out = paddle.take_along_axis(x, idx, axis, broadcast=False)
    return out if keepdims else paddle.squeeze(out, axis=axis)


def max(x, axis=None, keepdims: bool = False):  # noqa: A001
    return _extreme(x, axis, keepdims, paddle.argmax)


def min(x, axis=None, keepdims: bool = False):  # noqa: A001
    return _extreme(x, axis, keepdims, paddle.argmin)

"""The array-API namespace of the TensorFlow backend: a thin wrapper type over tf.Tensor.

Why a wrapper and not tf.Tensor itself: model code reads `x.shape` and does arithmetic on it
(reshape targets, offsets). A tf.Tensor in a graph with dynamic sizes reports None there, so
`TFArray.shape` gives a `SymDim` (a scalar int tensor with Python arithmetic) for every size the
graph does not know: one traced graph then serves any atom count (the frozen `.pb`). Known sizes
stay Python ints, so eager runs and fixed-shape training graphs are unaffected.

Only the functions and operators the model code uses are here (grep `xp\\.` in deepmd_md/model);
tests/tensorflow/test_xp.py checks each against NumPy.
"""

from __future__ import annotations

import builtins
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ banner lines on import

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

float32, float64, int32, int64, bool = tf.float32, tf.float64, tf.int32, tf.int64, tf.bool  # noqa: A001
pi, e, inf = np.pi, np.e, np.inf


class SymDim:
    """A size the graph knows only at run time: scalar int32 tensor with +, -, *, //, %.

    Using it as a Python int or bool (range, if, comparisons) raises: such code would bake one
    size into the graph."""

    __slots__ = ("t",)

    def __init__(self, t):
        self.t = t

    def _op(self, other, fn):
        o = other.t if isinstance(other, SymDim) else other
        return SymDim(fn(self.t, o))

    def __add__(self, o):
        return self._op(o, lambda a, b: a + b)

    def __radd__(self, o):
        return self._op(o, lambda a, b: b + a)

    def __sub__(self, o):
        return self._op(o, lambda a, b: a - b)

    def __rsub__(self, o):
        return self._op(o, lambda a, b: b - a)

    def __mul__(self, o):
        return self._op(o, lambda a, b: a * b)

    def __rmul__(self, o):
        return self._op(o, lambda a, b: b * a)

    def __floordiv__(self, o):
        return self._op(o, lambda a, b: a // b)

    def __mod__(self, o):
        return self._op(o, lambda a, b: a % b)

    def _static(self, *_):
        raise TypeError("a size known only at run time (TensorFlow graph) was used as a Python "
                        "value; the TensorFlow backend needs shape-independent model code here")

    __index__ = __int__ = __bool__ = __lt__ = __le__ = __gt__ = __ge__ = _static
    # == keeps object identity: "not known to be equal", which model code uses only to skip
    # work that is always correct to do (dpa3: `nall == nloc` -> no exchange needed)
    __hash__ = object.__hash__


def _dim_tensor(d):
    return tf.cast(d.t, tf.int32) if isinstance(d, SymDim) else tf.constant(int(d), tf.int32)


def _shape(shape):
    """A shape argument (ints and SymDims) for a tf op."""
    if isinstance(shape, SymDim | TFArray):
        shape = (shape,)
    if isinstance(shape, TFArray):
        return shape.t
    dims = tuple(shape)
    if builtins.all(not isinstance(d, SymDim) for d in dims):
        return [int(d) for d in dims]
    return tf.stack([_dim_tensor(d) for d in dims]) if dims else tf.constant([], tf.int32)


def _bound(v):
    if isinstance(v, SymDim):
        return v.t
    if isinstance(v, TFArray):
        return v.t
    return v


def _key(k):
    """A __getitem__ key with SymDims/arrays turned into tensors."""
    if isinstance(k, tuple):
        return tuple(_key(x) for x in k)
    if isinstance(k, slice):
        return slice(_bound(k.start), _bound(k.stop), _bound(k.step))
    return _bound(k)


def _is_float(dt) -> bool:
    return dt.is_floating or dt.is_complex


def _promote(a, b):
    """(tensor, tensor) with one dtype: Python scalars take the array's dtype (array API),
    int with float becomes float, narrower with wider becomes wider."""
    if not isinstance(a, tf.Tensor | tf.Variable):
        a = _scalar(a, b.dtype)
    elif not isinstance(b, tf.Tensor | tf.Variable):
        b = _scalar(b, a.dtype)
    if a.dtype == b.dtype:
        return a, b
    da, db = a.dtype, b.dtype
    if _is_float(da) != _is_float(db):
        return (a, tf.cast(b, da)) if _is_float(da) else (tf.cast(a, db), b)
    if da.size >= db.size:
        return a, tf.cast(b, da)
    return tf.cast(a, db), b


def _scalar(v, dtype):
    if isinstance(v, SymDim):
        return tf.cast(v.t, dtype)
    if isinstance(v, float) and not _is_float(dtype):
        return tf.constant(v, tf.float64)
    return tf.constant(v, dtype)


def _un(x):
    if isinstance(x, TFArray):
        return x.t
    if isinstance(x, SymDim):
        return x.t
    return x


def _binary(fn):
    def op(self, other):
        a, b = _promote(self.t, _un(other))
        return TFArray(fn(a, b))

    def rop(self, other):
        b, a = _promote(self.t, _un(other))
        return TFArray(fn(a, b))

    return op, rop


class TFArray:
    """An array of this namespace: `.t` is the tf.Tensor."""

    __slots__ = ("t",)
    __array_priority__ = 1000  # NumPy scalars/arrays on the left defer to our operators

    def __init__(self, t):
        self.t = t if isinstance(t, tf.Tensor | tf.Variable) else tf.convert_to_tensor(t)

    @property
    def shape(self):
        static = self.t.shape.as_list()
        if builtins.all(d is not None for d in static):
            return tuple(static)
        dyn = tf.shape(self.t)
        return tuple(d if d is not None else SymDim(dyn[i]) for i, d in enumerate(static))

    @property
    def ndim(self):
        return self.t.shape.rank

    @property
    def dtype(self):
        return self.t.dtype

    @property
    def mT(self):  # noqa: N802
        return TFArray(tf.linalg.matrix_transpose(self.t))

    def __getitem__(self, k):
        return TFArray(self.t[_key(k)])

    def __neg__(self):
        return TFArray(-self.t)

    def __pos__(self):
        return self

    def __abs__(self):
        return TFArray(tf.abs(self.t))

    def __invert__(self):
        return TFArray(tf.logical_not(self.t) if self.t.dtype == tf.bool else ~self.t)

    def __bool__(self):
        raise TypeError("the truth value of a TensorFlow array is not a Python bool")

    def __float__(self):
        return float(self.t.numpy())

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.t.numpy(), dtype=dtype)

    def __repr__(self):
        return f"TFArray({self.t!r})"

    __hash__ = object.__hash__

    __add__, __radd__ = _binary(tf.add)
    __sub__, __rsub__ = _binary(tf.subtract)
    __mul__, __rmul__ = _binary(tf.multiply)
    __truediv__, __rtruediv__ = _binary(lambda a, b: tf.math.truediv(a, b)
                                        if _is_float(a.dtype) else
                                        tf.math.truediv(tf.cast(a, tf.float64),
                                                        tf.cast(b, tf.float64)))
    __floordiv__, __rfloordiv__ = _binary(tf.math.floordiv)
    __mod__, __rmod__ = _binary(tf.math.floormod)
    __pow__, __rpow__ = _binary(lambda a, b: tf.pow(a, b))
    __matmul__, __rmatmul__ = _binary(tf.linalg.matmul)
    __and__, __rand__ = _binary(lambda a, b: tf.logical_and(a, b) if a.dtype == tf.bool
                                else tf.bitwise.bitwise_and(a, b))
    __or__, __ror__ = _binary(lambda a, b: tf.logical_or(a, b) if a.dtype == tf.bool
                              else tf.bitwise.bitwise_or(a, b))
    __xor__, __rxor__ = _binary(lambda a, b: tf.math.logical_xor(a, b))
    __lt__, _ = _binary(tf.less)
    __le__, _ = _binary(tf.less_equal)
    __gt__, _ = _binary(tf.greater)
    __ge__, _ = _binary(tf.greater_equal)
    __eq__, _ = _binary(tf.equal)
    __ne__, _ = _binary(tf.not_equal)


def is_array(x) -> bool:
    return isinstance(x, TFArray)


def _t(x, dtype=None):
    if isinstance(x, TFArray):
        return x.t
    return tf.convert_to_tensor(x, dtype=dtype)


def _dtype(d, default=tf.float64):
    if d is None:
        return default
    return d if isinstance(d, tf.DType) else tf.as_dtype(np.dtype(d))


# -- creation ---------------------------------------------------------------------------------
def asarray(x, dtype=None, copy=None):
    return x if isinstance(x, TFArray) and dtype is None else TFArray(
        tf.convert_to_tensor(_un(x), dtype=None if dtype is None else _dtype(dtype)))


def zeros(shape, dtype=None):
    return TFArray(tf.zeros(_shape(shape), _dtype(dtype)))


def ones(shape, dtype=None):
    return TFArray(tf.ones(_shape(shape), _dtype(dtype)))


def full(shape, fill_value, dtype=None):
    return TFArray(tf.fill(_shape(shape), tf.constant(fill_value, _dtype(dtype))))


def zeros_like(x, dtype=None):
    return TFArray(tf.zeros_like(x.t, dtype=None if dtype is None else _dtype(dtype)))


def ones_like(x, dtype=None):
    return TFArray(tf.ones_like(x.t, dtype=None if dtype is None else _dtype(dtype)))


def full_like(x, fill_value, dtype=None):
    dt = x.t.dtype if dtype is None else _dtype(dtype)
    return TFArray(tf.fill(tf.shape(x.t), tf.constant(fill_value, dt)))


def eye(n, n_cols=None, dtype=None):
    return TFArray(tf.eye(n, n_cols, dtype=_dtype(dtype)))


def arange(start, stop=None, step=1, dtype=None):
    if stop is None:
        start, stop = 0, start
    dt = _dtype(dtype, tf.int64 if builtins.all(isinstance(v, int | SymDim)
                                       for v in (start, stop, step)) else tf.float64)
    return TFArray(tf.range(_scalar(start, dt), _scalar(stop, dt), _scalar(step, dt), dtype=dt))


# -- shape ------------------------------------------------------------------------------------
def reshape(x, shape, copy=None):
    return TFArray(tf.reshape(x.t, _shape(shape)))


def broadcast_to(x, shape):
    return TFArray(tf.broadcast_to(x.t, _shape(shape)))


def permute_dims(x, axes):
    return TFArray(tf.transpose(x.t, axes))


def matrix_transpose(x):
    return TFArray(tf.linalg.matrix_transpose(x.t))


def concat(arrays, axis=0):
    ts = [_t(a) for a in arrays]
    dt = ts[0].dtype
    for t in ts[1:]:
        dt = _promote(tf.zeros([], dt), tf.zeros([], t.dtype))[0].dtype
    return TFArray(tf.concat([tf.cast(t, dt) for t in ts], axis=axis))


def expand_dims(x, axis=0):
    return TFArray(tf.expand_dims(x.t, axis))


def squeeze(x, axis):
    return TFArray(tf.squeeze(x.t, axis))


def stack(arrays, axis=0):
    return TFArray(tf.stack([_t(a) for a in arrays], axis=axis))


# -- elementwise ------------------------------------------------------------------------------
def _unary(fn):
    return lambda x: TFArray(fn(x.t))


sqrt, exp, log, tanh, abs = (_unary(tf.sqrt), _unary(tf.exp), _unary(tf.math.log),  # noqa: A001
                             _unary(tf.tanh), _unary(tf.abs))
sin, cos, square, sign = _unary(tf.sin), _unary(tf.cos), _unary(tf.square), _unary(tf.sign)
floor, round = _unary(tf.floor), _unary(tf.round)  # noqa: A001


def real(x):
    return TFArray(tf.math.real(x.t)) if x.t.dtype.is_complex else x


def astype(x, dtype, copy=True):
    return TFArray(tf.cast(x.t, _dtype(dtype)))


def where(cond, a, b):
    c = _t(cond)
    ta, tb = _un(a), _un(b)
    if not isinstance(ta, tf.Tensor | tf.Variable) and not isinstance(tb, tf.Tensor | tf.Variable):
        ta = tf.constant(ta)
    ta, tb = _promote(ta, tb)
    return TFArray(tf.where(c, ta, tb))


def clip(x, min=None, max=None):  # noqa: A002
    t = x.t
    if min is not None:
        t = tf.maximum(t, _promote(t, _un(min))[1])
    if max is not None:
        t = tf.minimum(t, _promote(t, _un(max))[1])
    return TFArray(t)


def maximum(a, b):
    return TFArray(tf.maximum(*_promote(_un(a), _un(b))))


def minimum(a, b):
    return TFArray(tf.minimum(*_promote(_un(a), _un(b))))


def matmul(a, b):
    return TFArray(tf.linalg.matmul(*_promote(_un(a), _un(b))))


# -- reductions and indexing ------------------------------------------------------------------
def sum(x, axis=None, keepdims=False, dtype=None):  # noqa: A001
    t = x.t
    if t.dtype == tf.bool:
        t = tf.cast(t, tf.int64)
    if dtype is not None:
        t = tf.cast(t, _dtype(dtype))
    return TFArray(tf.reduce_sum(t, axis=axis, keepdims=keepdims))


def prod(x, axis=None, keepdims=False):
    return TFArray(tf.reduce_prod(x.t, axis=axis, keepdims=keepdims))


def mean(x, axis=None, keepdims=False):
    return TFArray(tf.reduce_mean(x.t, axis=axis, keepdims=keepdims))


def max(x, axis=None, keepdims=False):  # noqa: A001
    return TFArray(tf.reduce_max(x.t, axis=axis, keepdims=keepdims))


def min(x, axis=None, keepdims=False):  # noqa: A001
    return TFArray(tf.reduce_min(x.t, axis=axis, keepdims=keepdims))


def any(x, axis=None, keepdims=False):  # noqa: A001
    return TFArray(tf.reduce_any(x.t, axis=axis, keepdims=keepdims))


def all(x, axis=None, keepdims=False):  # noqa: A001
    return TFArray(tf.reduce_all(x.t, axis=axis, keepdims=keepdims))


def take(x, indices, axis=None):
    t = x.t if axis is not None else tf.reshape(x.t, [-1])
    return TFArray(tf.gather(t, _t(indices), axis=0 if axis is None else axis))


def take_along_axis(x, indices, axis=-1):
    """x [..., n, ...], indices [..., k, ...] with equal leading sizes (axis last here)."""
    nd = x.ndim
    ax = axis % nd
    if ax != nd - 1:
        perm = [*[i for i in range(nd) if i != ax], ax]
        inv = np.argsort(perm).tolist()
        out = take_along_axis(permute_dims(x, perm), permute_dims(indices, perm), -1)
        return permute_dims(out, inv)
    return TFArray(tf.gather(x.t, _t(indices), axis=nd - 1, batch_dims=nd - 1))


def argsort(x, axis=-1, descending=False, stable=True):
    return TFArray(tf.cast(tf.argsort(x.t, axis=axis, direction="DESCENDING" if descending
                                      else "ASCENDING", stable=True), tf.int64))


def nonzero(x):
    w = tf.where(x.t)
    return tuple(TFArray(w[:, i]) for i in range(x.ndim))


# -- dtypes ------------------------------------------------------------------------------------
def isdtype(dtype, kind) -> bool:
    if isinstance(kind, tuple):
        return builtins.any(isdtype(dtype, k) for k in kind)
    dt = _dtype(dtype)
    if isinstance(kind, str):
        return {"bool": dt == tf.bool, "signed integer": dt.is_integer and not dt.is_unsigned,
                "unsigned integer": dt.is_unsigned, "integral": dt.is_integer,
                "real floating": dt.is_floating, "complex floating": dt.is_complex,
                "numeric": dt.is_integer or dt.is_floating or dt.is_complex}[kind]
    return dt == _dtype(kind)


def finfo(dtype):
    return np.finfo(_dtype(dtype).as_numpy_dtype)

"""Build a Paddle static program from the shared model code, with dynamic atom counts.

Why not paddle.jit.to_static: its AST conversion rewrites every function the model calls, and
mangles plain Python (config lookups, registries), while shape-dependent branches such as "pad
the nlist when it is narrower than sel" become graph conditionals that recurse. What the model
needs is what torch.jit.trace gives the PyTorch freezer: run the Python once on an example,
record the ops, keep every size symbolic.

`Dual` does that. Each array is a pair: a NumPy value of the example (sizes, and the branch that
Python takes on them) and a static-graph Value (the op recorded for any size). `x.shape` gives
`SymDim`s: ints equal to the example size that also carry the runtime size (a 0-d Value), so a
reshape to (nf * n, 3) records the product of runtime sizes, not the example's number. Python
branches on sizes follow the example, as in a trace: the freezer picks an example that takes
the branch every runtime input takes (the nlist is padded to at least the model's width).

The namespace `DUAL` (registered with deepmd_md.model.xp for Duals) lifts each function of the
Paddle shim: NumPy (array_api_compat) on the example side, the shim on the static side.
"""

from __future__ import annotations

import operator
from types import ModuleType

import array_api_compat.numpy as anp
import numpy as np

from deepmd_md.backends.paddle import import_paddle
from deepmd_md.backends.paddle import xp as pxp

paddle = import_paddle()

_NP_DTYPES = {paddle.float32: np.float32, paddle.float64: np.float64, paddle.int32: np.int32,
              paddle.int64: np.int64, paddle.bool: np.bool_}


class SymDim(int):
    """A size: the example's (as an int) and the runtime one (`value`, a 0-d int64 Value)."""

    value: paddle.pir.Value

    def __new__(cls, example: int, value):
        self = int.__new__(cls, example)
        self.value = value
        return self

    def _op(self, other, fn, reflected=False):
        if not isinstance(other, int):
            return NotImplemented
        a, b = (other, self) if reflected else (self, other)
        va, vb = (x.value if isinstance(x, SymDim) else int(x) for x in (a, b))
        return SymDim(fn(int(a), int(b)), fn(va, vb))

    def __add__(self, o):
        return self._op(o, operator.add)

    def __radd__(self, o):
        return self._op(o, operator.add, True)

    def __sub__(self, o):
        return self._op(o, operator.sub)

    def __rsub__(self, o):
        return self._op(o, operator.sub, True)

    def __mul__(self, o):
        return self._op(o, operator.mul)

    def __rmul__(self, o):
        return self._op(o, operator.mul, True)

    def __floordiv__(self, o):
        return self._op(o, operator.floordiv)

    def __neg__(self):
        return SymDim(-int(self), -self.value)

    __hash__ = int.__hash__


class Dual:
    """An array being traced: `e` (NumPy example value), `s` (static-graph Value)."""

    __array_priority__ = 1000  # NumPy scalars defer to our reflected operators

    def __init__(self, e, s):
        self.e, self.s = np.asarray(e), s

    @property
    def shape(self) -> tuple:
        if not hasattr(self, "_shape"):
            dims, rt = [], None
            for i, (n, st) in enumerate(zip(self.e.shape, self.s.shape, strict=True)):
                if st >= 0:
                    dims.append(int(n))
                    continue
                if rt is None:
                    rt = paddle.shape(self.s)
                dims.append(SymDim(n, rt[i]))
            self._shape = tuple(dims)
        return self._shape

    @property
    def ndim(self) -> int:
        return self.e.ndim

    @property
    def dtype(self):
        return self.s.dtype

    def __getitem__(self, item):
        return Dual(self.e[_idx(item, "e")], self.s[_idx(item, "s")])

    def __bool__(self):
        raise TypeError("a traced array has no truth value (model code must not branch on "
                        "array values)")

    __hash__ = object.__hash__


def _idx(item, side):
    if isinstance(item, tuple):
        return tuple(_idx(i, side) for i in item)
    if isinstance(item, slice):
        return slice(*(_idx(x, side) for x in (item.start, item.stop, item.step)))
    return _unwrap(item, side)


def _unwrap(x, side: str):
    """The example ("e") or static ("s") side of x (nested lists and tuples included)."""
    if isinstance(x, Dual):
        return x.e if side == "e" else x.s
    if isinstance(x, SymDim):
        return int(x) if side == "e" else x.value
    if isinstance(x, tuple | list):
        return type(x)(_unwrap(v, side) for v in x)
    if side == "e" and isinstance(x, paddle.dtype):
        return _NP_DTYPES[x]
    return x


def unwrap(tree, side: str):
    """The example ("e", NumPy) or static ("s", Value) side of every Dual in a tree of dicts,
    lists and tuples (custom operators: backends/paddle/ops.py)."""
    if isinstance(tree, dict):
        return {k: unwrap(v, side) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return type(tree)(unwrap(v, side) for v in tree)
    return _unwrap(tree, side)


def _operand(x, like):
    """The static side of an operand next to the Value `like`. Python numbers become 0-d
    constants of like's dtype: Paddle's static operators would fold them into a float32 `scale`
    attribute (x / 2.5 off by 1e-8 in fp64)."""
    if isinstance(x, Dual):
        return x.s
    if isinstance(x, SymDim):
        return x.value if pxp.isdtype(like.dtype, "integral") else paddle.cast(x.value, like.dtype)
    if isinstance(x, bool | int | float | np.number):
        dtype = like.dtype
        if isinstance(x, float | np.floating) and not pxp.isdtype(dtype, "real floating"):
            dtype = paddle.float64
        return paddle.full([], x, dtype=dtype)
    return x


def _expand_to(x, other):
    """x expanded (paddle.expand) along every axis where its static size is 1 and other's
    is not (other's size, runtime when dynamic); x itself when no axis needs it."""
    sx, so = list(x.shape), list(other.shape)
    n = max(len(sx), len(so))
    sx, so = [1] * (n - len(sx)) + sx, [1] * (n - len(so)) + so
    if n == 0 or all(a != 1 or b == 1 for a, b in zip(sx, so, strict=True)):
        return x
    rt, shape = None, []
    for i, (a, b) in enumerate(zip(sx, so, strict=True)):
        if a == 1 and b != 1:
            if b < 0:
                rt = paddle.shape(other) if rt is None else rt
                b = rt[i - (n - len(other.shape))]
            shape.append(b)
        else:  # a size of its own (-1 keeps it), or a new leading axis of size 1
            shape.append(-1 if i >= n - len(x.shape) else 1)
    return paddle.expand(x, shape)


def _same_shape(a, b):
    """(a, b) broadcast explicitly where their static shapes say so. Why: Paddle's CPU
    elementwise kernels take a generic, scalar broadcast path (and a slower one still for the
    gradient) whenever the shapes differ; expand + the same-shape kernel computes the same
    numbers 2-5x faster on the embedding's [M, pairs] arrays (docs/backend_paddle.md)."""
    if not (isinstance(a, paddle.pir.Value) and isinstance(b, paddle.pir.Value)):
        return a, b
    return _expand_to(a, b), _expand_to(b, a)


def _binary(fn, expand=True):
    prep = _same_shape if expand else (lambda a, b: (a, b))

    def op(self, other):
        return Dual(fn(self.e, _unwrap(other, "e")), fn(*prep(self.s, _operand(other, self.s))))

    def rop(self, other):
        return Dual(fn(_unwrap(other, "e"), self.e), fn(*prep(_operand(other, self.s), self.s)))

    return op, rop


for _name, _fn in (("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("pow", operator.pow),
                   ("and", operator.and_), ("or", operator.or_)):
    _op, _rop = _binary(_fn, expand=_name in ("add", "sub", "mul", "truediv"))
    setattr(Dual, f"__{_name}__", _op)
    setattr(Dual, f"__r{_name}__", _rop)
for _name, _fn in (("lt", operator.lt), ("le", operator.le), ("gt", operator.gt),
                   ("ge", operator.ge), ("eq", operator.eq), ("ne", operator.ne)):
    setattr(Dual, f"__{_name}__", _binary(_fn, expand=False)[0])
for _name, _fn in (("neg", operator.neg), ("invert", operator.invert), ("abs", operator.abs)):
    setattr(Dual, f"__{_name}__", lambda self, fn=_fn: Dual(fn(self.e), fn(self.s)))


def _lift(name: str):
    """The shim function `name` on Duals: NumPy on the example, Paddle on the graph."""
    e_fn, s_fn = getattr(anp, name), getattr(pxp, name)

    def fn(*args, **kwargs):
        e = e_fn(*_unwrap(args, "e"), **{k: _unwrap(v, "e") for k, v in kwargs.items()})
        s = s_fn(*_unwrap(args, "s"), **{k: _unwrap(v, "s") for k, v in kwargs.items()})
        if isinstance(s, tuple):
            return tuple(Dual(a, b) for a, b in zip(e, s, strict=True))
        return Dual(e, s)

    fn.__name__ = name
    return fn


_LIFTED = ("asarray", "zeros", "ones", "zeros_like", "ones_like", "full_like", "eye", "arange",
           "astype", "reshape", "concat", "broadcast_to", "permute_dims", "matrix_transpose",
           "take", "take_along_axis", "nonzero", "where", "argsort", "sqrt", "exp", "log", "tanh",
           "abs", "floor", "real", "clip", "minimum", "maximum", "matmul", "sum", "any", "mean",
           "max", "min")

DUAL = ModuleType("deepmd_md.backends.paddle.dual")  # an array namespace is a module
DUAL.__dict__.update(
    {n: _lift(n) for n in _LIFTED},
    isdtype=pxp.isdtype, bool=pxp.bool, float32=pxp.float32, float64=pxp.float64,
    int32=pxp.int32, int64=pxp.int64, complex64=pxp.complex64, complex128=pxp.complex128)


def is_dual(x) -> bool:
    return isinstance(x, Dual)

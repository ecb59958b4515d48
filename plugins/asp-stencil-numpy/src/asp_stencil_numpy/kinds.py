"""Whether whole-array NumPy computes each operation in the precision Python computes it in.

In Python every point has its own values, each with its own type: a grid read is a NumPy scalar
of the grid's dtype, a literal or a ``math`` function's result is a Python number, which NumPy
treats as *weak* (NEP 50: ``0.3 * float32(0.1)`` computes in float32), and a conditional
expression or ``min``/``max`` gives whichever operand it picked, with that operand's type. On
this platform a value that varies from point to point is one array with one dtype:

* ``t if c else e`` and ``min``/``max`` become ``numpy.where``, an array of the operands'
  promoted dtype: ``0.3 if c else 0.7`` is a float64 array, no longer weak, so ``t *
  float32(0.1)`` computes in float64 where Python computed in float32; ``1 if c else 3`` is an
  int64 array, so ``t * int8(-3)`` no longer wraps around in int8; ``0.1 if c else
  float32(0.1)`` is a float32 array, which rounds the Python float 0.1;
* ``math.sqrt(u[x])`` is a float64 array where Python gave a weak Python float;
* ``min(u[x], float32(0.1))`` is a float64 array where Python kept, at some points, the
  float32 scalar (``* 0.1`` then computes in float32 there).

:func:`kinds_reason` follows each value through a point loop with both its *Python kinds* (the
set of types it may have at a point, as :mod:`asp_stencil.scalar_types` names them) and its
*NumPy kind* (the dtype of the lowered value, or ``int``/``float`` for a Python number the
generated code still computes with in Python), and returns why the lowering would compute an
operation in another precision than Python at some point, or hold a value it picked inexactly.
Python ints held in a float64 array are exact: the arithmetic on them is refused elsewhere
(:func:`asp_stencil.python_ints.check_python_ints`) where it may not be.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable

import numpy as np
from asp_stencil import dast as D
from asp_stencil.scalar_types import kind_name, kind_of, precision, result_kind

__all__ = ["kinds_reason"]

#: the lowered operation of each binary operator (see :mod:`asp_stencil_numpy.lowering`)
_LOWERED: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": np.floor_divide, "%": np.remainder, "**": np.power}
_WEAK = ("int", "float", "bool")


class _Refusal(Exception):
    pass


def _a(kind: str) -> str:
    """``kind`` with its article, as users know it: "a Python int", "a float32 value"."""
    if kind in ("int", "float", "bool"):
        return f"a Python {kind}"
    name = kind_name(kind)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name} value"


def _fits(operands: list[Any], dtype: str) -> None:
    """Refuse a Python int constant among ``operands`` that NumPy must convert to the integer
    ``dtype`` (an array's, or the int64 ``numpy.where`` makes of it) and cannot: NumPy raises
    OverflowError there, Python computed with the exact int (refused by the ``type-check``
    pass too, which a user may disable)."""
    if dtype in _WEAK or np.dtype(dtype).kind not in "iu":
        return
    info = np.iinfo(np.dtype(dtype))
    for e in operands:
        if isinstance(e, D.Const) and not e.kind and isinstance(e.value, int) and not (
                info.min <= e.value <= info.max):
            raise _Refusal(f"the constant {e.value} is out of bounds for {kind_name(dtype)} "
                           "(NumPy raises OverflowError)")


def _sample(kind: str) -> Any:
    """A value of NumPy kind ``kind``: a Python number, or a one-point array of the dtype (an
    array and a NumPy scalar of one dtype promote alike)."""
    if kind == "bool":
        return True
    if kind == "int":
        return 3
    if kind == "float":
        return 1.5
    return np.full(1, 3, dtype=np.dtype(kind))


def _kind(value: Any) -> str:
    """The NumPy kind of a lowered operation's sample result."""
    if isinstance(value, np.ndarray):
        return "bool" if value.dtype == np.bool_ else value.dtype.str
    return kind_of(value)


@functools.lru_cache(maxsize=None)
def _np_binop(op: str, a: str, b: str) -> str:
    """The NumPy kind of the lowered ``a op b``."""
    with np.errstate(all="ignore"):
        return _kind(_LOWERED[op](_sample(a), _sample(b)))


@functools.lru_cache(maxsize=None)
def _np_where(a: str, b: str) -> str:
    """The dtype of ``numpy.where(test, a, b)`` (always an array)."""
    return np.where(np.ones(1, dtype=bool), _sample(a), _sample(b)).dtype.str


@functools.lru_cache(maxsize=None)
def _np_ufunc(func: str, a: str) -> str:
    """The NumPy kind of the lowered one-argument function (``abs`` is ``numpy.absolute``)."""
    with np.errstate(all="ignore"):
        return _kind(getattr(np, "absolute" if func == "abs" else func)(_sample(a)))


def _same_precision(op: str, py: tuple[str, str], computed: str) -> bool:
    """Whether Python's ``x op y`` for kinds ``py`` computes in the precision of NumPy kind
    ``computed`` (Python ints: also exactly in float64)."""
    want = precision(result_kind(op, *py))
    got = precision(computed)
    return want == got or (want == "<i8" and got == "<f8" and set(py) <= {"int", "bool"})


def _holds(kind: str, dtype: str) -> bool:
    """Whether an array of ``dtype`` holds every value of Python kind ``kind`` exactly."""
    if kind == "bool":
        return True
    if kind == "int":
        return dtype in ("<i8", "<f8")
    if kind == "float":
        return dtype == "<f8"
    return bool(np.can_cast(np.dtype(kind), np.dtype(dtype), "safe"))


def _check(op: str, pa: frozenset[str], pb: frozenset[str], computed: str, what: str,
           does: str) -> None:
    """Refuse ``a op b`` (Python kinds ``pa``, ``pb``) computed as NumPy kind ``computed``
    where some pair of Python kinds computes in another precision."""
    for x in sorted(pa):
        for y in sorted(pb):
            if not _same_precision(op, (x, y), computed):
                raise _Refusal(
                    f"{what} of {_a(x)} and {_a(y)}: Python {does} in "
                    f"{kind_name(precision(result_kind(op, x, y)))} at the points where the "
                    f"values have those types, the whole-array version in "
                    f"{kind_name(precision(computed))}")


class _Kinds:
    def __init__(self, grids: dict[str, str], env: dict[str, tuple[frozenset[str], str]]) -> None:
        self.grids = grids
        self.env = env

    def visit(self, e: Any) -> tuple[frozenset[str], str]:
        """``(Python kinds, NumPy kind)`` of ``e``; raises :class:`_Refusal`."""
        if isinstance(e, D.Const):
            k = kind_of(e.value)
            return frozenset({k}), k
        if isinstance(e, D.Read):
            k = np.dtype(self.grids[e.grid]).str
            return frozenset({k}), k
        if isinstance(e, D.Var):
            return self.env.get(e.name, (frozenset({"<f8"}), "<f8"))
        if isinstance(e, D.BinOp):
            (pa, na), (pb, nb) = self.visit(e.left), self.visit(e.right)
            nk = _np_binop(e.op, na, nb)
            _fits([e.left, e.right], nk)
            if e.op == "**" and nk not in _WEAK and np.dtype(nk).kind in "iu":
                raise _Refusal("integer power ('**' of integer values: NumPy raises for negative "
                               "exponents)")
            _check(e.op, pa, pb, nk, f"operator '{e.op}'", "computes it")
            return frozenset(result_kind(e.op, x, y) for x in pa for y in pb), nk
        if isinstance(e, D.UnaryOp):
            p, n = self.visit(e.operand)
            if e.op == "not":
                return frozenset({"bool"}), "bool"
            return p, n
        if isinstance(e, (D.Compare, D.BoolOp)):
            operands = [e.left, *e.comparators] if isinstance(e, D.Compare) else e.values
            found = [self.visit(o) for o in operands]
            if isinstance(e, D.Compare):
                for (pa, na), (pb, nb) in zip(found, found[1:]):
                    self._compare(pa, na, pb, nb, "comparison")
            return frozenset({"bool"}), "bool"
        if isinstance(e, D.IfExp):
            self.visit(e.test)
            (pa, na), (pb, nb) = self.visit(e.body), self.visit(e.orelse)
            _fits([e.body, e.orelse], _np_where(na, nb))
            return self._selected(pa | pb, _np_where(na, nb), "conditional expression")
        if isinstance(e, D.Call):
            args = [self.visit(a) for a in e.args]
            if e.func in ("min", "max"):
                acc_p, acc_n = args[0]
                for (p, n), arg in zip(args[1:], e.args[1:]):
                    _fits([arg, *e.args[:1]], _np_where(n, acc_n))
                    self._compare(p, n, acc_p, acc_n, f"{e.func}()")
                    acc_p, acc_n = self._selected(acc_p | p, _np_where(n, acc_n), f"{e.func}()")
                return acc_p, acc_n
            if e.func == "abs":
                p, n = args[0]
                return p, _np_ufunc("abs", n)
            # math.sqrt/exp/log/sin/cos/pow: Python converts the arguments to doubles and gives
            # a (weak) Python float
            computed = _np_binop("**", args[0][1], args[1][1]) if e.func == "pow" else \
                _np_ufunc(e.func, args[0][1])
            if precision(computed) != "<f8":
                raise _Refusal(f"math.{e.func}() of {_a(computed)}: Python computes it in "
                               "double precision, the whole-array version not")
            return frozenset({"float"}), computed
        raise _Refusal(f"no kinds for {type(e).__name__}")

    def _compare(self, pa: frozenset[str], na: str, pb: frozenset[str], nb: str,
                 what: str) -> None:
        computed = _np_binop("+", na, nb)  # the kind both are compared in (scalar_types' '<')
        _check("<", pa, pb, computed, what, "compares them")

    @staticmethod
    def _selected(py: frozenset[str], dtype: str, what: str) -> tuple[frozenset[str], str]:
        for k in sorted(py):
            if not _holds(k, dtype):
                raise _Refusal(f"{what} choosing {_a(k)} at some points: its "
                               f"whole-array version holds it as {kind_name(dtype)}")
        return py, dtype


def kinds_reason(body: tuple, grids: dict[str, str],
                 env: dict[str, tuple[frozenset[str], str]] | None = None,
                 where: Callable[[int], str] = "kernel line {}".format) -> str | None:
    """Why the statements ``body`` (a point loop's, or top-level assignments) would be computed
    in another precision than Python's at some point, or ``None``. ``grids``: each grid's dtype;
    ``env``: the kinds of the locals assigned before (updated with those of ``body``);
    ``where(line)``: how a reason names a kernel line (its file and line)."""
    env = {} if env is None else env
    walker = _Kinds(grids, env)
    for s in body:
        if not isinstance(s, (D.Assign, D.Store)):
            continue
        try:
            found = walker.visit(s.value)
        except _Refusal as exc:
            return f"{exc} (at {where(s.line)})"
        if isinstance(s, D.Assign):
            if s.as_dtype:  # the value goes through a grid of that dtype in Python
                k = np.dtype(s.as_dtype).str
                found = (frozenset({k}), k)
            env[s.target] = found
    return None

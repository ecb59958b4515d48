"""Scalar types of a stencil kernel's run-time values, as NumPy and Python give them.

A grid read ``u[x]`` is a NumPy scalar of the grid's dtype; literals, kernel attributes that are
Python numbers and results of ``math`` functions are Python ``float``/``int`` — *weak* scalars
under NumPy's promotion rules (NEP 50): ``float32_value * 0.1`` computes in float32 with ``0.1``
rounded to float32, ``float32_value * float64_value`` in float64. The C backends must do exactly
the same arithmetic, so every expression is given a *kind*:

* a NumPy dtype string (``'<f4'``, ``'<f8'``, ``'<i4'``, ...) for NumPy scalars,
* ``'float'`` / ``'int'`` for Python numbers, ``'bool'`` for conditions.

Where the kind depends on a branch (``u32[x] if c else 0.5``, ``min(u32[x], 0.5)``) an
expression has a *set* of kinds. That is fine as long as each operation it flows into computes in
one precision whichever branch was taken (``(u32[x] if c else 0.5) * v32[x]`` is float32 either
way); otherwise the result would depend on the branch and :class:`TypeRefusal` is raised (the
kernel then runs in Python, whose semantics it has). Promotion is not tabulated here: the result
kind of each operation is what NumPy itself returns for sample scalars of the operand kinds.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import numpy as np

from asp_core import cast as C

__all__ = ["Kinds", "TypeRefusal", "kind_of", "grid_kind", "result_kind", "arith_kind",
           "compare_kind", "storage", "ctype_of", "exact_in_float32", "code", "arith_combo",
           "PrecisionDependsOnValue", "GRID_DTYPES", "is_float", "is_int", "INT_OPS",
           "int_range", "kind_name"]

Kinds = frozenset
#: Grid dtypes the compiled backends read and write.
GRID_DTYPES = ("<f8", "<f4", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4")
_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
        "**": operator.pow, "//": operator.floordiv, "%": operator.mod, "<": operator.add}
#: operators computed on integer values (NumPy's wrap-around and floor semantics, see lower_c)
INT_OPS = ("+", "-", "*", "//", "%")


class TypeRefusal(Exception):
    """An operation whose precision NumPy would choose per value, or an unsupported one."""

    #: the kernel line of the statement, set where the statement is known (0: unknown)
    line: int = 0


class PrecisionDependsOnValue(TypeRefusal):
    """The operation's precision depends on which kind an operand has at run time: the
    lowering dispatches on the operands' run-time kind tags instead (see ``lower_c``)."""


#: every kind, in a fixed order: the run-time tag of a value is its kind's index here
ALL_KINDS = ("float", "int", "bool") + GRID_DTYPES


def code(kind: str) -> int:
    """The run-time tag of ``kind``."""
    return ALL_KINDS.index(kind)


def arith_combo(op: str, a: str, b: str) -> tuple[str, str]:
    """``(result kind, precision)`` of ``a op b`` for single kinds (no integer arithmetic)."""
    kinds, prec = arith_kind(op, frozenset({a}), frozenset({b}))
    return next(iter(kinds)), prec


def kind_of(value: Any) -> str:
    """The kind of a Python or NumPy scalar value."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, np.generic):
        return value.dtype.str
    if isinstance(value, int):
        return "int"
    return "float"


def grid_kind(dtype: str) -> str:
    return np.dtype(dtype).str


def is_float(kind: str) -> bool:
    return kind == "float" or (kind not in ("int", "bool") and np.dtype(kind).kind == "f")


def is_int(kind: str) -> bool:
    return not is_float(kind)


def _sample(kind: str) -> Any:
    if kind == "float":
        return 1.5
    if kind in ("int", "bool"):
        return 3
    return np.dtype(kind).type(3)


@functools.lru_cache(maxsize=None)
def result_kind(op: str, a: str, b: str) -> str:
    """The kind NumPy/Python give ``a op b`` (``'<'``: the kind both are compared in)."""
    with np.errstate(all="ignore"):
        return kind_of(_OPS[op](_sample(a), _sample(b)))


def precision(kind: str) -> str:
    """The arithmetic a kind computes in: Python floats are doubles, Python ints int64."""
    return {"float": "<f8", "int": "<i8", "bool": "<i8"}.get(kind, kind)


def _single(kinds: set[str], what: str) -> str:
    precs = {precision(k) for k in kinds}
    if len(precs) != 1:
        # a Python int (a constant a branch chose) computes exactly in double too
        precs = {"<f8" if k in ("int", "bool") else precision(k) for k in kinds}
    if len(precs) != 1:
        names = ", ".join(sorted(kind_name(k) for k in kinds))
        raise PrecisionDependsOnValue(f"{what} whose precision depends on the value taken at run time "
                          f"({names}; NumPy would pick it per value)")
    return precs.pop()


def kind_name(kind: str) -> str:
    """A kind as users know it: ``float32``, ``int``, ..."""
    return kind if kind in ("float", "int", "bool") else np.dtype(kind).name


def arith_kind(op: str, a: Kinds, b: Kinds) -> tuple[Kinds, str]:
    """``(result kinds, precision computed in)`` of ``a op b``.

    Integer results are computed for :data:`INT_OPS` (NumPy wraps on overflow, floors ``//``
    and ``%``; the C lowering does the same); ``**`` of integers is refused: NumPy raises for
    a negative exponent, which compiled code cannot do."""
    results = {result_kind(op, x, y) for x in a for y in b}
    prec = _single(results, f"operator '{op}'")
    if op in ("*", "//", "%") and "int" in results and len(results) > 1:
        # Python ints computed in double: ``0 * -1`` is 0 in Python, -0.0 in double (and
        # ``0 // -3``, ``0 % -3`` alike), so the Python-int path must keep int arithmetic
        raise PrecisionDependsOnValue(f"operator '{op}' of Python ints on some paths only "
                                      "(their product or remainder has no signed zero)")
    if not is_float(prec) and op not in INT_OPS:
        raise TypeRefusal(f"integer power ('{op}' of integer values: NumPy raises for negative "
                          "exponents); make the base a float, e.g. (m[x] * 1.0) ** 2")
    if op == "**":
        for x in sorted(a):
            for y in sorted(b):
                if not pow_is_libm(x, y):
                    raise TypeRefusal(
                        f"'**' of a {kind_name(x)} value to a {kind_name(y)} power: NumPy "
                        "computes it with its own vectorised pow on this CPU, which differs "
                        "from the C library's in the last bit; make the base a float64 value, "
                        "e.g. (m[x] * 1.0) ** y")
    return frozenset(results), prec


def _value(kind: str, v: float) -> Any:
    """``v`` as a scalar of ``kind``."""
    if kind == "float":
        return float(v)
    if kind == "int":
        return int(v)
    if kind == "bool":
        return bool(v)
    return np.dtype(kind).type(v)


@functools.lru_cache(maxsize=None)
def _c_pow(prec: str) -> Any:
    """The C library's ``pow`` (``powf`` for float32): what the compiled ``asp_pow`` calls."""
    import ctypes
    import ctypes.util

    fn = getattr(ctypes.CDLL(ctypes.util.find_library("m")), "powf" if prec == "<f4" else "pow")
    ctype = ctypes.c_float if prec == "<f4" else ctypes.c_double
    fn.argtypes, fn.restype = [ctype, ctype], ctype
    return fn


@functools.lru_cache(maxsize=None)
def pow_is_libm(a: str, b: str) -> bool:
    """Whether ``a ** b`` gives, for sample values of kinds ``a`` and ``b``, what the C
    library's pow gives in the result's precision (the compiled code's ``asp_pow``).  NumPy
    sends some kinds (an integer scalar to a Python float power) through its ``np.power``
    loop, which on AVX-512 CPUs is NumPy's own vectorised pow, not libm's.  Probed, not
    tabulated: it depends on the NumPy build and the CPU."""
    prec = precision(result_kind("**", a, b))
    if not is_float(prec):
        return True
    c_pow, ftype = _c_pow(prec), np.dtype(prec).type
    exponents = (2, 3, 5) if is_int(b) else (0.25, 0.5, 1.5, 2.5, 3.0, -1.5)
    with np.errstate(all="ignore"):
        for base in range(1, 100):
            for e in exponents:
                x, y = _value(a, base), _value(b, e)
                want = ftype(c_pow(float(ftype(x)), float(ftype(y))))
                if float(x ** y) != float(want):
                    return False
    return True


def compare_kind(a: Kinds, b: Kinds) -> str:
    """The precision ``a`` and ``b`` are compared in (integers compare exactly, in int64)."""
    prec = _single({result_kind("<", x, y) for x in a for y in b}, "comparison")
    return "<i8" if not is_float(prec) else prec


def storage(kinds: Kinds) -> str:
    """The dtype a value of these kinds is held in without loss (a C local, a min/max)."""
    precs = {precision(k) for k in kinds}
    if len(precs) == 1:
        return precs.pop()
    if all(is_float(k) or k in ("int", "bool") for k in kinds):
        # float32 values are exact in double, and so are the Python ints of a kernel (constants)
        return "<f8"
    if not any(is_float(p) for p in precs):
        return "<i8"
    raise TypeRefusal("a value that is an integer on one path and a float on another")


def int_range(kind: str) -> tuple[int, int]:
    """The values an integer kind holds (a Python int: int64, the arithmetic it gets here)."""
    info = np.iinfo(np.dtype(precision(kind)))
    return int(info.min), int(info.max)


def exact_in_float32(value: Any) -> bool:
    """Whether a constant is the same number in float32, float64 and as a Python number."""
    if isinstance(value, (bool, np.bool_)):
        return True
    try:
        return float(np.float32(value)) == value and abs(value) < 2 ** 24
    except (OverflowError, TypeError):
        return False


def ctype_of(kind: str) -> C.CType:
    """The C type of values computed/held in ``kind``'s precision."""
    p = precision(kind)
    if p == "<f8":
        return C.DOUBLE
    if p == "<f4":
        return C.FLOAT
    if p == "<i8":
        return C.CType("int64_t")
    return C.ctype_for(np.dtype(p))

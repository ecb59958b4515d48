"""The *Python ints* of a stencil point, and the arithmetic on them compiled code may not
compute as Python does.

Constants a conditional, ``min``/``max`` or a branch chose, and ``+ - * // % **`` of them, are
Python ints: Python computes them exactly, the C backends in int64, or in double where the value
may be a float on another path. Arithmetic of Python ints whose operands or result are not
known to fit (``2**53`` when held in a double, int64 otherwise) is refused, as
``(max(u[x], 2**53) + 1) - 2**53`` is 1 in Python and 0 in double. The type-check pass reports
the refusal with its line, the C lowering (:func:`asp_stencil.lower_c.point_body`) refuses
again when that pass is disabled, and the NumPy platform declines the operations whose zero
has a sign only in floating point.
"""

from __future__ import annotations

from typing import NamedTuple

from . import dast as D
from .scalar_types import TypeRefusal

__all__ = ["check_python_ints"]


#: |value| below which double arithmetic on integers is exact
_EXACT_IN_DOUBLE = 2 ** 53
_INT64_MAX = 2 ** 63 - 1


class _Ints(NamedTuple):
    """What a value may be at run time: a Python int (``ints``) in ``bounds`` (``None``: not
    known), and/or something else (``other``: a NumPy scalar, a Python float or bool test;
    ``pyfloat``: that something else may be a Python float)."""

    ints: bool
    bounds: tuple[int, int] | None
    other: bool
    pyfloat: bool = False


_OTHER = _Ints(False, None, True)
_PYFLOAT = _Ints(False, None, True, True)


def _union(parts: list[_Ints]) -> _Ints:
    ints = [p for p in parts if p.ints]
    bounds = None if not ints or any(p.bounds is None for p in ints) else (
        min(p.bounds[0] for p in ints if p.bounds), max(p.bounds[1] for p in ints if p.bounds))
    return _Ints(bool(ints), bounds, any(p.other for p in parts), any(p.pyfloat for p in parts))


def _may_be(bounds: tuple[int, int] | None, lo: int | None, hi: int | None) -> bool:
    """Whether a Python int in ``bounds`` (``None``: not known) may lie in ``[lo, hi]``."""
    return bounds is None or ((lo is None or bounds[1] >= lo) and (hi is None or bounds[0] <= hi))


def _int_result(op: str, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    """Bounds of ``a op b`` for Python ints in the bounds ``a`` and ``b``."""
    (a0, a1), (b0, b1) = a, b
    if op == "+":
        return a0 + b0, a1 + b1
    if op == "-":
        return a0 - b1, a1 - b0
    if op == "*":
        corners = [a0 * b0, a0 * b1, a1 * b0, a1 * b1]
        return min(corners), max(corners)
    if op == "//":
        m = max(abs(a0), abs(a1), 1)
        return -m, m
    if op == "%":
        m = max(abs(b0), abs(b1))
        return -m, m
    if op == "**" and b1 <= 64:
        m = max(abs(a0), abs(a1)) ** max(b1, 0)
        return -m, m
    return None


def _ints(e: D.Expr, env: dict[str, _Ints], line: int, signed: list[str] | None = None
          ) -> _Ints:
    """:class:`_Ints` of ``e`` (``env``: the locals assigned so far in the point); raises
    ``TypeRefusal`` for Python-int arithmetic the backends may not compute exactly. Appends to
    ``signed`` each operation whose zero has no sign for a Python int but may be -0.0 in
    float arithmetic (``-t``, ``t * -1``, ``t // -3``, ``t % -3``) on a value that is a Python
    int on some paths and a float on others."""
    if isinstance(e, D.Const):
        v = e.value
        if not e.kind and isinstance(v, int):  # a Python int (or bool, an int in arithmetic)
            return _Ints(True, (int(v), int(v)), False)
        return _PYFLOAT if not e.kind and isinstance(v, float) else _OTHER
    if isinstance(e, D.Param):
        return _PYFLOAT if not e.kind else _OTHER
    if isinstance(e, D.Var):
        return env.get(e.name, _OTHER)
    if isinstance(e, D.IfExp):
        _ints(e.test, env, line, signed)
        return _union([_ints(e.body, env, line, signed), _ints(e.orelse, env, line, signed)])
    if isinstance(e, D.Call):
        args = [_ints(a, env, line, signed) for a in e.args]
        if e.func in ("min", "max"):
            # Python compares each pair (the running result with the next argument)
            for i, a in enumerate(args):
                for b in args[i + 1:]:
                    _check_int_float_compare(a, b, f"{e.func}()", line)
            return _union(args)
        if e.func == "abs":
            arg = args[0]
            lim = arg.bounds
            return arg._replace(bounds=None if lim is None
                                else (0, max(abs(lim[0]), abs(lim[1]))))
        return _PYFLOAT  # math.sqrt/exp/log/sin/cos/pow return Python floats
    if isinstance(e, D.UnaryOp):
        a = _ints(e.operand, env, line, signed)
        if e.op == "-":
            if signed is not None and a.ints and a.other and _may_be(a.bounds, 0, 0):
                signed.append(f"unary '-' of a value that is a Python int on some paths only "
                              f"(kernel line {line}): -0 is 0, -0.0 is not")
            return a._replace(bounds=None if a.bounds is None else (-a.bounds[1], -a.bounds[0]))
        return a if e.op == "+" else _OTHER
    if isinstance(e, D.BinOp):
        a, b = _ints(e.left, env, line, signed), _ints(e.right, env, line, signed)
        if not (a.ints and b.ints):
            # a Python float results where both operands are Python numbers (with a NumPy
            # scalar, the result is a NumPy scalar)
            pyfloat = (a.ints or a.pyfloat) and (b.ints or b.pyfloat) and (
                a.pyfloat or b.pyfloat or e.op in ("/", "**"))
            return _PYFLOAT if pyfloat else _OTHER
        if signed is not None and (a.other or b.other) and (
                (e.op == "*" and (_may_be(a.bounds, 0, 0) or _may_be(b.bounds, 0, 0))
                 and (_may_be(a.bounds, None, -1) or _may_be(b.bounds, None, -1)))
                or (e.op in ("//", "%") and _may_be(b.bounds, None, -1))):
            signed.append(f"operator '{e.op}' of a value that is a Python int on some paths only "
                          f"(kernel line {line}): its zero has no sign, a float's may")
        # held in a double where some path gives a float (and divided in double), in int64
        # where none does
        double = a.other or b.other or e.op == "/"
        limit = _EXACT_IN_DOUBLE if double else _INT64_MAX
        result = None
        if a.bounds is not None and b.bounds is not None and e.op != "/":
            result = _int_result(e.op, a.bounds, b.bounds)
        checked = [("operand", a.bounds), ("operand", b.bounds)]
        if e.op != "/":
            checked.append(("result", result))
        for what, bounds in checked:
            if bounds is None or max(abs(bounds[0]), abs(bounds[1])) > limit:
                exc = TypeRefusal(
                    f"operator '{e.op}' of Python ints whose {what} may exceed {limit} in "
                    "magnitude: Python computes them exactly, compiled code in "
                    f"{'double' if double else 'int64'}")
                exc.line = line
                raise exc
        # int / int is a float, and so is int ** int for a negative exponent
        floats = e.op == "/" or (e.op == "**" and (b.bounds is None or b.bounds[0] < 0))
        return _Ints(e.op != "/", result, a.other or b.other or floats,
                     a.pyfloat or b.pyfloat or floats)
    if isinstance(e, D.Compare):
        operands = [_ints(x, env, line, signed) for x in (e.left, *e.comparators)]
        for a, b in zip(operands, operands[1:]):
            _check_int_float_compare(a, b, "comparison", line)
        return _OTHER
    for child in e.children():  # tests: comparisons, and/or/not
        if not isinstance(child, D.PointExpr):
            _ints(child, env, line, signed)  # type: ignore[arg-type]
    return _OTHER


def _check_int_float_compare(a: _Ints, b: _Ints, what: str, line: int) -> None:
    """Refuse comparing a Python int that may exceed 2**53 in magnitude with a value that may
    be a Python float: Python compares the two exactly (``2.0**53 < 2**53 + 1``), compiled code
    rounds the int to a double first. (NumPy rounds the int too, so NumPy scalars are fine.)"""
    for x, y in ((a, b), (b, a)):
        if x.ints and y.pyfloat and (x.bounds is None or max(abs(x.bounds[0]), abs(x.bounds[1]))
                                     > _EXACT_IN_DOUBLE):
            exc = TypeRefusal(
                f"{what} of a Python float with a Python int that may exceed {_EXACT_IN_DOUBLE} "
                "in magnitude: Python compares them exactly, compiled code rounds the int to a "
                "double")
            exc.line = line
            raise exc


def check_python_ints(body: tuple[D.Stmt, ...]) -> list[str]:
    """Refuse (``TypeRefusal``) Python-int arithmetic in a point loop's statements that the
    backends may not compute exactly (see the module docstring). Returns the operations whose
    result's sign of zero depends on a value being a Python int (see :func:`_ints`): the C
    backends compute those on the value's run-time kind, a backend computing every path in
    floating point (whole-array NumPy) must decline them."""
    env: dict[str, _Ints] = {}
    signed: list[str] = []
    for s in body:
        if not isinstance(s, (D.Assign, D.Store)):
            continue
        value = _ints(s.value, env, s.line, signed)
        if isinstance(s, D.Assign):
            env[s.target] = _OTHER if s.as_dtype else value
    return signed

"""Lowering of DAST expressions to ``asp_core.cast`` nodes (shared by every C-like backend).

The OpenMP backend uses it here; the CUDA and temporal-blocking backends reuse it with their own
``read`` callback (how a grid access is addressed) and, for CUDA, ``device=True`` helpers.

Exactness: each DAST operation maps to one C operation with the same operands in the same order,
and the helpers reproduce what Python computes on NumPy float64 scalars:

* ``a // b`` → ``asp_floordiv``: NumPy's ``npy_floor_divide`` (``fmod``-based, with Python's sign
  rule and the snap to the nearest integer; division by zero gives ``a / b``, like NumPy);
* ``min(a, b, ...)`` → ``asp_min(asp_min(a, b), ...)`` with ``asp_min(r, v) = v < r ? v : r``,
  exactly Python's left-to-right scan (so NaN handling and the sign of zero match); ``max`` alike;
* ``a ** b`` → ``asp_pow``: libm ``pow`` behind a ``noipa`` call, because gcc rewrites
  ``pow(x, 2.0)`` as ``x * x`` (glibc's ``pow`` is not correctly rounded, so the last bit can
  differ from Python's ``x ** 2``) and, in vectorised loops, ``pow(x, 0.5)`` as ``sqrt(x)`` (wrong
  for ``-0.0`` and ``-inf``); ``abs`` → ``fabs``; ``math.sqrt/exp/log/sin/cos`` → the same libm
  functions Python calls;
* constants are printed as the shortest round-trip literal of the double Python would convert
  them to (integers become doubles, as NumPy converts them).
"""

from __future__ import annotations

from typing import Any, Callable

from asp_core import cast as C

from . import dast as D

__all__ = ["ExprLowering", "helper_functions", "c_var", "NotLowered"]

_BIN = {"+": "+", "-": "-", "*": "*", "/": "/"}
_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}
_LIBM = {"sqrt": "sqrt", "exp": "exp", "log": "log", "sin": "sin", "cos": "cos", "abs": "fabs"}


class NotLowered(TypeError):
    """A DAST node reached lowering that an earlier pass should have removed."""


def c_var(name: str) -> str:
    """The C identifier of a DAST local (prefixed so it cannot clash with C or our names)."""
    return "v_" + name


class ExprLowering:
    """Callable turning a DAST expression into a cast expression.

    :param read: maps a ``Read`` (already unrolled: ``at.var is None``) to a cast expression.
    :param ctype: the scalar type of runtime values (``double`` for float64 grids).
    """

    def __init__(self, read: Callable[[D.Read], C.Expr], ctype: C.CType = C.DOUBLE) -> None:
        self.read = read
        self.ctype = ctype

    def const(self, v: Any) -> C.Expr:
        if isinstance(v, bool):
            return C.Constant(v)
        return C.Constant(float(v), self.ctype)

    def __call__(self, e: D.Expr) -> C.Expr:
        if isinstance(e, D.Const):
            return self.const(e.value)
        if isinstance(e, D.Var):
            return C.Name(c_var(e.name))
        if isinstance(e, D.Read):
            if e.at.var is not None:
                raise NotLowered(f"read of {e.grid} at neighbour variable {e.at.var!r}: "
                                 "run the unroll-neighbors pass first")
            return self.read(e)
        if isinstance(e, D.BinOp):
            left, right = self(e.left), self(e.right)
            if e.op in _BIN:
                return C.BinOp(left, _BIN[e.op], right)
            if e.op == "**":
                # Python (and NumPy scalars) call libm pow; gcc would rewrite pow(x, 2.0) as x * x
                # (glibc's pow is not correctly rounded: it differs in the last bit) and, in
                # vectorised loops, pow(x, 0.5) as sqrt(x) (wrong for -0.0 and -inf). asp_pow
                # hides the exponent from the compiler.
                return C.Call("asp_pow", [left, right])
            if e.op == "//":
                return C.Call("asp_floordiv", [left, right])
            raise NotLowered(f"binary operator {e.op!r}")
        if isinstance(e, D.UnaryOp):
            operand = self(e.operand)
            if e.op == "-":
                return C.UnaryOp("-", operand)
            if e.op == "+":
                return operand
            return C.UnaryOp("!", operand)
        if isinstance(e, D.Call):
            args = [self(a) for a in e.args]
            if e.func in ("min", "max"):
                acc = args[0]
                for a in args[1:]:
                    acc = C.Call(f"asp_{e.func}", [acc, a])
                return acc
            return C.Call(_LIBM[e.func], args)
        if isinstance(e, D.Compare):
            terms: list[C.Expr] = []
            left = self(e.left)
            for op, comp in zip(e.ops, e.comparators):
                right = self(comp)
                terms.append(C.BinOp(left, _CMP[op], right))
                left = right
            acc = terms[0]
            for t in terms[1:]:
                acc = C.BinOp(acc, "&&", t)
            return acc
        if isinstance(e, D.BoolOp):
            vals = [self(v) for v in e.values]
            acc = vals[0]
            for v in vals[1:]:
                acc = C.BinOp(acc, "&&" if e.op == "and" else "||", v)
            return acc
        if isinstance(e, D.IfExp):
            return C.Ternary(self(e.test), self(e.body), self(e.orelse))
        raise NotLowered(f"{type(e).__name__} node (an earlier pass should have removed it)")


def helper_functions(ctype: C.CType = C.DOUBLE, storage: tuple[str, ...] = ("static", "inline"),
                     qualifier: str = "", opaque: tuple[str, ...] | None = None
                     ) -> list[C.FunctionDef]:
    """``asp_min``, ``asp_max``, ``asp_floordiv`` and ``asp_pow`` as cast functions
    (``qualifier``: e.g. ``__device__`` for CUDA; ``opaque``: the storage of ``asp_pow``, by
    default gcc's ``noipa`` for host code so it stays a real call and the compiler cannot
    specialise ``pow`` on a constant exponent, and ``storage`` for device code, whose ``pow`` is
    CUDA's own)."""
    if opaque is None:
        opaque = storage if qualifier else ("static", "__attribute__((noipa))")
    t = ctype
    a, b, r, v = C.Name("a"), C.Name("b"), C.Name("r"), C.Name("v")

    def fn(name: str, params: list[C.Param], body: list[C.Stmt]) -> C.FunctionDef:
        return C.FunctionDef(name, params, C.Block(body), ret=t, extern_c=False,
                             qualifier=qualifier, storage=storage)

    minf = fn("asp_min", [C.Param(t, "r"), C.Param(t, "v")],
              [C.Return(C.Ternary(C.BinOp(v, "<", r), v, r))])
    maxf = fn("asp_max", [C.Param(t, "r"), C.Param(t, "v")],
              [C.Return(C.Ternary(C.BinOp(v, ">", r), v, r))])
    zero, one, half = (C.Constant(0.0, t), C.Constant(1.0, t), C.Constant(0.5, t))
    mod, div, fl = C.Name("mod"), C.Name("div"), C.Name("fl")
    floordiv = fn("asp_floordiv", [C.Param(t, "a"), C.Param(t, "b")], [
        C.If(C.BinOp(b, "==", zero), C.Block([C.Return(C.BinOp(a, "/", b))])),
        C.Decl(t, "mod", C.Call("fmod", [a, b])),
        C.Decl(t, "div", C.BinOp(C.BinOp(a, "-", mod), "/", b)),
        C.If(C.BinOp(mod, "!=", zero),
             C.Block([C.If(C.BinOp(C.BinOp(b, "<", zero), "!=", C.BinOp(mod, "<", zero)),
                           C.Block([C.Assign(div, C.BinOp(div, "-", one))]))])),
        C.If(C.BinOp(div, "!=", zero), C.Block([
            C.Decl(t, "fl", C.Call("floor", [div])),
            C.If(C.BinOp(C.BinOp(div, "-", fl), ">", half),
                 C.Block([C.Assign(fl, C.BinOp(fl, "+", one))])),
            C.Return(fl)])),
        C.Return(C.Call("copysign", [zero, C.BinOp(a, "/", b)])),
    ])
    powf_ = C.FunctionDef("asp_pow", [C.Param(t, "a"), C.Param(t, "b")],
                          C.Block([C.Return(C.Call("pow", [a, b]))]), ret=t, extern_c=False,
                          qualifier=qualifier, storage=opaque)
    return [minf, maxf, floordiv, powf_]

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
* float32 grids compute in float (``asp_powf``, ``asp_floordivf``, ``fabsf``; literals printed
  with an ``f`` suffix), mixed kinds follow NumPy's promotion (see :mod:`.scalar_types`): each
  operand is converted to the precision NumPy computes the operation in, explicitly;
* constants are printed as the shortest round-trip literal of the double Python would convert
  them to (integers become doubles, as NumPy converts them).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from asp_core import cast as C

from . import dast as D
from . import scalar_types as T

__all__ = ["ExprLowering", "helper_functions", "c_var", "NotLowered", "lower_statements",
           "clamped_index"]

_BIN = {"+": "+", "-": "-", "*": "*", "/": "/"}
_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}
_LIBM = {"sqrt": "sqrt", "exp": "exp", "log": "log", "sin": "sin", "cos": "cos"}
_SUFFIX = {"<f8": "", "<f4": "f", "<i8": "_l"}


class NotLowered(TypeError):
    """A DAST node reached lowering that an earlier pass should have removed."""


def c_var(name: str) -> str:
    """The C identifier of a DAST local (prefixed so it cannot clash with C or our names)."""
    return "v_" + name


class ExprLowering:
    """Callable turning a DAST expression into a cast expression.

    :param read: maps a ``Read`` (already unrolled: ``at.var is None``) to a cast expression.
    :param ctype: unused (kept for callers written before grids had their own dtypes).
    :param grid_kinds: dtype string of each grid (default: every grid float64).

    ``vars`` holds the kinds of the locals assigned so far (see :func:`lower_statements`).
    Raises :class:`~asp_stencil.scalar_types.TypeRefusal` for operations NumPy would compute in
    a precision chosen per value, and for integer arithmetic.
    """

    def __init__(self, read: Callable[[D.Read], C.Expr], ctype: C.CType = C.DOUBLE,
                 grid_kinds: dict[str, str] | None = None) -> None:
        self.read = read
        self.grid_kinds = grid_kinds or {}
        self.vars: dict[str, T.Kinds] = {}
        self.declared: dict[str, str] = {}  # local → the dtype its C variable has
        self.line = 0  # of the statement being lowered (for TypeRefusal)

    def const(self, v: Any, prec: str = "<f8") -> C.Expr:
        if isinstance(v, (bool, np.bool_)):
            return C.Constant(bool(v))
        if T.is_float(prec):
            return C.Constant(float(np.dtype(prec).type(v)), T.ctype_of(prec))
        return C.Constant(int(v))

    def __call__(self, e: D.Expr) -> C.Expr:
        return self.typed(e)[0]

    def kinds(self, e: D.Expr) -> T.Kinds:
        return self.typed(e)[1]

    def convert(self, e: D.Expr, prec: str) -> C.Expr:
        """``e`` computed and converted to precision ``prec`` (constants printed in it)."""
        if isinstance(e, D.Const) and not isinstance(e.value, (bool, np.bool_)):
            return self.const(e.value, prec)
        c, kinds = self.typed(e)
        if T.storage(kinds) == prec or (kinds <= {"bool"} and not T.is_float(prec)):
            return c
        return C.Cast(T.ctype_of(prec), c)

    def typed(self, e: D.Expr) -> tuple[C.Expr, T.Kinds]:
        """``(C expression in the storage type of its kinds, kinds)``."""
        if isinstance(e, D.Const):
            kind = T.kind_of(e.value)
            return self.const(e.value, T.precision(kind)), frozenset({kind})
        if isinstance(e, D.Var):
            # callers that track no kinds (float64-only backends) get float64 locals
            kinds = self.vars.get(e.name, frozenset({"<f8"}))
            name: C.Expr = C.Name(c_var(e.name))
            if self.declared.get(e.name, T.storage(kinds)) != T.storage(kinds):
                name = C.Cast(T.ctype_of(T.storage(kinds)), name)
            return name, kinds
        if isinstance(e, D.Read):
            if e.at.var is not None:
                raise NotLowered(f"read of {e.grid} at neighbour variable {e.at.var!r}: "
                                 "run the unroll-neighbors pass first")
            return self.read(e), frozenset({T.grid_kind(self.grid_kinds.get(e.grid, "<f8"))})
        if isinstance(e, D.BinOp):
            kinds, prec = T.arith_kind(e.op, self.kinds(e.left), self.kinds(e.right))
            left, right = self.convert(e.left, prec), self.convert(e.right, prec)
            sfx = _SUFFIX[prec]
            if e.op in _BIN:
                return C.BinOp(left, _BIN[e.op], right), kinds
            if e.op == "**":
                # Python (and NumPy scalars) call libm pow; gcc would rewrite pow(x, 2.0) as x * x
                # (glibc's pow is not correctly rounded: it differs in the last bit) and, in
                # vectorised loops, pow(x, 0.5) as sqrt(x) (wrong for -0.0 and -inf). asp_pow
                # hides the exponent from the compiler.
                return C.Call("asp_pow" + sfx, [left, right]), kinds
            if e.op == "//":
                return C.Call("asp_floordiv" + sfx, [left, right]), kinds
            raise NotLowered(f"binary operator {e.op!r}")
        if isinstance(e, D.UnaryOp):
            operand, kinds = self.typed(e.operand)
            if e.op == "not":
                return C.UnaryOp("!", operand), frozenset({"bool"})
            if not all(T.is_float(k) or k == "int" for k in kinds):
                raise T.TypeRefusal(f"integer arithmetic (unary '{e.op}' of an integer value)")
            return (C.UnaryOp("-", operand) if e.op == "-" else operand), kinds
        if isinstance(e, D.Call):
            return self.call(e)
        if isinstance(e, D.Compare):
            terms: list[C.Expr] = []
            left = e.left
            for op, comp in zip(e.ops, e.comparators):
                prec = self.compare_precision(left, comp)
                terms.append(C.BinOp(self.convert(left, prec), _CMP[op], self.convert(comp, prec)))
                left = comp
            acc = terms[0]
            for t in terms[1:]:
                acc = C.BinOp(acc, "&&", t)
            return acc, frozenset({"bool"})
        if isinstance(e, D.BoolOp):
            vals = [self(v) for v in e.values]
            acc = vals[0]
            for v in vals[1:]:
                acc = C.BinOp(acc, "&&" if e.op == "and" else "||", v)
            return acc, frozenset({"bool"})
        if isinstance(e, D.IfExp):
            kinds = self.kinds(e.body) | self.kinds(e.orelse)
            st = T.storage(kinds)
            return C.Ternary(self(e.test), self.convert(e.body, st), self.convert(e.orelse, st)), kinds
        raise NotLowered(f"{type(e).__name__} node (an earlier pass should have removed it)")

    def compare_precision(self, a: D.Expr, b: D.Expr) -> str:
        """The precision ``a`` and ``b`` compare in. A float value whose precision depends on
        the branch taken still compares exactly with a constant every candidate precision
        represents exactly (``w > 0``): then in double, which holds every candidate value."""
        ka, kb = self.kinds(a), self.kinds(b)
        try:
            return T.compare_kind(ka, kb)
        except T.TypeRefusal:
            for x, other in ((a, kb), (b, ka)):
                if isinstance(x, D.Const) and T.exact_in_float32(x.value) and all(
                        T.is_float(k) or k == "int" for k in other):
                    return "<f8"
            raise

    def call(self, e: D.Call) -> tuple[C.Expr, T.Kinds]:
        if e.func in ("min", "max"):
            # Python's left-to-right scan: r = v if v < r else r, each comparison in the precision
            # NumPy compares that pair in; the result keeps the chosen value's own kind
            acc_kinds = self.kinds(e.args[0])
            for a in e.args[1:]:
                T.compare_kind(acc_kinds, self.kinds(a))
                acc_kinds = acc_kinds | self.kinds(a)
            st = T.storage(acc_kinds)
            acc = self.convert(e.args[0], st)
            kinds = self.kinds(e.args[0])
            for a in e.args[1:]:
                prec = T.compare_kind(kinds, self.kinds(a))
                kinds = kinds | self.kinds(a)
                # a double holding float32 and Python-float values, compared in float32
                name = f"asp_{e.func}" + ("_f" if prec != st else _SUFFIX[st])
                acc = C.Call(name, [acc, self.convert(a, st)])
            return acc, kinds
        if e.func == "abs":
            arg, kinds = self.typed(e.args[0])
            if not all(T.is_float(k) or k == "int" for k in kinds):
                raise T.TypeRefusal("abs() of an integer value (integer arithmetic)")
            st = T.storage(kinds)
            if st == "<i8":  # Python ints (constants chosen by a branch)
                return C.Ternary(C.BinOp(arg, "<", C.Constant(0)), C.UnaryOp("-", arg), arg), kinds
            return C.Call("fabsf" if st == "<f4" else "fabs", [arg]), kinds
        # math functions convert their arguments to Python floats (doubles)
        args = [self.convert(a, "<f8") for a in e.args]
        if e.func == "pow":
            return C.Call("asp_pow", args), frozenset({"float"})
        return C.Call(_LIBM[e.func], args), frozenset({"float"})


def clamped_index(shape: tuple[int, ...], ghost: int) -> C.Expr:
    """Flat index of the interior point nearest to ``(i0, i1, ...)`` (the loop's coordinate
    variables): each coordinate ``min(max(i, g), n - g - 1)``, as ``nearest_interior``."""
    idx: C.Expr | None = None
    stride = 1
    for d in reversed(range(len(shape))):
        i = C.Name(f"i{d}")
        lo, hi = C.Constant(ghost), C.Constant(shape[d] - ghost - 1)
        t = C.Ternary(C.BinOp(i, "<", lo), lo, i)
        t = C.Ternary(C.BinOp(t, ">", hi), hi, t)
        term = t if stride == 1 else C.BinOp(t, "*", C.Constant(stride))
        idx = term if idx is None else C.BinOp(term, "+", idx)
        stride *= shape[d]
    assert idx is not None
    return idx


def lower_statements(stmts: Any, low: ExprLowering,
                     store: Callable[[D.Store, C.Expr], C.Stmt],
                     grid_kinds: dict[str, str] | None = None) -> list[C.Stmt]:
    """Assignments and stores of one point as C statements.

    A local is declared at its first assignment in a C type holding every kind it is assigned
    (a double for a local that is float32 on one path and a Python float on another); a store
    converts the value to the grid's dtype as NumPy's item assignment does.
    """
    stmts = list(stmts)
    kinds_all: dict[str, set[str]] = {}
    saved = dict(low.vars)
    for s in stmts:  # first pass: the kinds each local takes
        if isinstance(s, D.Assign):
            try:
                k = frozenset({s.as_dtype}) if s.as_dtype else low.kinds(s.value)
            except T.TypeRefusal as exc:
                exc.line = s.line
                raise
            kinds_all.setdefault(s.target, set()).update(k)
            low.vars[s.target] = k
    low.vars = saved
    try:
        return _lower_statements(stmts, low, store, grid_kinds, kinds_all)
    except T.TypeRefusal as exc:
        exc.line = getattr(exc, "line", 0) or getattr(low, "line", 0)
        raise


def _lower_statements(stmts: list, low: ExprLowering, store: Callable[[D.Store, C.Expr], C.Stmt],
                      grid_kinds: dict[str, str] | None, kinds_all: dict[str, set[str]]
                      ) -> list[C.Stmt]:
    out: list[C.Stmt] = []
    grid_kinds = grid_kinds or low.grid_kinds
    for s in stmts:
        low.line = s.line
        if isinstance(s, D.Assign):
            st = T.storage(frozenset(kinds_all[s.target]))
            value = (_to_grid_dtype(low, s.value, s.as_dtype, s.target) if s.as_dtype
                     else low.convert(s.value, st))
            low.vars[s.target] = frozenset({s.as_dtype}) if s.as_dtype else low.kinds(s.value)
            if s.target in low.declared:
                out.append(C.Assign(C.Name(c_var(s.target)), value))
            else:
                low.declared[s.target] = st
                out.append(C.Decl(T.ctype_of(st), c_var(s.target), value))
        else:
            dtype = T.grid_kind(grid_kinds.get(s.grid, "<f8"))
            out.append(store(s, _to_grid_dtype(low, s.value, dtype, s.grid)))
    return out


def _to_grid_dtype(low: ExprLowering, value: D.Expr, dtype: str, grid: str) -> C.Expr:
    """``value`` converted as NumPy converts it when stored into a grid of ``dtype``."""
    if T.is_float(dtype):
        return low.convert(value, dtype)
    if any(T.is_float(k) for k in low.kinds(value)):
        raise T.TypeRefusal(f"a float value stored into the integer grid '{grid.lstrip('_')}'")
    return C.Cast(T.ctype_of(dtype), low(value))


def _helpers(t: C.CType, sfx: str, storage: tuple[str, ...], qualifier: str,
             opaque: tuple[str, ...]) -> list[C.FunctionDef]:
    a, b, r, v = C.Name("a"), C.Name("b"), C.Name("r"), C.Name("v")
    f = "f" if t.base == "float" else ""

    def fn(name: str, params: list[C.Param], body: list[C.Stmt], st: tuple[str, ...] = storage
           ) -> C.FunctionDef:
        return C.FunctionDef(name, params, C.Block(body), ret=t, extern_c=False,
                             qualifier=qualifier, storage=st)

    out = [fn(f"asp_min{sfx}", [C.Param(t, "r"), C.Param(t, "v")],
              [C.Return(C.Ternary(C.BinOp(v, "<", r), v, r))]),
           fn(f"asp_max{sfx}", [C.Param(t, "r"), C.Param(t, "v")],
              [C.Return(C.Ternary(C.BinOp(v, ">", r), v, r))])]
    if t.base not in ("double", "float"):
        return out
    zero, one, half = (C.Constant(0.0, t), C.Constant(1.0, t), C.Constant(0.5, t))
    mod, div, fl = C.Name("mod"), C.Name("div"), C.Name("fl")
    out.append(fn(f"asp_floordiv{sfx}", [C.Param(t, "a"), C.Param(t, "b")], [
        C.If(C.BinOp(b, "==", zero), C.Block([C.Return(C.BinOp(a, "/", b))])),
        C.Decl(t, "mod", C.Call("fmod" + f, [a, b])),
        C.Decl(t, "div", C.BinOp(C.BinOp(a, "-", mod), "/", b)),
        C.If(C.BinOp(mod, "!=", zero),
             C.Block([C.If(C.BinOp(C.BinOp(b, "<", zero), "!=", C.BinOp(mod, "<", zero)),
                           C.Block([C.Assign(div, C.BinOp(div, "-", one))]))])),
        C.If(C.BinOp(div, "!=", zero), C.Block([
            C.Decl(t, "fl", C.Call("floor" + f, [div])),
            C.If(C.BinOp(C.BinOp(div, "-", fl), ">", half),
                 C.Block([C.Assign(fl, C.BinOp(fl, "+", one))])),
            C.Return(fl)])),
        C.Return(C.Call("copysign" + f, [zero, C.BinOp(a, "/", b)])),
    ]))
    out.append(fn(f"asp_pow{sfx}", [C.Param(t, "a"), C.Param(t, "b")],
                  [C.Return(C.Call("pow" + f, [a, b]))], st=opaque))
    return out


def helper_functions(ctype: C.CType = C.DOUBLE, storage: tuple[str, ...] = ("static", "inline"),
                     qualifier: str = "", opaque: tuple[str, ...] | None = None
                     ) -> list[C.FunctionDef]:
    """``asp_min``, ``asp_max``, ``asp_floordiv`` and ``asp_pow`` as cast functions, for double
    and (suffix ``f``) float, ``asp_min_l``/``asp_max_l`` for int64 and ``asp_min_f``/``asp_max_f``
    (float32 and Python float values held in a double, compared in float32)
    (``qualifier``: e.g. ``__device__`` for CUDA; ``opaque``: the storage of ``asp_pow``, by
    default gcc's ``noipa`` for host code so it stays a real call and the compiler cannot
    specialise ``pow`` on a constant exponent, and ``storage`` for device code, whose ``pow`` is
    CUDA's own). ``ctype`` is unused (every variant is emitted; unused static inline functions
    cost nothing)."""
    if opaque is None:
        opaque = storage if qualifier else ("static", "__attribute__((noipa))")
    out = _helpers(C.DOUBLE, "", storage, qualifier, opaque)
    out += _helpers(C.FLOAT, "f", storage, qualifier, opaque)
    out += _helpers(C.CType("int64_t"), "_l", storage, qualifier, opaque)
    r, v = C.Name("r"), C.Name("v")
    for name, op in (("asp_min_f", "<"), ("asp_max_f", ">")):
        cmp = C.BinOp(C.Cast(C.FLOAT, v), op, C.Cast(C.FLOAT, r))
        out.append(C.FunctionDef(name, [C.Param(C.DOUBLE, "r"), C.Param(C.DOUBLE, "v")],
                                 C.Block([C.Return(C.Ternary(cmp, v, r))]), ret=C.DOUBLE,
                                 extern_c=False, qualifier=qualifier, storage=storage))
    return out

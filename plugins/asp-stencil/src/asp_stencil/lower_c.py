"""Lowering of DAST expressions to ``asp_core.cast`` nodes (shared by every C-like backend).

:func:`point_body` lowers one point of a point loop; the OpenMP loops, the CUDA kernels and the
temporally blocked row kernels all call it, each with its own ``read`` callback (how a grid
access is addressed) and ``store``. The C helpers it calls are in :mod:`.c_helpers`.

Exactness: each DAST operation maps to one C operation with the same operands in the same order,
and the helpers reproduce what Python computes on NumPy scalars:

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

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from asp_core import cast as C

from . import dast as D
from . import scalar_types as T
from .c_helpers import SUFFIX, helper_functions, unsigned_type
from .python_ints import check_python_ints

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["ExprLowering", "helper_functions", "c_var", "param_var", "param_kind", "NotLowered",
           "lower_statements",
           "clamped_index", "point_body", "refusals_unsupported"]

_BIN = {"+": "+", "-": "-", "*": "*", "/": "/"}
_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}
#: ``k op x`` is ``x _MIRROR[op] k``
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _beyond_range(op: str, left: D.Expr, right: D.Expr, prec: str) -> bool | None:
    """The value of ``left op right`` compared in integer precision ``prec`` where one side is
    a Python int constant outside ``prec``'s range (else ``None``): NumPy 2 compares such an
    int by value (``np.int64(3) < 2**64`` is True; only arithmetic raises OverflowError), so
    every value of the other side is below (or above) it."""
    if T.is_float(prec):
        return None
    lo, hi = T.int_range(prec)
    for const, rel in ((right, op), (left, _MIRROR[op])):
        value = const.value if isinstance(const, D.Const) else None
        if type(value) is int and not lo <= value <= hi:
            below = value > hi   # every value of the other side is below the constant
            return {"<": below, "<=": below, ">": not below, ">=": not below, "==": False,
                    "!=": True}[rel]
    return None
_LIBM = {"sqrt": "sqrt", "exp": "exp", "log": "log", "sin": "sin", "cos": "cos"}


class NotLowered(TypeError):
    """A DAST node reached lowering that an earlier pass should have removed."""


def param_var(name: str) -> str:
    """The C parameter of a kernel attribute read at each call (a :class:`~dast.Param`)."""
    return "p_" + name


def param_kind(p: D.Param) -> str:
    """The scalar kind of a parameter's values: a Python float's, or its NumPy dtype."""
    return p.kind or "float"


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
        # run-time kind tags (NumPy's precision chosen per value): locals with a tag variable,
        # statements to emit before the current one (materialised operands), per-statement memo
        self.tagged: set[str] = set()
        self.defs: dict[str, list[D.Expr]] = {}  # every value assigned to each local
        self.pre: list[C.Stmt] = []
        self._memo: dict[Any, tuple[C.Expr, T.Kinds]] = {}
        self._tags: dict[Any, C.Expr] = {}
        self._n = 0

    def new_statement(self) -> None:
        """Forget what was computed for the previous statement (locals may have changed)."""
        self.pre, self._memo, self._tags = [], {}, {}

    def const(self, v: Any, prec: str = "<f8") -> C.Expr:
        if isinstance(v, (bool, np.bool_)):
            return C.Constant(bool(v))
        if T.is_float(prec):
            value = np.dtype(prec).type(v)   # a NaN as it is: float() of a float32 one that
            # signals makes it quiet
            return C.Constant(value if np.isnan(value) else float(value), T.ctype_of(prec))
        return C.Constant(int(v))

    def __call__(self, e: D.Expr) -> C.Expr:
        return self.typed(e)[0]

    def kinds(self, e: D.Expr) -> T.Kinds:
        return self.typed(e)[1]

    def convert(self, e: D.Expr, prec: str) -> C.Expr:
        """``e`` computed and converted to precision ``prec`` (constants printed in it)."""
        if isinstance(e, D.Const) and not isinstance(e.value, (bool, np.bool_)):
            if not T.is_float(prec):
                lo, hi = T.int_range(prec)
                if not lo <= int(e.value) <= hi:
                    raise T.TypeRefusal(f"the constant {e.value} is out of bounds for "
                                        f"{np.dtype(prec).name} (NumPy raises OverflowError)")
            return self.const(e.value, prec)
        c, kinds = self.typed(e)
        if "int" in kinds and T.is_int(prec) and prec != "<i8" and not _python_ints_within(
                self, e, *T.int_range(prec)):
            # NumPy converts a Python int to the other operand's dtype, raising OverflowError
            # when it does not fit; C would wrap it around (int64 is the Python ints' own
            # storage here: a counter carried by a loop stays allowed there)
            raise T.TypeRefusal(f"a Python int that may be out of bounds for "
                                f"{np.dtype(prec).name} (NumPy raises OverflowError)")
        if T.storage(kinds) == prec or (kinds <= {"bool"} and not T.is_float(prec)):
            return c
        if prec == "<f4" and "int" in kinds and T.is_int(T.storage(kinds)):
            # NumPy makes a Python int a float32 through a double (two roundings): a direct
            # int64 -> float conversion differed in the last bit above 2**53
            twice = C.Cast(C.FLOAT, C.Cast(C.DOUBLE, c))
            if not kinds & {"<i8", "<u8"}:   # other integers are exact in a double
                return twice
            # and an np.int64 directly (one rounding): the kind decides at run time
            is_int = C.BinOp(self.tag(e), "==", C.Constant(T.code("int")))
            return C.Ternary(is_int, twice, C.Cast(C.FLOAT, c))
        return C.Cast(T.ctype_of(prec), c)

    def typed(self, e: D.Expr) -> tuple[C.Expr, T.Kinds]:
        """``(C expression in the storage type of its kinds, kinds)``."""
        hit = self._memo.get(e)
        if hit is None:
            hit = self._memo[e] = self._typed(e)
        return hit

    # -- run-time kinds ------------------------------------------------------------------------
    def tag(self, e: D.Expr) -> C.Expr:
        """An ``int`` C expression: the code (:func:`scalar_types.code`) of ``e``'s kind."""
        kinds = self.kinds(e)
        if len(kinds) == 1:
            return C.Constant(T.code(next(iter(kinds))))
        if e in self._tags:
            return self._tags[e]
        if isinstance(e, D.Var) and e.name in self.tagged:
            t: C.Expr = C.Name(tag_var(e.name))
        elif isinstance(e, D.IfExp):
            t = C.Ternary(self(e.test), self.tag(e.body), self.tag(e.orelse))
        elif isinstance(e, D.UnaryOp) or (isinstance(e, D.Call) and e.func == "abs"):
            t = self.tag(e.operand if isinstance(e, D.UnaryOp) else e.args[0])
        elif isinstance(e, D.BinOp):  # one precision, several result kinds
            ka, kb = sorted(self.kinds(e.left)), sorted(self.kinds(e.right))
            ta, tb = self.tag(e.left), self.tag(e.right)
            t = self._chain([(a, b) for a in ka for b in kb], ta, tb,
                            lambda a, b: C.Constant(T.code(T.result_kind(e.op, a, b))))
        elif isinstance(e, D.Call) and e.func in ("min", "max"):
            acc, acc_kinds = self.convert(e.args[0], "<f8"), self.kinds(e.args[0])
            t = self.tag(e.args[0])
            for a in e.args[1:]:
                sel = self._compare("<" if e.func == "min" else ">", a, None, acc, acc_kinds, t)
                t = C.Ternary(sel, self.tag(a), t)
                acc = C.Ternary(sel, self.convert(a, "<f8"), acc)
                acc_kinds = acc_kinds | self.kinds(a)
        else:
            raise NotLowered(f"no run-time kind for {type(e).__name__}")
        self._tags[e] = t
        return t

    def materialize(self, e: D.Expr) -> tuple[C.Expr, C.Expr]:
        """``e``'s value (as a double) and kind tag in fresh C locals emitted before the
        statement, so dispatching on the tag does not repeat the expression."""
        value, tag = self.convert(e, "<f8"), self.tag(e)
        if isinstance(value, (C.Name, C.Constant)) and isinstance(tag, (C.Name, C.Constant)):
            return value, tag
        n = self._n
        self._n += 1
        self.pre += [C.Decl(C.DOUBLE, f"asp_u{n}", value), C.Decl(C.INT, f"asp_k{n}", tag)]
        return C.Name(f"asp_u{n}"), C.Name(f"asp_k{n}")

    def _chain(self, combos: list[tuple[str, str]], ta: C.Expr, tb: C.Expr,
               make: Callable[[str, str], C.Expr]) -> C.Expr:
        """``make(a, b)`` for the kinds ``(a, b)`` the tags ``ta``/``tb`` name at run time."""
        out: C.Expr | None = None
        for a, b in reversed(combos):
            v = make(a, b)
            if out is None:
                out = v
                continue
            cond = C.BinOp(C.BinOp(ta, "==", C.Constant(T.code(a))), "&&",
                           C.BinOp(tb, "==", C.Constant(T.code(b))))
            out = C.Ternary(cond, v, out)
        assert out is not None
        return out

    def _floats_only(self, kinds: T.Kinds, what: str) -> None:
        if not all(T.is_float(k) or k in ("int", "bool") for k in kinds):
            raise T.TypeRefusal(f"{what} of an integer-grid value whose precision depends on "
                                "the value taken at run time")

    def _dispatch_binop(self, e: D.BinOp) -> tuple[C.Expr, T.Kinds]:
        """``a op b`` in the precision NumPy picks for the kinds the operands have at run time."""
        ka, kb = self.kinds(e.left), self.kinds(e.right)
        self._floats_only(ka | kb, f"operator '{e.op}'")
        xa, ta = self.materialize(e.left)
        xb, tb = self.materialize(e.right)
        combos = [(a, b) for a in sorted(ka) for b in sorted(kb)]

        def value(a: str, b: str) -> C.Expr:
            _, prec = T.arith_combo(e.op, a, b)
            ct = T.ctype_of(prec)
            return C.Cast(C.DOUBLE, self._arith(e.op, C.Cast(ct, xa), C.Cast(ct, xb), prec))

        kinds = frozenset(T.arith_combo(e.op, a, b)[0] for a, b in combos)
        n = self._n
        self._n += 1
        self.pre += [C.Decl(C.DOUBLE, f"asp_u{n}", self._chain(combos, ta, tb, value)),
                     C.Decl(C.INT, f"asp_k{n}", self._chain(combos, ta, tb, lambda a, b: C.Constant(
                         T.code(T.arith_combo(e.op, a, b)[0]))))]
        self._tags[e] = C.Name(f"asp_k{n}")
        return C.Name(f"asp_u{n}"), kinds

    def _compare(self, op: str, left: D.Expr, right: D.Expr | None, acc: C.Expr | None = None,
                 acc_kinds: T.Kinds | None = None, acc_tag: C.Expr | None = None) -> C.Expr:
        """``left op right`` (or ``left op acc`` for min/max) in NumPy's precision, dispatching on
        run-time kinds where that precision depends on them."""
        kl = self.kinds(left)
        kr = self.kinds(right) if right is not None else acc_kinds
        assert kr is not None
        try:
            prec = (self.compare_precision(left, right) if right is not None
                    else T.compare_kind(kl, kr))
            if right is not None:
                known = _beyond_range(op, left, right, prec)
                if known is not None:
                    return C.Constant(known)
                xr = self.convert(right, prec)
            else:
                assert acc is not None, "min/max compare without an accumulator"
                xr = _cast_to(acc, prec, kr)
            return C.BinOp(self.convert(left, prec), _CMP[op], xr)
        except T.PrecisionDependsOnValue:
            self._floats_only(kl | kr, "comparison")
        xl, tl = self.materialize(left)
        if right is not None:
            xr, tr = self.materialize(right)
        else:
            assert acc is not None and acc_tag is not None
            xr, tr = acc, acc_tag

        def cmp(a: str, b: str) -> C.Expr:
            ct = T.ctype_of(T.compare_kind(frozenset({a}), frozenset({b})))
            return C.BinOp(C.Cast(ct, xl), _CMP[op], C.Cast(ct, xr))

        return self._chain([(a, b) for a in sorted(kl) for b in sorted(kr)], tl, tr, cmp)

    def _arith(self, op: str, left: C.Expr, right: C.Expr, prec: str) -> C.Expr:
        sfx = SUFFIX[prec]
        if not T.is_float(prec):
            if op in ("+", "-", "*"):  # NumPy wraps around: unsigned arithmetic, no C UB
                u = unsigned_type(prec)
                return C.Cast(T.ctype_of(prec), C.BinOp(C.Cast(u, left), op, C.Cast(u, right)))
            if op in ("//", "%"):
                return C.Call(("asp_floordiv" if op == "//" else "asp_mod") + sfx, [left, right])
            raise NotLowered(f"integer operator {op!r}")
        if op == "%":
            return C.Call("asp_mod" + sfx, [left, right])
        if op in _BIN:
            return C.BinOp(left, _BIN[op], right)
        if op == "**":
            # Python (and NumPy scalars) call libm pow; gcc would rewrite pow(x, 2.0) as x * x
            # (glibc's pow is not correctly rounded: it differs in the last bit) and, in
            # vectorised loops, pow(x, 0.5) as sqrt(x) (wrong for -0.0 and -inf). asp_pow
            # hides the exponent from the compiler.
            return C.Call("asp_pow" + sfx, [left, right])
        if op == "//":
            return C.Call("asp_floordiv" + sfx, [left, right])
        raise NotLowered(f"binary operator {op!r}")

    def _typed(self, e: D.Expr) -> tuple[C.Expr, T.Kinds]:
        if isinstance(e, D.Const):
            kind = T.kind_of(e.value)
            return self.const(e.value, T.precision(kind)), frozenset({kind})
        if isinstance(e, D.Param):
            return C.Name(param_var(e.name)), frozenset({param_kind(e)})
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
            if e.op == "**" and {"float", "int"} & self.kinds(e.left) and not _integral(e.right) \
                    and not self.python_floats_nonnegative(e.left, set()):
                raise T.TypeRefusal("'**' of a Python int or float that may be negative with a "
                                    "fractional exponent (Python returns a complex number); "
                                    "write abs(base) ** y or math.pow(base, y)")
            try:
                kinds, prec = T.arith_kind(e.op, self.kinds(e.left), self.kinds(e.right))
            except T.PrecisionDependsOnValue:
                return self._dispatch_binop(e)
            left, right = self.convert(e.left, prec), self.convert(e.right, prec)
            return self._arith(e.op, left, right, prec), kinds
        if isinstance(e, D.UnaryOp):
            operand, kinds = self.typed(e.operand)
            if e.op == "not":
                return C.UnaryOp("!", operand), frozenset({"bool"})
            if e.op == "+":
                return operand, kinds
            st = _int_storage(kinds, f"unary '{e.op}'")
            if st is None:
                if "int" in kinds:  # -0 is 0 for a Python int, -0.0 for a float
                    # (-v) + 0.0 turns -0.0 into 0.0 (gcc folds 0.0 - (c ? x : 0.0) wrongly)
                    is_int = C.BinOp(self.tag(e.operand), "==", C.Constant(T.code("int")))
                    return C.Ternary(is_int, C.BinOp(C.UnaryOp("-", operand), "+",
                                                     self.const(0.0)),
                                     C.UnaryOp("-", operand)), kinds
                return C.UnaryOp("-", operand), kinds
            u = unsigned_type(st)  # -INT_MIN wraps to INT_MIN, as in NumPy
            return C.Cast(T.ctype_of(st), C.BinOp(C.Cast(u, C.Constant(0)), "-",
                                                  C.Cast(u, operand))), kinds
        if isinstance(e, D.Call):
            return self.call(e)
        if isinstance(e, D.Compare):
            # a < b < c is (a < b) && (b < c)
            terms = [self._compare(op, lhs, rhs) for op, lhs, rhs
                     in zip(e.ops, (e.left, *e.comparators), e.comparators)]
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

    def python_floats_nonnegative(self, e: D.Expr, seen: set[str]) -> bool:
        """Whether every Python float or int ``e`` can evaluate to is ``>= 0`` (or NaN): its
        NumPy-scalar values do not matter (``np.float32(-2) ** 0.5`` is NaN, as in C), a
        negative Python float raised to a fractional power is complex in Python. Locals are
        followed through their assignments (:attr:`defs`)."""
        if not {"float", "int"} & self.kinds(e):
            return True
        if isinstance(e, D.Const):
            return not e.value < 0
        if isinstance(e, D.Call):
            if e.func in ("abs", "sqrt", "exp"):
                return True
            return e.func in ("min", "max") and all(
                self.python_floats_nonnegative(a, seen) for a in e.args)
        if isinstance(e, D.IfExp):
            return all(self.python_floats_nonnegative(x, seen) for x in (e.body, e.orelse))
        if isinstance(e, D.BinOp) and e.op in ("+", "*", "/", "**"):
            # a Python-number result comes from Python-number operands on that path
            return all(self.python_floats_nonnegative(x, seen) for x in (e.left, e.right))
        if isinstance(e, D.Var) and e.name in self.defs and e.name not in seen:
            seen.add(e.name)
            return all(self.python_floats_nonnegative(d, seen) for d in self.defs[e.name])
        return False

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
            try:
                for a in e.args[1:]:
                    T.compare_kind(acc_kinds, self.kinds(a))
                    acc_kinds = acc_kinds | self.kinds(a)
            except T.PrecisionDependsOnValue:
                return self._dispatch_minmax(e)
            st = T.storage(acc_kinds)
            acc = self.convert(e.args[0], st)
            kinds = self.kinds(e.args[0])
            for a in e.args[1:]:
                prec = T.compare_kind(kinds, self.kinds(a))
                kinds = kinds | self.kinds(a)
                # a double holding float32 and Python-float values, compared in float32
                name = f"asp_{e.func}" + ("_f" if prec != st and T.is_float(prec)
                                          else SUFFIX[st])
                acc = C.Call(name, [acc, self.convert(a, st)])
            return acc, kinds
        return self._math(e)

    def _dispatch_minmax(self, e: D.Call) -> tuple[C.Expr, T.Kinds]:
        """``min``/``max`` whose comparisons' precision depends on run-time kinds: a scan over
        materialised values and tags."""
        acc, acc_tag = self.materialize(e.args[0])
        kinds = self.kinds(e.args[0])
        for a in e.args[1:]:
            sel = self._compare("<" if e.func == "min" else ">", a, None, acc, kinds, acc_tag)
            xa, ta = self.materialize(a)
            n = self._n
            self._n += 1
            self.pre += [C.Decl(C.INT, f"asp_s{n}", sel),
                         C.Decl(C.DOUBLE, f"asp_u{n}", C.Ternary(C.Name(f"asp_s{n}"), xa, acc)),
                         C.Decl(C.INT, f"asp_k{n}", C.Ternary(C.Name(f"asp_s{n}"), ta, acc_tag))]
            acc, acc_tag = C.Name(f"asp_u{n}"), C.Name(f"asp_k{n}")
            kinds = kinds | self.kinds(a)
        self._tags[e] = acc_tag
        return acc, kinds

    def _math(self, e: D.Call) -> tuple[C.Expr, T.Kinds]:
        if e.func == "abs":
            arg, kinds = self.typed(e.args[0])
            ist = _int_storage(kinds, "abs()")
            if ist is not None:
                if np.dtype(ist).kind == "u":
                    return arg, kinds
                u = unsigned_type(ist)  # abs(INT_MIN) wraps to INT_MIN, as in NumPy
                neg = C.BinOp(C.Cast(u, C.Constant(0)), "-", C.Cast(u, arg))
                return C.Cast(T.ctype_of(ist), C.Ternary(C.BinOp(arg, "<", C.Constant(0)), neg,
                                                         C.Cast(u, arg))), kinds
            st = T.storage(kinds)
            return C.Call("fabsf" if st == "<f4" else "fabs", [arg]), kinds
        # math functions convert their arguments to Python floats (doubles)
        args = [self.convert(a, "<f8") for a in e.args]
        if e.func == "pow":
            return C.Call("asp_pow", args), frozenset({"float"})
        return C.Call(_LIBM[e.func], args), frozenset({"float"})


def tag_var(name: str) -> str:
    """The C local holding the run-time kind tag of local ``name``."""
    return "kind_" + c_var(name)


def _integral(e: D.Expr) -> bool:
    """A constant with an integral value (``x ** 2`` is real for every real ``x``)."""
    return isinstance(e, D.Const) and float(e.value).is_integer()


def _int_storage(kinds: T.Kinds, what: str) -> str | None:
    """The integer dtype ``kinds`` compute in (``None``: float arithmetic); refuses values that
    are integers of different dtypes on different paths (NumPy's result would depend on it)."""
    if all(T.is_float(k) or k == "int" for k in kinds) and any(T.is_float(k) for k in kinds):
        return None
    if all(T.is_float(k) for k in kinds):
        return None
    precs = {T.precision(k) for k in kinds}
    if len(precs) != 1 or any(T.is_float(k) for k in kinds):
        raise T.PrecisionDependsOnValue(f"{what} of a value whose dtype depends on the path "
                                        "taken at run time")
    return precs.pop()


def _cast_to(value: C.Expr, prec: str, kinds: T.Kinds) -> C.Expr:
    return value if T.storage(kinds) == prec else C.Cast(T.ctype_of(prec), value)


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


@contextlib.contextmanager
def refusals_unsupported(ctx: SpecializationContext) -> Iterator[None]:
    """Around a platform's lowering: a :class:`~asp_stencil.scalar_types.TypeRefusal` of
    :func:`point_body` becomes the ``Unspecializable`` the ``type-check`` pass raises (the
    lowering checks again, so a kernel still runs in Python with the reason when that pass is
    disabled, instead of the platform being reported as a broken plugin)."""
    try:
        yield
    except T.TypeRefusal as exc:
        from .passes._util import unsupported_at

        raise unsupported_at(ctx, getattr(exc, "line", 0), str(exc)) from None


def point_body(prog: D.StencilProgram, loop: D.PointLoop, read: Callable[[D.Read], C.Expr],
               store: Callable[[D.Store, C.Expr], C.Stmt]) -> list[C.Stmt]:
    """The C statements of one point of ``loop``: the lowering every C-like path shares (the
    OpenMP loops, the CUDA kernels, the temporally blocked row kernels).

    The kernel's top-level scalar assignments before ``loop`` come first (locals every point
    sees; the compiler hoists them), then the loop's statements, lowered with each grid's dtype
    as NumPy computes (:func:`lower_statements`). Only addressing differs between the paths:
    ``read(r)`` gives the C expression of a grid read (already unrolled: ``r.at.var is None``),
    ``store(s, value)`` the statement writing ``value`` (already converted to the grid's dtype).
    Raises :class:`~asp_stencil.scalar_types.TypeRefusal` where NumPy's result type would
    depend on run-time values, or Python's ints would not fit the C types
    (:mod:`asp_stencil.python_ints`).
    """
    check_python_ints(loop.body)   # the type-check pass's refusal, should it be disabled
    pos = next(i for i, s in enumerate(prog.body) if s is loop)
    prologue = [s for s in prog.body[:pos] if isinstance(s, D.Assign)]
    low = ExprLowering(read, grid_kinds={g.name: g.dtype for g in prog.grids})
    return lower_statements(prologue + list(loop.body), low, store)


def lower_statements(stmts: Any, low: ExprLowering,
                     store: Callable[[D.Store, C.Expr], C.Stmt],
                     grid_kinds: dict[str, str] | None = None) -> list[C.Stmt]:
    """Assignments and stores of one point as C statements.

    A local is declared at its first assignment in a C type holding every kind it is assigned
    (a double for a local that is float32 on one path and a Python float on another); a store
    converts the value to the grid's dtype as NumPy's item assignment does.
    """
    stmts = list(stmts)
    for s in stmts:
        if isinstance(s, D.Assign):
            low.defs.setdefault(s.target, []).append(s.value)
    kinds_all: dict[str, set[str]] = {}
    saved = dict(low.vars)
    saved_tagged = set(low.tagged)
    for s in stmts:  # first pass: the kinds each local takes
        low.new_statement()
        try:
            k = frozenset({s.as_dtype}) if isinstance(s, D.Assign) and s.as_dtype \
                else low.kinds(s.value)
            if isinstance(s, D.Store):
                continue
            if len(k) > 1:
                low.tag(s.value)  # a refusal (integer kinds mixed) surfaces here
        except T.TypeRefusal as exc:
            exc.line = s.line
            raise
        kinds_all.setdefault(s.target, set()).update(k)
        low.vars[s.target] = k
        if len(kinds_all[s.target]) > 1:
            low.tagged.add(s.target)
    low.vars = saved
    low.tagged = saved_tagged | {n for n, k in kinds_all.items() if len(k) > 1}
    low.new_statement()
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
        low.new_statement()
        if isinstance(s, D.Assign):
            st = T.storage(frozenset(kinds_all[s.target]))
            value = (_to_grid_dtype(low, s.value, s.as_dtype, s.as_grid) if s.as_dtype
                     else low.convert(s.value, st))
            tag = low.tag(s.value) if s.target in low.tagged else None
            low.vars[s.target] = frozenset({s.as_dtype}) if s.as_dtype else low.kinds(s.value)
            out += low.pre
            first = s.target not in low.declared
            if first:
                low.declared[s.target] = st
                out.append(C.Decl(T.ctype_of(st), c_var(s.target), value))
            else:
                out.append(C.Assign(C.Name(c_var(s.target)), value))
            if tag is not None:
                out.append(C.Decl(C.INT, tag_var(s.target), tag) if first
                           else C.Assign(C.Name(tag_var(s.target)), tag))
        else:
            dtype = T.grid_kind(grid_kinds.get(s.grid, "<f8"))
            value = _to_grid_dtype(low, s.value, dtype, s.grid)
            out += low.pre
            out.append(store(s, value))
    return out


def _to_grid_dtype(low: ExprLowering, value: D.Expr, dtype: str, grid: str) -> C.Expr:
    """``value`` converted as NumPy converts it when stored into a grid of ``dtype``."""
    if T.is_float(dtype):
        return low.convert(value, dtype)
    kinds = low.kinds(value)
    if any(T.is_float(k) for k in kinds):
        raise T.TypeRefusal(f"a float value stored into the integer grid '{grid}'")
    lo, hi = T.int_range(dtype)
    if isinstance(value, D.Const):
        if not lo <= int(value.value) <= hi:
            raise T.TypeRefusal(f"the constant {value.value} stored into the "
                                f"{np.dtype(dtype).name} grid '{grid}' (NumPy raises "
                                "OverflowError)")
    else:
        for k in kinds - {"bool"}:
            klo, khi = T.int_range(k)
            if k == "int" and _python_ints_within(low, value, lo, hi):
                continue
            if k == "int" or klo < lo or khi > hi:
                raise T.TypeRefusal(
                    f"a value of type {T.kind_name(k)} stored into the {np.dtype(dtype).name} grid "
                    f"'{grid}': NumPy raises OverflowError for values out of its range")
    return C.Cast(T.ctype_of(dtype), low(value))


def _python_ints_within(low: ExprLowering, e: D.Expr, lo: int, hi: int) -> bool:
    """Whether every Python int ``e`` can evaluate to is known to lie in ``[lo, hi]``."""
    bounds = _python_int_bounds(low, e, frozenset())
    return bounds is not None and (bounds == _NO_INTS or lo <= bounds[0] and bounds[1] <= hi)


#: the bounds of an expression that never evaluates to a Python int
_NO_INTS = (1, 0)


def _python_int_bounds(low: ExprLowering, e: D.Expr,
                       seen: frozenset[str]) -> tuple[int, int] | None:
    """``(least, greatest)`` Python int ``e`` can evaluate to (:data:`_NO_INTS`: none; None:
    not known).  The Python ints of a kernel are its constants, chosen by conditional
    expressions, ``min``/``max`` or assignments on some path, and ``+ - *`` of them."""
    kinds = low.kinds(e)
    if "int" not in kinds:
        return _NO_INTS

    def union(parts: list[tuple[int, int] | None]) -> tuple[int, int] | None:
        if any(p is None for p in parts):
            return None
        known = [p for p in parts if p is not None and p != _NO_INTS]
        return (min(p[0] for p in known), max(p[1] for p in known)) if known else _NO_INTS

    if isinstance(e, D.Const):
        return int(e.value), int(e.value)
    if isinstance(e, D.IfExp):
        return union([_python_int_bounds(low, x, seen) for x in (e.body, e.orelse)])
    if isinstance(e, D.Call) and e.func in ("min", "max"):
        return union([_python_int_bounds(low, x, seen) for x in e.args])
    if isinstance(e, D.Var) and e.name in low.defs and e.name not in seen:
        return union([_python_int_bounds(low, d, seen | {e.name}) for d in low.defs[e.name]])
    if isinstance(e, D.UnaryOp) and e.op in ("-", "+"):
        b = _python_int_bounds(low, e.operand, seen)
        return b if b in (None, _NO_INTS) or e.op == "+" else (-b[1], -b[0])
    if isinstance(e, D.BinOp) and e.op in ("+", "-", "*"):
        sides = []
        for x in (e.left, e.right):   # an int result comes from int or bool operands
            b = _python_int_bounds(low, x, seen)
            if b is None:
                return None
            if "bool" in low.kinds(x):
                b = (0, 1) if b == _NO_INTS else (min(b[0], 0), max(b[1], 1))
            if b == _NO_INTS:
                return _NO_INTS
            sides.append(b)
        (a0, a1), (b0, b1) = sides
        if e.op == "+":
            return a0 + b0, a1 + b1
        if e.op == "-":
            return a0 - b1, a1 - b0
        corners = [a0 * b0, a0 * b1, a1 * b0, a1 * b1]
        return min(corners), max(corners)
    return None

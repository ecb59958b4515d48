"""Pass ``constant-folding``: evaluate constant subtrees with Python's own operators.

Kernel scalar attributes (``self.alpha``) become constants here (they are part of the
specialisation key), as do ``distance(...)`` of unrolled points, top-level locals and locals
assigned a constant inside a loop. Attributes read at each call (:class:`~asp_stencil.dast.
Param`) stay, and what Python computes from them alone becomes one more parameter, which the
call computes in Python (:func:`_hoisted`). Only subtrees whose operands are *all* constant
are folded — never a reassociation such as ``(u[x] * 2) * 3 → u[x] * 6`` — so the remaining
operation order is Python's. A constant expression Python cannot evaluate to a real number
(division by zero, a complex power, a math domain error, an overflow) makes the kernel
unspecializable: the fallback then raises exactly what Python raises.
"""

from __future__ import annotations

import builtins
import math
import operator
from typing import TYPE_CHECKING, Any, Callable, cast

import numpy as np

from asp_core.passes import asp_pass

from .. import dast as D
from ._util import map_expr, point_body, rebuild, unsupported_at

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

_BIN = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
        "**": operator.pow, "//": operator.floordiv, "%": operator.mod}
_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}
_FUNCS = {"abs": builtins.abs, "min": builtins.min, "max": builtins.max, "sqrt": math.sqrt,
          "exp": math.exp, "log": math.log, "sin": math.sin, "cos": math.cos, "pow": math.pow}


class FoldError(Exception):
    """A constant expression that Python cannot evaluate to a real number."""


def _real(v: Any, what: str) -> Any:
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v  # NumPy scalar arithmetic (a NumPy attribute): NumPy's own result
    if isinstance(v, bool) or isinstance(v, (int, float)):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2 ** 1023:
            raise FoldError(f"constant expression: {what} gives an integer too large for a float")
        return v
    raise FoldError(f"constant expression: {what} has a non-real result ({type(v).__name__})")


def _consts(exprs: tuple[D.Expr, ...]) -> list[D.Const] | None:
    """``exprs`` if every one is a constant, else None."""
    out = [e for e in exprs if isinstance(e, D.Const)]
    return out if len(out) == len(exprs) else None


def fold_node(e: D.Expr) -> D.Expr | None:
    """The folded replacement of ``e`` whose children are already folded, or ``None``."""
    if isinstance(e, D.Attr):
        return D.const(e.value)
    if isinstance(e, D.Distance):
        if e.a.var is None and e.b.var is None:
            return D.const(math.sqrt(sum((a - b) ** 2 for a, b in zip(e.a.offset, e.b.offset))))
        return None
    if isinstance(e, D.BinOp) and isinstance(e.left, D.Const) and isinstance(e.right, D.Const):
        try:
            return D.const(_real(_BIN[e.op](e.left.value, e.right.value), f"'{e.op}'"))
        except (ZeroDivisionError, OverflowError, ValueError) as exc:
            raise FoldError(f"constant expression {e.left.value!r} {e.op} {e.right.value!r} "
                            f"raises {type(exc).__name__}") from None
    if isinstance(e, D.UnaryOp) and isinstance(e.operand, D.Const):
        v = e.operand.value
        return D.const(-v if e.op == "-" else (+v if e.op == "+" else (not v)))
    if isinstance(e, D.Call) and (args := _consts(e.args)) is not None:
        try:
            fn = cast("Callable[..., float]", _FUNCS[e.func])  # builtins and math functions
            return D.const(_real(fn(*(a.value for a in args)), e.func))
        except (ValueError, OverflowError) as exc:
            raise FoldError(f"constant expression: {e.func}() of constant arguments raises "
                            f"{type(exc).__name__}") from None
    if isinstance(e, D.Compare) and isinstance(e.left, D.Const) \
            and (comparators := _consts(e.comparators)) is not None:
        left, ok = e.left.value, True
        for op, c in zip(e.ops, comparators):
            ok = ok and _CMP[op](left, c.value)
            left = c.value
        return D.const(bool(ok))
    if isinstance(e, D.BoolOp) and (values := _consts(e.values)) is not None:
        vals = [bool(v.value) for v in values]
        return D.const(all(vals) if e.op == "and" else any(vals))
    if isinstance(e, D.IfExp) and isinstance(e.test, D.Const):
        return e.body if e.test.value else e.orelse
    return None


def fold_expr(e: D.Expr, env: dict[str, D.Expr]) -> D.Expr:
    """Fold ``e`` after substituting the constant locals of ``env``."""

    def fn(node: D.Expr) -> D.Expr | None:
        if isinstance(node, D.Var) and node.name in env:
            return env[node.name]
        return fold_node(node)

    # IfExp with a constant test is resolved before its arms are folded, so an arm Python never
    # evaluates (e.g. one dividing by zero) cannot make folding fail.
    if isinstance(e, D.IfExp):
        test = fold_expr(e.test, env)
        if isinstance(test, D.Const):
            return fold_expr(e.body if test.value else e.orelse, env)
        return D.IfExp(test, fold_expr(e.body, env), fold_expr(e.orelse, env))
    if isinstance(e, (D.BinOp, D.UnaryOp, D.Call, D.Compare, D.BoolOp)):
        if isinstance(e, D.BinOp):
            new: D.Expr = D.BinOp(e.op, fold_expr(e.left, env), fold_expr(e.right, env))
        elif isinstance(e, D.UnaryOp):
            new = D.UnaryOp(e.op, fold_expr(e.operand, env))
        elif isinstance(e, D.Call):
            new = D.Call(e.func, tuple(fold_expr(a, env) for a in e.args))
        elif isinstance(e, D.Compare):
            new = D.Compare(fold_expr(e.left, env), e.ops,
                            tuple(fold_expr(c, env) for c in e.comparators))
        else:
            new = D.BoolOp(e.op, tuple(fold_expr(v, env) for v in e.values))
        out = fold_node(new)
        return new if out is None else out
    return map_expr(e, fn)


def _needed(prog: D.StencilProgram) -> str | None:
    """Why the kernel cannot compile without this pass: no platform lowers a kernel attribute
    or a ``distance`` call, only the constants this pass makes of them."""
    if any(isinstance(n, (D.Attr, D.Distance)) for n in D.expr_nodes(prog)):
        return ("no platform compiles its kernel attributes (self.name) or distance() calls "
                "unless they are folded into constants")
    return None


@asp_pass("constant-folding", needed=_needed)
def constant_folding(prog: D.StencilProgram, ctx: SpecializationContext) -> tuple[D.StencilProgram, bool]:
    """Fold constants, kernel attributes and distances; propagate constant locals."""
    with np.errstate(all="ignore"):  # NumPy scalars fold as they compute: inf/nan, no warning
        return _fold_program(prog, ctx)


def _fold_program(prog: D.StencilProgram, ctx: SpecializationContext
                  ) -> tuple[D.StencilProgram, bool]:
    env: dict[str, D.Expr] = {}
    out: list[D.Stmt] = []
    # assignments of parameters folded into their uses: computed at each call even where no
    # statement reads them, as Python computes them (``c = 1.0 / self.a`` raised at a == 0)
    dropped: list[tuple[int, D.Expr]] = []
    changed = False
    for s in prog.body:
        try:
            if isinstance(s, D.Assign):  # folded into its uses, and dropped
                v = fold_expr(s.value, env)
                if not isinstance(v, D.Const) and not _has_param(v):  # pragma: no cover
                    # the frontend admits no reads here
                    raise unsupported_at(ctx, s.line, "non-constant top-level assignment")
                env[s.target] = v   # of parameters: computed where used, as Python would
                if not isinstance(v, D.Const):
                    dropped.append((s.line, v))
                changed = True
            elif isinstance(s, D.PointLoop):
                local = dict(env)
                body: list[D.Stmt] = []
                for t in point_body(s):
                    line = t.line
                    v = fold_expr(t.value, local)
                    if isinstance(t, D.Assign):
                        if isinstance(v, D.Const) or _scalar_of_params(v):
                            local[t.target] = v   # a scalar of parameters as a constant is
                            changed = True        # (computed once per call: see _hoisted)
                            if not isinstance(v, D.Const):
                                dropped.append((t.line, v))
                            continue
                        local.pop(t.target, None)
                    changed = changed or v != t.value
                    body.append(t.replace(value=v))
                out.append(s.replace(body=tuple(body)))
        except FoldError as exc:
            line = getattr(s, "line", 0) if not isinstance(s, D.PointLoop) else line
            raise unsupported_at(ctx, line, str(exc)) from None
    hoisted: dict[D.Expr, D.Param] = {}
    loops = []
    for loop in out:
        if isinstance(loop, D.PointLoop):
            body = []
            for stmt in point_body(loop):
                value = _hoisted(stmt.value, hoisted)
                if (why := _raising_on_params(value)) is not None:
                    raise unsupported_at(ctx, stmt.line, why)
                body.append(stmt.replace(value=value))
            loop = loop.replace(body=tuple(body))
        loops.append(loop)
    checked = []
    for line, value in dropped:
        value = _hoisted(value, hoisted)
        if (why := _raising_on_params(value)) is not None:
            raise unsupported_at(ctx, line, why)
        checked += [n for n in D.expr_nodes(value) if isinstance(n, D.Param) and n.expr]
    info = dict(prog.info)
    if checked:
        info[D.CHECKED_PARAMS] = tuple(dict.fromkeys(checked))
    return D.StencilProgram(prog.name, prog.grids, tuple(loops), info), changed


def _hoisted(e: D.Expr, found: dict[D.Expr, D.Param]) -> D.Expr:
    """``e`` with each largest Python-float expression of parameters (``math.sin(self.w *
    self.t)``, ``2.0 / self.t``) made one parameter the call computes in Python, before the
    compiled code runs (:class:`~asp_stencil.dast.Param` with ``expr``): Python's arithmetic
    and its exceptions exactly (a call whose computation raises runs the kernel in Python,
    which raises where Python does, or not at all in a branch no point takes), once a call
    instead of once a point."""
    if _float_of_params(e):
        if e not in found:
            found[e] = D.Param(str(len(found)), "", e)
        return found[e]
    return rebuild(e, lambda child: _hoisted(child, found))


def _scalar_of_params(e: D.Expr) -> bool:
    """Whether ``e`` computes from attribute parameters and constants only (no grid value, no
    local), at least one parameter among them."""
    leaves = (D.Const, D.Param, D.BinOp, D.UnaryOp, D.Call, D.Compare, D.BoolOp, D.IfExp)
    nodes = list(D.expr_nodes(e))
    return all(isinstance(n, leaves) for n in nodes) and any(
        isinstance(n, D.Param) for n in nodes)


def _float_of_params(e: D.Expr) -> bool:
    """Whether ``e`` is a computation (not a bare parameter) of Python floats from parameters,
    whose value is a Python float for every value (``max(self.t, 0)`` may be the int 0)."""
    return not isinstance(e, D.Param) and _python_float(e) and _scalar_of_params(e)


def _python_float(e: D.Expr) -> bool:
    """Whether ``e`` is a Python float whatever the values: Python's arithmetic of Python
    numbers with a float among them, a ``math`` function, ``abs``/``min``/``max``/``a if c
    else b`` of such."""
    if isinstance(e, D.Param):
        return not e.kind
    if isinstance(e, D.Const):
        return type(e.value) is float
    if isinstance(e, D.BinOp):
        return _python_number(e.left) and _python_number(e.right) and (
            _python_float(e.left) or _python_float(e.right))
    if isinstance(e, D.UnaryOp):
        return e.op in "+-" and _python_float(e.operand)
    if isinstance(e, D.Call):
        if e.func not in ("abs", "min", "max"):
            # a math function: a Python float, of NumPy scalars too (math.sqrt(np.float64(-1))
            # raises ValueError as of a Python float)
            return all(_scalar_of_params(a) or isinstance(a, D.Const) for a in e.args)
        return all(_python_number(a) for a in e.args) and all(_python_float(a) for a in e.args)
    if isinstance(e, D.IfExp):
        return _python_float(e.body) and _python_float(e.orelse)
    return False


def _python_number(e: D.Expr) -> bool:
    """Whether ``e`` is a Python int or float (never a NumPy scalar, nor a bool)."""
    if isinstance(e, D.Const):
        return not e.kind and type(e.value) in (int, float)
    return _python_float(e)


#: operations of Python floats that raise for some values (a zero divisor, an overflow, a
#: math domain error), where C computes inf or nan
_RAISING_OPS = ("/", "//", "%", "**")


def _has_param(e: D.Expr) -> bool:
    return any(isinstance(n, D.Param) for n in D.expr_nodes(e))


def _python_scalar(e: D.Expr) -> bool:
    """Whether ``e`` computes with Python numbers only (Python's arithmetic, not NumPy's)."""
    if isinstance(e, (D.Const, D.Param)):
        return not e.kind
    if isinstance(e, D.BinOp):
        return _python_scalar(e.left) and _python_scalar(e.right)
    if isinstance(e, D.UnaryOp):
        return _python_scalar(e.operand)
    if isinstance(e, D.Call):
        return all(_python_scalar(a) for a in e.args)
    if isinstance(e, D.IfExp):
        return _python_scalar(e.body) and _python_scalar(e.orelse)
    return False


def _raising_on_params(e: D.Expr) -> str | None:
    """Why code taking the attributes as parameters could not compute ``e`` as Python does:
    Python's own float arithmetic of a parameter that raises for some values (``2.0 / self.t``
    raises ZeroDivisionError at ``t == 0``), where a constant's value is known when folding.
    The kernel then compiles its attributes as constants again."""
    operands: tuple[D.Expr, ...]
    for n in D.expr_nodes(e):
        if isinstance(n, D.BinOp) and n.op in _RAISING_OPS:
            what, operands = n.op, (n.left, n.right)
        elif isinstance(n, D.Call) and n.func not in ("abs", "min", "max"):
            what, operands = n.func, n.args
        else:
            continue
        if all(_python_scalar(o) for o in operands) and any(_has_param(o) for o in operands):
            return (f"'{what}' of Python floats read at each call (it raises for some values "
                    "in Python)")
    return None

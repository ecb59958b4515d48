"""Lowering of an optimised stencil DAST to a Python function of vectorised NumPy slicing.

The platform AST of this platform is Python's own :mod:`ast`: each DAST statement of a point loop
becomes one statement over whole slices (one per box of :mod:`asp_stencil_numpy.regions`), so

    for x in out.interior_points():
        out[x] = a[x + (1, 0)] + a[x - (1, 0)]

on a 6×7 grid with ghost depth 1 becomes ``g_out[1:5, 1:6] = g_a[2:6, 1:6] + g_a[0:4, 1:6]``.
Locals used once are folded into their use first (:mod:`asp_stencil_numpy.inline`), so a stored
value is one expression whose temporaries NumPy reuses in place. With ``block=B`` the boxes are walked in slabs of ``B`` planes along the first axis, so the
temporaries of a statement stay in cache.

Exactness: ``+ - * /``, unary minus, comparisons, ``abs``, ``//`` (``numpy.floor_divide``, the
function Python calls on NumPy scalars), ``min``/``max`` (``where(v < r, v, r)``: Python's
left-to-right scan) and ``math.sqrt`` give the bits Python gives. ``**`` and
``math.exp/log/sin/cos`` use NumPy's ufuncs, which may use SIMD implementations that differ from
libm in the last bit or so; conditional expressions evaluate both branches (with floating-point
warnings silenced) and select.
"""

from __future__ import annotations

import ast
import linecache
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from asp_stencil import dast as D

from asp_stencil_numpy.inline import inline_single_use
from asp_stencil_numpy.regions import Box, boxes

__all__ = ["HELPERS", "NumpySource", "function_name", "lower_numpy"]

_BIN = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div}
_CMP = {"<": ast.Lt, "<=": ast.LtE, ">": ast.Gt, ">=": ast.GtE, "==": ast.Eq, "!=": ast.NotEq}
_UFUNC = {"abs": "abs", "sqrt": "sqrt", "exp": "exp", "log": "log", "sin": "sin", "cos": "cos"}
_NP = "_np"


def _asp_min(r: Any, v: Any) -> Any:
    """Python's ``min(r, v)``: ``v`` only where ``v < r`` (keeps NaN and signed-zero rules)."""
    return np.where(v < r, v, r)


def _asp_max(r: Any, v: Any) -> Any:
    return np.where(v > r, v, r)


#: Names the generated code refers to besides its parameters (its global namespace).
HELPERS: dict[str, Any] = {_NP: np, "_asp_min": _asp_min, "_asp_max": _asp_max}


def function_name(prog: D.StencilProgram) -> str:
    return "asp_stencil_numpy_" + re.sub(r"\W", "_", prog.name)


@dataclass
class NumpySource:
    """The generated module: its AST, the function's name and how it was blocked.

    ``str()`` gives the source (what ``asp explain`` shows); :meth:`load` compiles it.
    """

    tree: ast.Module
    function: str
    block: int | None = None
    _text: str = field(default="", repr=False)

    @property
    def text(self) -> str:
        if not self._text:
            self._text = ast.unparse(self.tree) + "\n"
        return self._text

    def __str__(self) -> str:
        return self.text

    def load(self) -> Callable[..., None]:
        """Compile the source (registered with ``linecache`` so tracebacks show it)."""
        filename = f"<asp-stencil-numpy {self.function} block={self.block}>"
        linecache.cache[filename] = (len(self.text), None, self.text.splitlines(True), filename)
        namespace: dict[str, Any] = dict(HELPERS)
        exec(compile(self.text, filename, "exec"), namespace)  # noqa: S102 - our own AST
        return namespace[self.function]


def _name(n: str, store: bool = False) -> ast.Name:
    return ast.Name(n, ast.Store() if store else ast.Load())


def _np_call(fn: str, *args: ast.expr) -> ast.Call:
    return ast.Call(ast.Attribute(_name(_NP), fn, ast.Load()), list(args), [])


def _plus(e: ast.expr, k: int) -> ast.expr:
    if k == 0:
        return e
    if isinstance(e, ast.Constant) and isinstance(e.value, int):
        return ast.Constant(e.value + k)
    return ast.BinOp(e, ast.Add() if k > 0 else ast.Sub(), ast.Constant(abs(k)))


def grid_name(g: str) -> str:
    return "g_" + g


def var_name(v: str) -> str:
    return "v_" + v


class _Statements:
    """Lowers the statements of one point loop over one box (slice bounds per dimension)."""

    def __init__(self, bounds: list[tuple[ast.expr, ast.expr]]) -> None:
        self.bounds = bounds

    def index(self, offset: tuple[int, ...]) -> ast.expr:
        dims = [ast.Slice(_plus(lo, o), _plus(hi, o)) for (lo, hi), o in zip(self.bounds, offset)]
        return dims[0] if len(dims) == 1 else ast.Tuple(list[ast.expr](dims), ast.Load())

    def expr(self, e: Any) -> ast.expr:
        if isinstance(e, D.Const):
            return ast.Constant(e.value)
        if isinstance(e, D.Var):
            return _name(var_name(e.name))
        if isinstance(e, D.Read):
            return ast.Subscript(_name(grid_name(e.grid)), self.index(e.at.offset), ast.Load())
        if isinstance(e, D.BinOp):
            left, right = self.expr(e.left), self.expr(e.right)
            if e.op in _BIN:
                return ast.BinOp(left, _BIN[e.op](), right)
            if e.op == "**":
                return _np_call("power", left, right)
            if e.op == "//":
                return _np_call("floor_divide", left, right)
            if e.op == "%":
                return _np_call("remainder", left, right)
        if isinstance(e, D.UnaryOp):
            operand = self.expr(e.operand)
            if e.op == "-":
                return ast.UnaryOp(ast.USub(), operand)
            if e.op == "+":
                return operand
            if e.op == "not":
                return _np_call("logical_not", operand)
        if isinstance(e, D.Call):
            args = [self.expr(a) for a in e.args]
            if e.func in ("min", "max"):
                acc = args[0]
                for a in args[1:]:
                    acc = ast.Call(_name(f"_asp_{e.func}"), [acc, a], [])
                return acc
            if e.func in _UFUNC and len(args) == 1:
                return _np_call(_UFUNC[e.func], args[0])
        if isinstance(e, D.Compare):
            terms: list[ast.expr] = []
            left = self.expr(e.left)
            for op, comp in zip(e.ops, e.comparators):
                right = self.expr(comp)
                terms.append(ast.Compare(left, [_CMP[op]()], [right]))
                left = right
            return self._fold("logical_and", terms)
        if isinstance(e, D.BoolOp):
            return self._fold("logical_and" if e.op == "and" else "logical_or",
                              [self.expr(v) for v in e.values])
        if isinstance(e, D.IfExp):
            return _np_call("where", self.expr(e.test), self.expr(e.body), self.expr(e.orelse))
        raise TypeError(f"the NumPy platform cannot lower {e!r}")

    @staticmethod
    def _fold(fn: str, terms: list[ast.expr]) -> ast.expr:
        acc = terms[0]
        for t in terms[1:]:
            acc = _np_call(fn, acc, t)
        return acc

    def stmt(self, s: Any) -> ast.stmt:
        value = self.expr(s.value)
        if isinstance(s, D.Assign):
            return ast.Assign([_name(var_name(s.target), store=True)], value)
        target = ast.Subscript(_name(grid_name(s.grid)), self.index(s.at.offset), ast.Store())
        return ast.Assign([target], value)


def _box_statements(loop: D.PointLoop, box: Box, block: int | None) -> list[ast.stmt]:
    (lo0, hi0), rest = box[0], box[1:]
    consts = [(ast.Constant(lo), ast.Constant(hi)) for lo, hi in rest]
    if not block or hi0 - lo0 <= block:
        lower = _Statements([(ast.Constant(lo0), ast.Constant(hi0)), *consts])
        return [lower.stmt(s) for s in loop.body]
    lower = _Statements([(_name("_b"), _name("_e")), *consts])
    end = ast.Call(_name("min"), [ast.BinOp(_name("_b"), ast.Add(), ast.Constant(block)),
                                  ast.Constant(hi0)], [])
    body: list[ast.stmt] = [ast.Assign([_name("_e", store=True)], end)]
    body += [lower.stmt(s) for s in loop.body]
    rng = ast.Call(_name("range"), [ast.Constant(lo0), ast.Constant(hi0), ast.Constant(block)], [])
    return [ast.For(_name("_b", store=True), rng, body, [])]


def lower_numpy(prog: D.StencilProgram, block: int | None = None) -> NumpySource:
    """The NumPy module of ``prog`` (which :func:`~asp_stencil_numpy.support.unsupported_reason`
    accepted); ``block``: planes per slab along the first axis (``None``: whole boxes)."""
    grids = sorted(prog.grids, key=lambda g: g.index)
    shape = prog.output.shape
    body: list[ast.stmt] = []
    for s in prog.body:
        if isinstance(s, D.Assign):
            body.append(_Statements([]).stmt(s))
            continue
        if not isinstance(s, D.PointLoop):
            raise TypeError(f"a top-level {type(s).__name__} is not lowered (support refuses it)")
        ghost = prog.grid(s.grid).ghost_depth
        loop = s.replace(body=inline_single_use(s.body))
        for box in boxes(s.region, shape, ghost):
            body += _box_statements(loop, box, block)
    if not body:
        body = [ast.Pass()]
    args = ast.arguments(posonlyargs=[], args=[ast.arg(grid_name(g.name)) for g in grids],
                         kwonlyargs=[], kw_defaults=[], defaults=[])
    name = function_name(prog)
    doc = ast.Expr(ast.Constant(f"{prog.name}: {len(prog.body)} statement(s), shape {shape}, "
                                f"{'slabs of ' + str(block) + ' plane(s)' if block else 'whole boxes'}"))
    extra: dict[str, Any] = {"type_params": []} if sys.version_info >= (3, 12) else {}
    fn = ast.FunctionDef(name=name, args=args, body=[doc, *body], decorator_list=[],
                         returns=None, **extra)
    module = ast.fix_missing_locations(ast.Module([fn], []))
    return NumpySource(module, name, block)

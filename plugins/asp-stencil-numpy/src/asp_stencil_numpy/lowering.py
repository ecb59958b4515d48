"""Lowering of an optimised stencil DAST to a Python function of vectorised NumPy slicing.

The platform AST of this platform is Python's own :mod:`ast`: each DAST statement of a point loop
becomes one statement over whole slices (one per box of :mod:`asp_stencil_numpy.regions`), so

    for x in out.interior_points():
        out[x] = a[x + (1, 0)] + a[x - (1, 0)]

on a 6×7 grid with ghost depth 1 becomes ``g_out[1:5, 1:6] = g_a[2:6, 1:6] + g_a[0:4, 1:6]``.
Locals used once are folded into their use first (:mod:`asp_stencil_numpy.inline`), so a stored
value is one expression whose temporaries NumPy reuses in place. With ``block=B`` the boxes are walked in slabs of ``B`` planes along the first axis, so the
temporaries of a statement stay in cache.

A local bound to a bare read holds a slice, a view: it is copied where the grid is stored
before the local's last use. A ``nearest_interior`` read is a slice of the nearest interior layer,
broadcast over each part of a border box (:func:`~asp_stencil_numpy.regions.clamp_boxes`).

Exactness: ``+ - * /``, unary minus, comparisons, ``abs``, ``//`` (``numpy.floor_divide``, the
function Python calls on NumPy scalars), ``min``/``max`` (``where(v < r, v, r)``: Python's
left-to-right scan) and ``math.sqrt`` give the bits Python gives. ``**``, ``math.pow`` and
``math.exp/log/sin/cos`` use NumPy's ufuncs, which may use SIMD implementations that differ from
libm in the last bit or so (``_asp_pow`` keeps pow's special values where NumPy computes
``x ** 0.5`` as ``sqrt(x)``: +0.0 for -0.0, +inf for -inf); conditional expressions evaluate
both branches (with floating-point warnings silenced) and select.
"""

from __future__ import annotations

import ast
import linecache
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from asp_stencil import dast as D

from asp_stencil_numpy.conversions import UFUNCS, settle_conversions
from asp_stencil_numpy.inline import inline_single_use
from asp_stencil_numpy.regions import Box, boxes, clamp_boxes

__all__ = ["HELPERS", "NumpySource", "function_name", "lower_numpy"]

_BIN = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div}
_CMP = {"<": ast.Lt, "<=": ast.LtE, ">": ast.Gt, ">=": ast.GtE, "==": ast.Eq, "!=": ast.NotEq}
_NP = "_np"


def _asp_min(r: Any, v: Any) -> Any:
    """Python's ``min(r, v)``: ``v`` only where ``v < r`` (keeps NaN and signed-zero rules)."""
    return np.where(v < r, v, r)


def _asp_max(r: Any, v: Any) -> Any:
    return np.where(v > r, v, r)


def _asp_pow(a: Any, b: Any) -> Any:
    """``a ** b`` and ``math.pow(a, b)``. NumPy computes an array to the scalar power 0.5 as
    ``sqrt``, which gives -0.0 for -0.0 and NaN for -inf where ``pow`` (and so Python) gives
    +0.0 and +inf; those two are set right here (``+ 0.0`` turns -0.0 into +0.0 only)."""
    r = np.power(a, b)
    if np.ndim(b) == 0 and b == 0.5:
        r = np.where(a == -np.inf, np.inf, r + 0.0)
    return r


def _asp_float_bits(bits: int, kind: str = "") -> Any:
    """The float of IEEE ``bits``: a Python float, or a NumPy scalar of ``kind`` (how a NaN
    constant is written, with its sign, payload and kind: a conversion may make a signalling
    NaN quiet)."""
    dtype = np.dtype(kind or np.float64)
    value = np.array(bits, f"u{dtype.itemsize}").view(dtype)[()]
    return value if kind else float(value)


#: Names the generated code refers to besides its parameters (its global namespace).
HELPERS: dict[str, Any] = {_NP: np, "_asp_min": _asp_min, "_asp_max": _asp_max,
                           "_asp_pow": _asp_pow, "_asp_float_bits": _asp_float_bits}


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


def _constant(c: D.Const) -> ast.expr:
    """A Python number as a literal; a NumPy scalar as a call of its type on its exact value
    (``_np.float32(0.10000000149011612)``): it must stay a NumPy scalar, which NEP 50 does not
    treat as weak like a Python number (``u32[x] * float64(0.5)`` computes in float64)."""
    if not c.kind:
        return _literal(c.value)
    if isinstance(c.value, np.floating) and np.isnan(c.value):   # its own bits (see _literal)
        bits = int(c.value.view(f"u{c.value.itemsize}"))
        return ast.Call(_name("_asp_float_bits"), [ast.Constant(bits), ast.Constant(c.kind)], [])
    return _np_call(np.dtype(c.kind).type.__name__, _literal(c.value.item()))


def _literal(value: Any) -> ast.expr:
    """``value`` as source: a NaN by its bits, sign and payload (``ast.unparse`` writes
    ``1e309 - 1e309``, the NaN x86 makes, sign bit set, where Python's has none)."""
    if isinstance(value, float) and math.isnan(value):
        bits = int(np.array(value, np.float64).view(np.uint64))
        return ast.Call(_name("_asp_float_bits"), [ast.Constant(bits)], [])
    return ast.Constant(value)


class _Statements:
    """Lowers the statements of one point loop over one box (slice bounds per dimension).

    ``box`` (the box's extent) and ``shape`` (the grid's) place ``nearest_interior`` reads; the
    box was cut by :func:`~asp_stencil_numpy.regions.clamp_boxes` for them.
    """

    def __init__(self, bounds: list[tuple[ast.expr, ast.expr]], box: Box = (),
                 shape: tuple[int, ...] = ()) -> None:
        self.bounds = bounds
        self.box = box
        self.shape = shape

    def index(self, at: D.PointExpr) -> ast.expr:
        dims = [self._axis(d, o, at.clamp) for d, o in enumerate(at.offset)]
        return dims[0] if len(dims) == 1 else ast.Tuple(list[ast.expr](dims), ast.Load())

    def _axis(self, d: int, offset: int, clamp: int) -> ast.Slice:
        """Along axis ``d``: the box shifted by ``offset``; for a ``nearest_interior`` read of a
        grid of ghost depth ``clamp``, the box itself where it lies in that grid's interior,
        else the interior layer nearest to it (one index, which NumPy broadcasts)."""
        lo, hi = self.bounds[d]
        if clamp >= 0:
            (first, end), n = self.box[d], self.shape[d]
            if end <= clamp:
                return ast.Slice(ast.Constant(clamp), ast.Constant(clamp + 1))
            if first >= n - clamp:
                return ast.Slice(ast.Constant(n - 1 - clamp), ast.Constant(n - clamp))
            assert clamp <= first and end <= n - clamp, "a box not cut by clamp_boxes"
        return ast.Slice(_plus(lo, offset), _plus(hi, offset))

    def expr(self, e: Any) -> ast.expr:
        if isinstance(e, D.Const):
            return _constant(e)
        if isinstance(e, D.Var):
            return _name(var_name(e.name))
        if isinstance(e, D.Read):
            return ast.Subscript(_name(grid_name(e.grid)), self.index(e.at), ast.Load())
        if isinstance(e, D.BinOp):
            left, right = self.expr(e.left), self.expr(e.right)
            if e.op in _BIN:
                return ast.BinOp(left, _BIN[e.op](), right)
            if e.op == "**":
                return ast.Call(_name("_asp_pow"), [left, right], [])
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
            if e.func in UFUNCS and len(args) == 1:
                return _np_call(e.func, args[0])
            if e.func == "pow" and len(args) == 2:  # math.pow: a float power, as ``**``
                return ast.Call(_name("_asp_pow"), args, [])
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

    def stmt(self, s: Any, copy: bool = False) -> ast.stmt:
        """``s`` as an assignment; ``copy``: the local holds a copy of its value (a slice)."""
        value = self.expr(s.value)
        if isinstance(s, D.Assign):
            if s.as_dtype:  # left by settle_conversions: the value needs converting
                value = _np_call(np.dtype(s.as_dtype).type.__name__, value)
            elif copy:
                value = ast.Call(ast.Attribute(value, "copy", ast.Load()), [], [])
            return ast.Assign([_name(var_name(s.target), store=True)], value)
        target = ast.Subscript(_name(grid_name(s.grid)), self.index(s.at), ast.Store())
        return ast.Assign([target], value)


def _viewed_grid(e: Any, views: dict[str, str]) -> str | None:
    """The grid whose memory the lowered ``e`` is a view of (``views``: the locals holding
    one), or ``None``: a bare read is a slice, ``+`` and locals pass it on unchanged."""
    while isinstance(e, D.UnaryOp) and e.op == "+":
        e = e.operand
    if isinstance(e, D.Read):
        return e.grid
    if isinstance(e, D.Var):
        return views.get(e.name)
    return None


def _stored_while_live(body: tuple, i: int, grid: str) -> bool:
    """Whether ``grid`` is stored after ``body[i]`` and before a later read of its local."""
    name = body[i].target
    stored = False
    for s in body[i + 1:]:
        if stored and any(isinstance(n, D.Var) and n.name == name
                          for n in D.expr_nodes(s.value)):
            return True
        if isinstance(s, D.Store):
            stored = stored or s.grid == grid
        elif s.target == name:
            return False
    return False


def _held_views(body: tuple) -> set[int]:
    """Indices of the assignments in ``body`` whose local must hold a copy of its value.

    Lowered, a bare grid read is a view into the grid, not a value: a store to the grid while
    the local is still to be read would change what it reads, where Python's local keeps the
    value it was given (possible with ``output-forwarding`` disabled). Only those are copied.
    """
    views: dict[str, str] = {}
    held: set[int] = set()
    for i, s in enumerate(body):
        if not isinstance(s, D.Assign):
            continue
        grid = None if s.as_dtype else _viewed_grid(s.value, views)
        if grid is not None and _stored_while_live(body, i, grid):
            held.add(i)
            grid = None
        if grid is None:
            views.pop(s.target, None)
        else:
            views[s.target] = grid
    return held


def _box_statements(loop: D.PointLoop, box: Box, block: int | None, shape: tuple[int, ...],
                    held: set[int]) -> list[ast.stmt]:
    (lo0, hi0), rest = box[0], box[1:]
    consts = [(ast.Constant(lo), ast.Constant(hi)) for lo, hi in rest]
    if not block or hi0 - lo0 <= block:
        lower = _Statements([(ast.Constant(lo0), ast.Constant(hi0)), *consts], box, shape)
        return [lower.stmt(s, i in held) for i, s in enumerate(loop.body)]
    lower = _Statements([(_name("_b"), _name("_e")), *consts], box, shape)
    end = ast.Call(_name("min"), [ast.BinOp(_name("_b"), ast.Add(), ast.Constant(block)),
                                  ast.Constant(hi0)], [])
    body: list[ast.stmt] = [ast.Assign([_name("_e", store=True)], end)]
    body += [lower.stmt(s, i in held) for i, s in enumerate(loop.body)]
    rng = ast.Call(_name("range"), [ast.Constant(lo0), ast.Constant(hi0), ast.Constant(block)], [])
    return [ast.For(_name("_b", store=True), rng, body, [])]


def lower_numpy(prog: D.StencilProgram, block: int | None = None) -> NumpySource:
    """The NumPy module of ``prog`` (which :func:`~asp_stencil_numpy.support.unsupported_reason`
    accepted); ``block``: planes per slab along the first axis (``None``: whole boxes)."""
    grids = sorted(prog.grids, key=lambda g: g.index)
    dtypes = {g.name: g.dtype for g in grids}
    shape = prog.output.shape
    body: list[ast.stmt] = []
    for s in prog.body:
        if isinstance(s, D.Assign):
            body.append(_Statements([]).stmt(s))
            continue
        if not isinstance(s, D.PointLoop):
            raise TypeError(f"a top-level {type(s).__name__} is not lowered (support refuses it)")
        ghost = prog.grid(s.grid).ghost_depth
        loop = s.replace(body=inline_single_use(settle_conversions(s.body, dtypes)))
        held = _held_views(loop.body)
        clamps = {r.at.clamp for r in D.reads(loop) if r.at.clamp >= 0}
        for box in boxes(s.region, shape, ghost):
            for part in clamp_boxes(box, shape, clamps):
                body += _box_statements(loop, part, block, shape, held)
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

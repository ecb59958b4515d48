"""Frontend: the kernel's Python AST → stencil DAST (``asp_stencil.dast``).

The DSL (issues 3 and 15): loops over ``g.interior_points()`` / ``g.border_points()``; nested
``for y in g.neighbors(p, id)``; ``=`` and augmented assignment to any grid at the loop point
(several output grids); reads of any grid at a point variable; numeric literals; scalar
attributes of the kernel instance (Python or NumPy numbers); ``+ - * / ** //``, unary minus;
``abs``, ``min``, ``max``, ``math.sqrt/exp/log/sin/cos/pow``; ``distance(x, y)``; local scalar
variables; conditional expressions; ``if``/``elif``/``else`` statements with comparisons and
``and``/``or``/``not`` in their tests. Everything else raises ``ctx.unsupported(node,
construct)`` so the kernel falls back to Python with a warning that names the file, the line and
the construct. A callee is the object its name has when the kernel runs (its locals, closure,
globals, builtins, as Python looks it up), so a ``max`` of the user's is not the DSL's. A local
a point loop assigns is not read after that loop until a top-level statement assigns it again:
Python leaves it at the last point's value, which a parallel loop does not have.

``if`` statements are *if-converted* here: the test is kept in a local ``_ifN`` and each
assignment in a branch becomes ``name = value if guard else name`` (a store
``g[x] = value if guard else g[x]``), so the DAST stays straight-line code that every pass and
backend already handles, and only the chosen branch's values reach any variable or grid.
"""

from __future__ import annotations

import ast
import builtins
import math
import types
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from asp_core.components import Frontend
from asp_core.pyast import attribute_name

from . import dast as D
from .grid import (NeighborIdError, check_ghost_depth, check_neighbor_offsets, dsl_overrides,
                   undefined_neighbor_id)
from .grid import distance as _distance
from .scalar_types import GRID_DTYPES

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["StencilFrontend", "MATH_FUNCTIONS", "grid_params"]

#: Python callables of the DSL → DAST function names.
MATH_FUNCTIONS: dict[Any, str] = {
    builtins.abs: "abs", builtins.min: "min", builtins.max: "max",
    math.sqrt: "sqrt", math.exp: "exp", math.log: "log", math.sin: "sin", math.cos: "cos",
    math.pow: "pow",
}
_MATH_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf, "nan": math.nan}
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
           ast.FloorDiv: "//", ast.Mod: "%"}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_UNARY_NAMES = {ast.Not: "not", ast.Invert: "~", ast.USub: "-", ast.UAdd: "+"}
_OP_NAMES = {ast.MatMult: "operator '@'", ast.BitAnd: "operator '&'",
             ast.BitOr: "operator '|'", ast.BitXor: "operator '^'", ast.LShift: "operator '<<'",
             ast.RShift: "operator '>>'"}


#: the methods of ``int`` through which a kernel's arithmetic, comparisons and conversions go
_INT_OPERATORS = tuple(f"__{m}__" for m in (
    "add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv", "rfloordiv",
    "mod", "rmod", "pow", "rpow", "neg", "pos", "abs", "lt", "le", "gt", "ge", "eq", "ne",
    "bool", "float", "int", "index"))


def _is_grid(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("data", "shape", "ghost_depth", "neighbor_definition"))


def grid_params(names: list[str], grids: tuple[Any, ...], written: set[str] | None = None
                ) -> tuple[D.GridParam, ...]:
    """The specialisation-relevant description of each grid argument (inputs first); the last
    grid and every grid in ``written`` are outputs."""
    out = []
    for i, (name, g) in enumerate(zip(names, grids)):
        nd = _neighbor_rows(g.neighbor_definition, len(g.data.shape))
        out.append(D.GridParam(name=name, index=i, shape=tuple(int(s) for s in g.data.shape),
                               dtype=np.dtype(g.data.dtype).str, ghost_depth=check_ghost_depth(g.ghost_depth),
                               neighbors=nd, output=(i == len(grids) - 1 or name in (written or ())),
                               periodic=bool(getattr(g, "periodic", False))))
    return tuple(out)


def _neighbor_rows(definition: Any, dim: int) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Each neighbour id's offsets, checked. A row that fails the check (changed in place after
    the grid's setter checked it) is kept empty: Python fails only if the kernel reads that id,
    and the frontend refuses it there (:meth:`StencilFrontend.neighbor_offsets`)."""
    rows = []
    for i, offsets in enumerate(definition):
        try:
            rows.append(tuple(check_neighbor_offsets(i, offsets, dim)))
        except ValueError:
            rows.append(())
    return tuple(rows)


def dotted_name(node: ast.expr) -> tuple[str, ...] | None:
    """``('math', 'sqrt')`` for the expression ``math.sqrt``, ``('f',)`` for ``f``; ``None``
    for anything that is not a name followed by attributes."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return (node.id, *reversed(attrs))


def resolve_path(func: Any, path: tuple[str, ...]) -> Any:
    """The object the dotted name ``path`` is when ``func`` (the kernel's function) runs, looked
    up as Python does then, or ``None``: a local of the kernel (no object before it runs), the
    closure, the globals, the builtins, so a ``max`` the user defined anywhere is not taken for
    the DSL's. Only modules' attributes are read: no property of a user's object runs while the
    kernel is parsed. The frontend and the specialisation key (:mod:`asp_stencil.signature`)
    both use it: a name rebound between calls (``f = math.sin``, then ``f = math.cos``) must
    re-specialise, not run code generated for the old object."""
    code = func.__code__
    name = path[0]
    if name in code.co_varnames or name in code.co_cellvars:
        return None
    if name in code.co_freevars:
        try:
            obj = (func.__closure__ or ())[code.co_freevars.index(name)].cell_contents
        except (ValueError, IndexError):  # an empty cell: NameError in Python
            return None
    else:
        obj = next((ns[name] for ns in (func.__globals__, func.__builtins__) if name in ns),
                   None)
    for attr in path[1:]:
        obj = getattr(obj, attr, None) if isinstance(obj, types.ModuleType) else None
    return obj


def callee_meaning(obj: Any) -> str | None:
    """What a resolved callee or module name means to the frontend (part of the key): a DSL
    function's name, ``'distance'``, ``'math'`` (whose constants the DSL reads), ``'other'``
    for anything else (the kernel then runs in Python), ``None`` for nothing."""
    if obj is None:
        return None
    if obj is _distance:
        return "distance"
    if obj is math:
        return "math"
    try:
        return MATH_FUNCTIONS.get(obj, "other")
    except TypeError:  # unhashable
        return "other"


def _scalar_value(value: Any) -> Any:
    """A kernel attribute usable as a constant (Python numbers, NumPy float/int scalars kept as
    they are, so NumPy's promotion applies to them), or ``None`` (a ``numpy.bool_`` too: its
    arithmetic is not Python's, ``True + True`` is ``True`` and ``-True`` raises)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        # a subclass's own operators run in Python (``self.n * u[x]`` calls its ``__mul__``):
        # only int's arithmetic (an IntEnum's) may become a constant of the generated code
        cls = type(value)
        if any(getattr(cls, op, None) is not getattr(int, op) for op in _INT_OPERATORS):
            return None
        return int(value)
    if isinstance(value, float) and type(value) is float:
        return value
    # NumPy's own scalar type: a subclass's operators (``__mul__``) run in Python, as an int
    # subclass's (a float64 subclass multiplying by 100 was compiled as the plain number)
    if isinstance(value, np.generic) and value.dtype.str in GRID_DTYPES and \
            type(value) is value.dtype.type:
        return value
    return None


class StencilFrontend(Frontend):
    """Phase 1 component ``python-ast``."""

    name = "python-ast"

    def parse(self, ctx: SpecializationContext) -> D.StencilProgram:
        if getattr(ctx.func, "__self__", None) is not ctx.instance:
            # a @staticmethod has no self (its first grid was taken for it), a @classmethod's
            # self is the class (whose attributes an instance may shadow)
            raise ctx.unsupported(None, "kernel that is not an instance method",
                                  "declare kernel(self, *inputs, output) without @staticmethod "
                                  "or @classmethod")
        return _Parser(ctx).program()


class _Parser:
    def __init__(self, ctx: SpecializationContext) -> None:
        self.ctx = ctx
        # a decorator's wrapper never gets here (asp_core.pyast.kernel_source refuses it)
        self.func: Any = getattr(ctx.func, "__func__", ctx.func)
        self.instance = ctx.instance
        from .signature import key_attributes, param_kind

        # the kernel attributes' forms in the call's key, and the values compiled for them
        self.key_attrs = key_attributes(ctx.key)
        # the attributes the code reads at each call, by name: their Param kinds
        self.params = {n: k for n, f in self.key_attrs.items()
                       if (k := param_kind(f)) is not None}
        self.attrs: dict[str, Any] = {}
        self.self_name: str | None = None
        self.grids: dict[str, D.GridParam] = {}
        # per grid, the DSL methods it does not take from StencilGrid (compiled code never
        # calls them: a kernel using one runs in Python)
        self.overrides: dict[str, tuple[str, ...]] = {}
        self.objects: dict[str, Any] = {}
        self.output = ""
        # per point loop state
        self.loop_var: str | None = None
        self.loop_grid = ""
        self.loop_region = ""
        self.nbr_vars: dict[str, str] = {}
        self.offsets: dict[str | None, set[tuple[int, ...]]] = {}
        self.toplevel: set[str] = set()
        self.assigned: set[str] = set()
        self.loop_assigns: set[str] = set()
        # locals a finished point loop assigned (→ the loop's file line) and no later top-level
        # statement reassigned: after a parallel loop they hold "the last point's" value only
        # in Python's point order, so reading them is refused rather than carried out
        self.after_loop: dict[str, int] = {}
        # if-conversion state: the guard of the current branch (None outside any ``if``), the
        # locals some earlier statement declares, the locals assigned on some path only
        self.guard: D.Expr | None = None
        self.declared: set[str] = set()
        self.maybe: set[str] = set()
        # every name the kernel's source uses: the guard locals made here must be none of them
        self.taken = {n.id for n in ast.walk(ctx.tree) if isinstance(n, ast.Name)}

    def err(self, node: ast.AST, construct: str) -> Exception:
        return self.ctx.unsupported(node, construct)

    def check_method(self, node: ast.AST, grid: str, method: str) -> None:
        """Refuse a use of ``grid``'s DSL ``method`` when the grid's class or the grid itself
        replaces StencilGrid's: compiled code would not call it, Python does."""
        if method in self.overrides.get(grid, ()):
            what = {"__getitem__": "reads (__getitem__)",
                    "__setitem__": "writes (__setitem__)"}.get(method, f"{method}()")
            raise self.err(node, f"grid '{grid}' whose {what} is not StencilGrid's (its class "
                                 f"{type(self.objects[grid]).__name__} or the grid replaces it)")

    # -- kernel signature -----------------------------------------------------------------
    def program(self) -> D.StencilProgram:
        fn = next((n for n in self.ctx.tree.body
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
        if fn is None:
            raise self.err(self.ctx.tree, "kernel source is not a function definition")
        if isinstance(fn, ast.AsyncFunctionDef):
            raise self.err(fn, "async kernel")
        a = fn.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults:
            raise self.err(fn, "kernel parameters other than plain grid parameters")
        names = [p.arg for p in a.args]
        args = tuple(self.ctx.args)
        if self.instance is not None and names:
            self.self_name = names[0]
            names = names[1:]
            if len(args) == len(names) + 1 and args[0] is self.instance:
                args = args[1:]
        if not names:
            raise self.err(fn, "kernel without grid parameters")
        if len(args) != len(names):
            raise TypeError(f"{fn.name}() takes {len(names)} grid arguments "
                            f"({', '.join(names)}), got {len(args)}")
        for name, g in zip(names, args):
            if not _is_grid(g):
                raise TypeError(f"argument '{name}' of {fn.name}() must be a StencilGrid, "
                                f"got {type(g).__name__}")
        written = {t.value.id for n in ast.walk(fn) if isinstance(n, (ast.Assign, ast.AugAssign))
                   for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                   if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)}
        params = grid_params(names, args, written)
        for p in params:
            if p.dtype not in GRID_DTYPES:
                dt = np.dtype(p.dtype)
                what = dt.name if dt.isnative else f"{dt.name} in the other byte order ({dt.str})"
                raise self.err(fn, f"grid '{p.name}' of dtype {what} (compiled: native float64, "
                                   "float32 and integers other than uint64; others run in Python)")
        self.grids = {p.name: p for p in params}
        self.objects = dict(zip(names, args))
        self.overrides = {name: dsl_overrides(g) for name, g in self.objects.items()}
        self.output = names[-1]
        body = self.block(fn.body, level="top")
        if self.instance is not None:
            from .signature import note_attribute_values

            note_attribute_values(self.instance, self.ctx.key)
        return D.StencilProgram(name=getattr(self.ctx, "kernel_name", fn.name) or fn.name,
                                grids=params, body=tuple(body))

    # -- statements -----------------------------------------------------------------------
    def block(self, stmts: list[ast.stmt], level: str) -> list[D.Stmt]:
        out: list[D.Stmt] = []
        for s in stmts:
            if isinstance(s, ast.Pass) or (isinstance(s, ast.Expr)
                                           and isinstance(s.value, ast.Constant)):
                continue  # does nothing: a docstring, a string as a comment, ``...``
            out.extend(self.stmt(s, level))
        return out

    def stmt(self, s: ast.stmt, level: str) -> list[D.Stmt]:
        if isinstance(s, ast.For):
            return [self.for_loop(s, level)]
        if isinstance(s, ast.Assign):
            if len(s.targets) != 1:
                raise self.err(s, "chained assignment")
            return [self.assign(s.targets[0], s.value, s, None, level)]
        if isinstance(s, ast.AugAssign):
            op = _BINOPS.get(type(s.op))
            if op is None:
                raise self.err(s, _OP_NAMES.get(type(s.op), f"augmented operator {type(s.op).__name__}"))
            return [self.assign(s.target, s.value, s, op, level)]
        if isinstance(s, ast.AnnAssign):
            raise self.err(s, "annotated assignment")
        if isinstance(s, ast.If) and level != "top":
            return self.if_stmt(s, level)
        names = {ast.If: "if statement", ast.While: "while loop", ast.Return: "return statement",
                 ast.Expr: "expression statement (e.g. a call)", ast.With: "with statement",
                 ast.Try: "try statement", ast.Break: "break", ast.Continue: "continue",
                 ast.Delete: "del statement", ast.Global: "global statement",
                 ast.Nonlocal: "nonlocal statement", ast.Import: "import",
                 ast.ImportFrom: "import", ast.FunctionDef: "nested function",
                 ast.ClassDef: "class definition", ast.Raise: "raise statement",
                 ast.Assert: "assert statement"}
        raise self.err(s, names.get(type(s), f"statement {type(s).__name__}"))

    def for_loop(self, s: ast.For, level: str) -> D.Stmt:
        if s.orelse:
            raise self.err(s, "for-else")
        it = s.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute)
                and isinstance(it.func.value, ast.Name) and it.func.value.id in self.grids):
            raise self.err(s, "for loop over something other than a grid's "
                              "interior_points()/border_points()/neighbors()")
        if not isinstance(s.target, ast.Name):
            raise self.err(s.target, "loop target that is not a simple name")
        grid, method, var = it.func.value.id, it.func.attr, s.target.id
        self.check_method(it, grid, method)
        if var in self.grids or var == self.self_name or var in self.nbr_vars or var == self.loop_var:
            raise self.err(s.target, f"loop variable '{var}' shadows a grid or point variable")
        if method in ("interior_points", "border_points"):
            if level != "top":
                raise self.err(s, "nested point loop")
            if it.args or it.keywords:
                raise self.err(it, f"arguments to {method}()")
            if var in self.toplevel:
                raise self.err(s.target, f"point variable '{var}' reuses a local variable")
            self.loop_var, self.nbr_vars = var, {}
            self.loop_grid, self.loop_region = grid, method.split("_")[0]
            self.offsets = {None: {(0,) * len(self.grids[grid].shape)}}
            self.assigned = set()
            self.declared, self.maybe = set(), set()
            self.loop_assigns = _assigned_names(s.body)
            try:
                body = self.block(s.body, level="point")
            finally:
                self.loop_var, self.nbr_vars = None, {}
            self.after_loop.update(dict.fromkeys(self.loop_assigns,
                                                 self.ctx.firstlineno + s.lineno - 1))
            return D.PointLoop(var=var, grid=grid, region=method.split("_")[0], body=tuple(body),
                               line=s.lineno, depth=self.grids[grid].ghost_depth)
        if method == "neighbors":
            if level == "top":
                raise self.err(s, "neighbors() loop outside a point loop")
            if len(it.args) != 2 or it.keywords:
                raise self.err(it, "neighbors() takes (point, id)")
            center = self.point(it.args[0])
            nid = self.neighbor_id(it.args[1])
            if -len(self.grids[grid].neighbors) <= nid < 0:  # Python's list indexing
                nid += len(self.grids[grid].neighbors)
            self.offsets[var] = self.neighbor_offsets(it, grid, nid, center)
            if var in self.assigned or var in self.toplevel:
                raise self.err(s.target, f"neighbour variable '{var}' reuses a local variable")
            self.nbr_vars[var] = grid
            try:
                body = self.block(s.body, level="neighbor")
            finally:
                del self.nbr_vars[var]
            return D.NeighborLoop(var=var, grid=grid, center=center, nid=nid, body=tuple(body),
                                  line=s.lineno)
        raise self.err(it, f"loop over {grid}.{method}()")

    def neighbor_offsets(self, node: ast.AST, grid: str, nid: int, center: D.PointExpr
                         ) -> set[tuple[int, ...]]:
        """Offsets (from the loop point) a neighbour variable takes; checks the definition."""
        g = self.grids[grid]
        if not 0 <= nid < len(g.neighbors):
            raise self.bad_argument(node, undefined_neighbor_id(nid, f"grid '{grid}'",
                                                                len(g.neighbors)),
                                    NeighborIdError)
        if not g.neighbors[nid]:  # empty, or refused by grid_params: the reason, if any
            try:
                check_neighbor_offsets(nid, self.objects[grid].neighbor_definition[nid],
                                       len(g.shape))
            except ValueError as exc:
                raise self.bad_argument(node, str(exc)) from None
        offsets = {tuple(a + b for a, b in zip(c, off))
                   for c in self.offsets[center.var] for off in g.neighbors[nid]}
        self.check_reach(node, offsets, f"of {grid}.neighbors(..., {nid})")
        return offsets

    def check_reach(self, node: ast.AST, offsets: Iterable[tuple[int, ...]], what: str
                    ) -> None:
        """Points (``offsets`` from the loop point) must stay inside the grids, as
        ``StencilGrid.neighbors`` and NumPy indexing check in Python, whether or not they are
        read: within the ghost depth of the grid whose interior is looped over (grids have
        equal shapes, so that depth alone bounds the index; the read grid's own depth does
        not: a depth-0 coefficient grid read at a neighbour of a depth-1 loop stays inside
        it), and none but the loop point in a border loop (its corner points are on every
        side of the array)."""
        owner = self.grids[self.loop_grid]
        depth = owner.ghost_depth if self.loop_region == "interior" else 0
        for off in sorted(offsets):
            reach = max((abs(c) for c in off), default=0)
            if reach > depth and self.loop_region == "interior":
                raise self.bad_argument(
                    node, f"neighbour offset {off} {what} reaches {reach} points from the loop "
                          f"point, beyond the ghost depth {depth} of grid '{owner.name}' "
                          "(raise ghost_depth or shrink the neighbourhood)")
            if reach > depth:
                raise self.bad_argument(
                    node, f"neighbour offset {off} {what} leaves the array at a corner of the "
                          f"border of grid '{owner.name}' (a border loop's point has "
                          "neighbours outside; nearest_interior(x) gives the adjacent interior "
                          "point)")

    def bad_argument(self, node: ast.AST, message: str, error: type[Exception] = ValueError
                     ) -> Exception:
        """``error(message)`` for grids the point loop would use wrongly (an undefined
        neighbour id, a point outside the arrays: Python fails too, or, below index 0, reads
        the far side of the array through NumPy's negative indices, which no kernel means
        and which differs with the ranks of a distributed grid), or, where the loop has no
        points (an interior no wider than its ghost layers, the border of a depth-0 grid), a
        fallback naming it: Python never runs that code and the kernel succeeds there."""
        g = self.grids[self.loop_grid]
        if self.loop_region == "border":
            empty = g.ghost_depth == 0
        else:
            empty = any(n <= 2 * g.ghost_depth for n in g.shape)
        if empty:
            return self.err(node, f"{message}; in a loop over the {self.loop_region} of grid "
                                  f"'{g.name}', which has no points")
        return error(message)

    def attr_value(self, name: str) -> Any:
        """Kernel attribute ``name`` as the call's key holds it (signature.attribute_value),
        the same at every read."""
        if name not in self.attrs:
            from .signature import attribute_value

            live = getattr(self.instance, name, None)
            form = self.key_attrs.get(name)
            self.attrs[name] = live if form is None else attribute_value(form, live)
        return self.attrs[name]

    def neighbor_id(self, node: ast.expr) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and \
                isinstance(node.operand, ast.Constant) and type(node.operand.value) is int:
            return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
        if self._is_self_attr(node):
            v = _scalar_value(self.attr_value(self.attr_name(node)))
            if type(v) is int:
                return v
        raise self.err(node, "neighbour id that is not an int literal or an int kernel attribute")

    def point(self, node: ast.expr, clamp_ok: bool = False) -> D.PointExpr:
        dim = len(self.grids[self.output].shape)
        if (clamp_ok and isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "nearest_interior" and isinstance(node.func.value, ast.Name)
                and node.func.value.id in self.grids and len(node.args) == 1
                and not node.keywords and isinstance(node.args[0], ast.Name)
                and node.args[0].id == self.loop_var):
            if self.loop_region != "border":
                raise self.err(node, "nearest_interior() outside a border_points() loop")
            self.check_method(node, node.func.value.id, "nearest_interior")
            g = self.grids[node.func.value.id]
            if any(n - 2 * g.ghost_depth <= 0 for n in g.shape):
                raise self.err(node, f"nearest_interior() of grid '{g.name}', which has no "
                                     "interior points")
            return D.PointExpr(None, (0,) * dim, clamp=g.ghost_depth)
        if isinstance(node, ast.Name):
            if node.id == self.loop_var:
                return D.PointExpr(None, (0,) * dim)
            if node.id in self.nbr_vars:
                return D.PointExpr(node.id, (0,) * dim)
        raise self.err(node, "grid index that is not the loop point or a neighbour variable")

    def assign(self, target: ast.expr, value: ast.expr, s: ast.stmt, op: str | None,
               level: str) -> D.Stmt:
        if isinstance(target, ast.Name):
            name = target.id
            if name in self.grids or name == self.self_name or name == self.loop_var \
                    or name in self.nbr_vars:
                raise self.err(target, f"assignment to '{name}' (a grid, 'self' or a point)")
            rhs = self.expr(value)
            if op is not None:
                rhs = D.BinOp(op, self.name_value(target), rhs)
            if level == "top":
                self.toplevel.add(name)
                self.after_loop.pop(name, None)
                return D.Assign(target=name, value=rhs, line=s.lineno)
            self.assigned.add(name)
            if self.guard is not None and name in self.declared:
                rhs = D.IfExp(self.guard, rhs, D.Var(name))
            self.declared.add(name)
            return D.Assign(target=name, value=rhs, line=s.lineno)
        if isinstance(target, ast.Subscript):
            if not (isinstance(target.value, ast.Name) and target.value.id in self.grids):
                raise self.err(target, "assignment to a subscript of something other than a grid")
            grid = target.value.id
            if level == "top":
                raise self.err(target, "grid assignment outside a point loop")
            self.check_method(target, grid, "__setitem__")
            if op is not None:  # ``g[x] += v`` reads g[x] first
                self.check_method(target, grid, "__getitem__")
            at = self.point(target.slice)
            if at.var is not None:
                raise self.err(target, "write to a neighbour point (only the loop point may be "
                                       "written)")
            rhs = self.expr(value)
            if op is not None:
                rhs = D.BinOp(op, D.Read(grid, at), rhs)
            if self.guard is not None:
                rhs = D.IfExp(self.guard, rhs, D.Read(grid, at))
            return D.Store(grid=grid, at=at, value=rhs, line=s.lineno)
        raise self.err(target, f"assignment target {type(target).__name__}")

    def if_stmt(self, s: ast.If, level: str) -> list[D.Stmt]:
        """``if``/``elif``/``else`` → a guard local and guarded assignments (see module doc)."""
        test = self.expr(s.test, cond=True)
        flag = D.fresh_name("_if", self.taken)
        outer = self.guard
        out: list[D.Stmt] = [D.Assign(flag, test if outer is None else
                                      D.IfExp(outer, test, D.Const(False)), line=s.lineno)]
        self.declared.add(flag)
        self.assigned.add(flag)
        before = set(self.assigned)
        not_flag = D.UnaryOp("not", D.Var(flag))
        branches = ((s.body, D.Var(flag)),
                    (s.orelse, not_flag if outer is None else D.BoolOp("and", (outer, not_flag))))
        after: set[str] | None = None
        try:
            for stmts, guard in branches:
                self.guard, self.assigned = guard, set(before)
                out += self.block(stmts, level)
                self.maybe |= self.assigned - before
                after = set(self.assigned) if after is None else after & self.assigned
        finally:
            self.guard = outer
        self.assigned = after if after is not None else before
        return out

    # -- expressions ----------------------------------------------------------------------
    def name_value(self, node: ast.Name) -> D.Expr:
        n = node.id
        if n == self.loop_var or n in self.nbr_vars:
            raise self.err(node, f"point variable '{n}' used as a number")
        if n in self.grids:
            raise self.err(node, f"grid '{n}' used as a number")
        if n == self.self_name:
            raise self.err(node, "'self' used as a number")
        if self.loop_var is not None:
            if n in self.assigned:
                return D.Var(n)
            if n in self.maybe:
                raise self.err(node, f"local variable '{n}' read where only some branches of "
                                     "an if assigned it")
            if n in self.loop_assigns:
                raise self.err(node, f"local variable '{n}' read before it is assigned in the "
                                     f"loop body (a value carried between points)")
        if n in self.after_loop:
            raise self.err(node, f"local variable '{n}' read after the point loop at line "
                                 f"{self.after_loop[n]} assigned it "
                                 "(its value after a parallel loop is the last point's only in "
                                 "Python's order)")
        if n in self.toplevel:
            return D.Var(n)
        func = getattr(self.ctx.func, "__func__", self.ctx.func)
        if n in getattr(getattr(func, "__code__", None), "co_freevars", ()):
            raise self.err(node, f"variable '{n}' of an enclosing function (a kernel reads "
                                 f"numbers from its own attributes: self.{n})")
        raise self.err(node, f"global name '{n}'")

    def _is_self_attr(self, node: ast.expr) -> bool:
        return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == self.self_name and self.self_name is not None)

    def attr_name(self, node: ast.expr) -> str:
        """The instance attribute ``self.name`` reads (``self.__x`` in class ``C``: ``_C__x``)."""
        assert isinstance(node, ast.Attribute)
        return attribute_name(self.func, node.attr)

    def resolve(self, node: ast.expr) -> Any:
        """The object a callee ``name`` or ``module.attribute`` is when the kernel runs
        (:func:`resolve_path`), or ``None``."""
        path = dotted_name(node)
        return None if path is None else resolve_path(self.func, path)

    def expr(self, node: ast.expr, cond: bool = False) -> D.Expr:
        if isinstance(node, ast.Constant):
            v = node.value
            if type(v) in (int, float):
                return D.Const(v)
            if type(v) is bool and cond:
                return D.Const(v)
            raise self.err(node, f"literal {v!r}")
        if isinstance(node, ast.Name):
            return self.name_value(node)
        if isinstance(node, ast.Attribute):
            if self._is_self_attr(node):
                name = self.attr_name(node)
                if name in self.params:   # read at each call (signature.note_attribute_values)
                    return D.Param(name, self.params[name])
                if not hasattr(self.instance, name):
                    raise self.err(node, f"attribute 'self.{node.attr}' that the kernel does not have")
                v = _scalar_value(self.attr_value(name))
                if v is None:
                    raise self.err(node, f"attribute 'self.{node.attr}' that is not a real scalar "
                                         "(a Python or NumPy int or float)")
                return D.Attr(name, v)
            if isinstance(node.value, ast.Name) and self.resolve(node.value) is math \
                    and node.attr in _MATH_CONSTANTS:
                return D.Const(_MATH_CONSTANTS[node.attr])
            raise self.err(node, f"attribute access '{ast.unparse(node)}'")
        if isinstance(node, ast.Subscript):
            if isinstance(node.value, ast.Name) and node.value.id in self.grids:
                if self.loop_var is None:
                    raise self.err(node, "grid read outside a point loop")
                self.check_method(node, node.value.id, "__getitem__")
                # inside the arrays: the neighbours loop defining its point checked that
                return D.Read(node.value.id, self.point(node.slice, clamp_ok=True))
            raise self.err(node, f"subscript '{ast.unparse(node)}'")
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.err(node, _OP_NAMES.get(type(node.op), type(node.op).__name__))
            return D.BinOp(op, self.expr(node.left), self.expr(node.right))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return D.UnaryOp("-", self.expr(node.operand))
            if isinstance(node.op, ast.UAdd):
                return D.UnaryOp("+", self.expr(node.operand))
            if isinstance(node.op, ast.Not) and cond:
                return D.UnaryOp("not", self.expr(node.operand, cond=True))
            raise self.err(node, f"unary operator '{_UNARY_NAMES.get(type(node.op), '?')}' here")
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.IfExp):
            return D.IfExp(self.expr(node.test, cond=True), self.expr(node.body),
                           self.expr(node.orelse))
        if isinstance(node, ast.Compare):
            if not cond:
                raise self.err(node, "comparison outside the test of a conditional expression")
            ops = []
            for o in node.ops:
                if type(o) not in _CMPOPS:
                    raise self.err(node, f"comparison operator {type(o).__name__}")
                ops.append(_CMPOPS[type(o)])
            return D.Compare(self.expr(node.left), tuple(ops),
                             tuple(self.expr(c) for c in node.comparators))
        if isinstance(node, ast.BoolOp):
            if not cond:
                raise self.err(node, "'and'/'or' outside the test of a conditional expression")
            return D.BoolOp("and" if isinstance(node.op, ast.And) else "or",
                            tuple(self.expr(v, cond=True) for v in node.values))
        kinds = {ast.Lambda: "lambda", ast.ListComp: "list comprehension",
                 ast.GeneratorExp: "generator expression", ast.List: "list", ast.Tuple: "tuple",
                 ast.Dict: "dict", ast.Set: "set", ast.JoinedStr: "f-string",
                 ast.NamedExpr: "assignment expression", ast.Await: "await"}
        raise self.err(node, kinds.get(type(node), f"expression {type(node).__name__}"))

    def call(self, node: ast.Call) -> D.Expr:
        label = ast.unparse(node.func)
        if node.keywords:
            raise self.err(node, f"keyword arguments in call to '{label}'")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.err(node, f"starred arguments in call to '{label}'")
        obj = self.resolve(node.func)
        if obj is _distance:
            if len(node.args) != 2:
                raise self.err(node, "distance() takes two points")
            return D.Distance(self.point(node.args[0]), self.point(node.args[1]))
        try:
            fname = MATH_FUNCTIONS.get(obj)
        except TypeError:  # unhashable callee
            fname = None
        if fname is None:
            if isinstance(obj, (types.FunctionType, types.MethodType)):
                raise self.err(node, f"call to user function '{label}'")
            if not callable(obj):
                raise self.err(node, f"call to unknown function '{label}'")
            # a NumPy ufunc, a built-in: not the user's ("user function 'np.sqrt'")
            known = ", ".join(sorted({("math." if f.__module__ == "math" else "") + f.__name__
                                      for f in MATH_FUNCTIONS}))
            raise self.err(node, f"call to function '{label}', which the stencil DSL does not "
                                 f"compile (it compiles {known})")
        n = len(node.args)
        if fname in ("min", "max"):
            if n < 2:
                raise self.err(node, f"{fname}() of an iterable (give two or more scalars)")
        elif fname == "pow":
            if n != 2:
                raise self.err(node, f"{label}() with {n} arguments")
        elif n != 1:
            raise self.err(node, f"{label}() with {n} arguments")
        return D.Call(fname, tuple(self.expr(a) for a in node.args))


def _assigned_names(stmts: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for s in stmts:
        for n in ast.walk(s):
            if isinstance(n, (ast.Assign, ast.AugAssign)):
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                    if isinstance(t, ast.Name):
                        names.add(t.id)
    return names

"""The stencil domain AST (DAST): what the frontend builds and the domain passes rewrite.

Design (shared by the OpenMP backend here and by the CUDA / temporal-blocking backends that build
on this package):

* Expression nodes are **frozen, hashable dataclasses** (structural equality), so passes can use
  them as dictionary keys (CSE) and rebuild trees with ``asp_core.ir.Transformer``.
* A grid access is ``Read(grid, PointExpr(var, offset))``: ``var`` names a neighbour variable of
  an enclosing ``NeighborLoop`` (``None`` = the point of the enclosing ``PointLoop``) and
  ``offset`` is added to it. After the ``unroll-neighbors`` pass every ``var`` is ``None``, so a
  read is simply "grid at loop point + constant offset".
* The operation tree keeps Python's evaluation order exactly (``a + b + c`` is
  ``BinOp('+', BinOp('+', a, b), c)``); no pass reassociates, so generated code compiled with
  ``-ffp-contract=off`` is bitwise equal to the pure-Python kernel.
* Runtime values are scalars of the grids' dtype; ``Const`` holds exact Python ``int``/``float``
  values produced by folding with Python's own operators.
* Statements carry ``line`` (1-based, relative to the kernel's source) for error messages; it is
  excluded from equality.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Iterator, Union

import numpy as np

from asp_core.ir import Node

__all__ = [
    "Expr", "Stmt", "PointExpr", "Const", "Attr", "Param", "Var", "Read", "BinOp", "UnaryOp",
    "Call", "Distance", "Compare", "BoolOp", "IfExp", "Assign", "Store", "NeighborLoop",
    "PointLoop",
    "GridParam", "StencilProgram", "BINARY_OPS", "UNARY_OPS", "MATH_FUNCS", "COMPARE_OPS",
    "reads", "expr_nodes", "const", "written_grids", "loop_statements", "unlowered_reason",
    "params_of", "CHECKED_PARAMS",
]

#: Binary operators of the DSL (Python spelling).
BINARY_OPS = ("+", "-", "*", "/", "**", "//", "%")
#: Unary operators of the DSL; ``not`` only inside a condition.
UNARY_OPS = ("-", "+", "not")
#: Functions of the DSL: builtins ``abs/min/max`` and ``math.sqrt/exp/log/sin/cos``.
MATH_FUNCS = ("abs", "min", "max", "sqrt", "exp", "log", "sin", "cos")
#: Comparison operators (only inside the test of a conditional expression).
COMPARE_OPS = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True)
class PointExpr(Node):
    """A grid point: the neighbour variable ``var`` (``None``: the loop point) plus ``offset``.

    ``clamp >= 0``: instead, the interior point nearest to the loop point of a border loop,
    for a grid of ghost depth ``clamp`` (``g.nearest_interior(x)``: Neumann boundaries).
    """

    var: Union[str, None]
    offset: tuple[int, ...]
    clamp: int = -1


# --- expressions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Const(Node):
    """An exact Python number (``int`` or ``float``; ``bool`` only as a folded condition) or a
    NumPy scalar (a kernel attribute such as ``numpy.float32(0.1)``, or a value folded from
    one); ``kind`` is the NumPy dtype string of a NumPy scalar ("" for Python numbers), so
    constants of different types are never equal (``numpy.float32(0.5) == 0.5`` in Python)."""

    value: Any
    kind: str = ""

    # Structural equality must not be Python's numeric equality: ``0.0 == -0.0`` and
    # ``100 == 100.0``, yet ``u[x] * -0.0`` and ``u[x] * 0.0`` differ in sign, and ``m8[x] * 100``
    # wraps in int8 where ``m8[x] * 100.0`` does not. Passes and the C lowering use expressions as
    # dictionary keys (CSE, the per-statement memo), which would reuse one for the other.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Const):
            return NotImplemented
        return self.kind == other.kind and _exact(self.value) == _exact(other.value)

    def __hash__(self) -> int:
        return hash((self.kind, _exact(self.value)))


def _exact(value: Any) -> tuple:
    """``value`` by its type and exact bits (signed zeros and NaNs included)."""
    if isinstance(value, float):
        return (type(value), struct.pack("<d", value))
    if isinstance(value, np.generic):
        return (type(value), value.tobytes())
    return (type(value), value)


def const(value: Any) -> Const:
    """The ``Const`` of a Python or NumPy scalar (sets ``kind`` for NumPy scalars)."""
    dtype = getattr(value, "dtype", None)
    return Const(value, dtype.str if dtype is not None else "")


@dataclass(frozen=True)
class Attr(Node):
    """A scalar attribute of the kernel instance (``self.name``), folded to ``Const``."""

    name: str
    value: Any


@dataclass(frozen=True)
class Param(Node):
    """A float attribute of the kernel instance read at each call (``self.t`` set before every
    call): a parameter of the generated function, not a constant, so one compiled code serves
    every value. ``kind`` is ``""`` for a Python float, else the dtype string of a NumPy float
    scalar (its type, part of the specialisation key, fixes the arithmetic).

    With ``expr``, a Python float the call computes from such attributes before the compiled
    code runs (``math.sin(self.w * self.t)``; named by a number, which no attribute is): an
    expression of other ``Param`` and ``Const`` nodes that Python evaluates."""

    name: str
    kind: str = ""
    expr: Any = None

    def children(self) -> list[Node]:
        return []   # ``expr`` is Python's to compute, not a part of the code


@dataclass(frozen=True)
class Var(Node):
    """A local scalar variable."""

    name: str


@dataclass(frozen=True)
class Read(Node):
    """``grid[point]``."""

    grid: str
    at: PointExpr


@dataclass(frozen=True)
class BinOp(Node):
    op: str
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str
    operand: "Expr"


@dataclass(frozen=True)
class Call(Node):
    """``abs``, ``min``, ``max`` (any arity ≥ 2, Python's left-to-right semantics) or math."""

    func: str
    args: tuple["Expr", ...]


@dataclass(frozen=True)
class Distance(Node):
    """``distance(a, b)``: Euclidean distance between two points (constant once unrolled)."""

    a: PointExpr
    b: PointExpr


@dataclass(frozen=True)
class Compare(Node):
    """A (possibly chained) comparison ``left op0 c0 op1 c1 ...``."""

    left: "Expr"
    ops: tuple[str, ...]
    comparators: tuple["Expr", ...]


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    values: tuple["Expr", ...]


@dataclass(frozen=True)
class IfExp(Node):
    """``body if test else orelse`` (only the chosen branch is evaluated)."""

    test: "Expr"
    body: "Expr"
    orelse: "Expr"


Expr = Union[Const, Attr, Param, Var, Read, BinOp, UnaryOp, Call, Distance, Compare, BoolOp, IfExp]


# --- statements -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Assign(Node):
    """``name = value`` (a local scalar). Augmented assignment is normalised to this.

    ``as_dtype``: the local stands for an element of the grid ``as_grid``
    (``output-forwarding``): the value is converted to that dtype, as storing it into the grid
    would, and reads of the local are scalars of that dtype, as reading the grid back would give.
    """

    target: str
    value: Expr
    line: int = field(default=0, compare=False)
    as_dtype: str = ""
    as_grid: str = field(default="", compare=False)


@dataclass(frozen=True)
class Store(Node):
    """``grid[point] = value`` (always the output grid, at the loop point)."""

    grid: str
    at: PointExpr
    value: Expr
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class NeighborLoop(Node):
    """``for var in grid.neighbors(center, nid): body`` (removed by ``unroll-neighbors``)."""

    var: str
    grid: str
    center: PointExpr
    nid: int
    body: tuple["Stmt", ...]
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class PointLoop(Node):
    """``for var in grid.interior_points()`` (``region='interior'``) or ``border_points()``."""

    var: str
    grid: str
    region: str
    body: tuple["Stmt", ...]
    line: int = field(default=0, compare=False)
    #: the ghost depth of ``grid``: a border loop's points are that deep
    depth: int = 0

    @property
    def sequential(self) -> bool:
        """Whether an iteration reads, at another point, a grid this loop stores (Gauss-Seidel):
        then points depend on earlier points and the loop must run in Python's order.  Derived
        from the body, not marked by a pass: a user may disable any pass, and a parallel
        Gauss-Seidel loop would race.  A grid an earlier loop wrote is complete when this one
        starts, so reading it at a neighbour keeps the loop parallel.  In a border loop,
        ``h.nearest_interior(x)`` of a grid ``h`` shallower than the loop's is itself a border
        point of the loop, written by another iteration (a GPU's threads raced there, and
        OpenMP was right only by how it split the rows)."""
        return self.reads_elsewhere(written_grids(self))

    def reads_elsewhere(self, grids: set[str]) -> bool:
        """Whether an iteration reads one of ``grids`` at another point than its own: at a
        neighbour, or, in a border loop, at a clamped point that is another iteration's (see
        :attr:`sequential`)."""
        return any(r.grid in grids and (r.at.var is not None or any(r.at.offset) or (
            self.region == "border" and 0 <= r.at.clamp < self.depth)) for r in reads(self))


Stmt = Union[Assign, Store, NeighborLoop, PointLoop]


@dataclass(frozen=True)
class GridParam(Node):
    """A grid argument as specialised: everything the generated code may depend on."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: str
    ghost_depth: int
    neighbors: tuple[tuple[tuple[int, ...], ...], ...]
    output: bool
    #: ghost cells are filled by wrap-around before each sweep (``StencilGrid(periodic=True)``)
    periodic: bool = False


@dataclass
class StencilProgram(Node):
    """A whole kernel: its grids (inputs first, output last) and top-level statements.

    ``info`` collects analysis results of the domain passes (e.g. ``linear`` coefficients,
    per-loop read offsets) for platforms, ``asp explain`` and benchmarks.
    """

    name: str
    grids: tuple[GridParam, ...]
    body: tuple[Stmt, ...]
    info: dict = field(default_factory=dict, compare=False)

    @property
    def output(self) -> GridParam:
        """The last grid (the one ``iterate`` swaps with the last input)."""
        return self.grids[-1]

    @property
    def outputs(self) -> tuple[GridParam, ...]:
        """Every grid the kernel writes (``output`` flag), in argument order."""
        return tuple(g for g in self.grids if g.output)

    @property
    def periodic(self) -> bool:
        """Whether a grid is periodic: its ghosts are refilled before each sweep, so sweeps
        cannot be fused (temporal blocking declines such programs)."""
        return any(g.periodic for g in self.grids)

    def grid(self, name: str) -> GridParam:
        for g in self.grids:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def dim(self) -> int:
        return len(self.grids[-1].shape)


def expr_nodes(node: Node) -> Iterator[Node]:
    """Every node under ``node`` (parents first)."""
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        stack.extend(reversed(cur.children()))


def local_names(node: Node) -> set[str]:
    """The local names ``node`` assigns or reads."""
    return {n.target if isinstance(n, Assign) else n.name for n in expr_nodes(node)
            if isinstance(n, (Assign, Var))}


def fresh_name(base: str, taken: set[str]) -> str:
    """``base``, else ``base_1``, ``base_2``...: the first not in ``taken`` (then added to it).
    A local a pass or the frontend makes must not be one of the kernel's own (a user's ``s_1``
    or ``_if1`` was overwritten by the generated one: wrong results, no warning)."""
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def reads(node: Node) -> list[Read]:
    """All grid reads under ``node``, in evaluation order."""
    return [n for n in expr_nodes(node) if isinstance(n, Read)]


def written_grids(node: Node) -> set[str]:
    """Names of the grids some ``Store`` under ``node`` (a program, a loop) writes."""
    return {n.grid for n in expr_nodes(node) if isinstance(n, Store)}


def loop_statements(prog: StencilProgram) -> list[Stmt]:
    """Statements of every point loop, in order (for analyses that look at each once)."""
    return [s for loop in prog.body if isinstance(loop, PointLoop) for s in loop.body]


#: ``StencilProgram.info`` entry: the computed parameters of assignments no statement reads,
#: which a call computes only for Python's exceptions (``constant-folding`` writes it, the
#: backend's bound callable reads it)
CHECKED_PARAMS = "checked-params"


def params_of(prog: StencilProgram) -> tuple[Param, ...]:
    """The :class:`Param` nodes of ``prog``'s code, one per name, by name: the generated
    function's scalar parameters after its grids, in this order (those an ``expr`` computes
    from are not among them unless the code reads them too)."""
    found = {n.name: n for n in expr_nodes(prog) if isinstance(n, Param)}
    return tuple(found[name] for name in sorted(found))


def unlowered_reason(prog: StencilProgram, params: bool = False) -> str | None:
    """Why ``prog`` still holds nodes no platform lowers (``None``: it holds none).

    The domain passes replace neighbour loops, attributes and ``distance`` calls; a user who
    disables one of them (``ASP_DISABLE_PASSES``) leaves such nodes behind, and every
    platform's ``check`` declines the program with this reason instead of failing to lower it.
    A :class:`Param` is lowered only by platforms that say so (``params``: the OpenMP C code).
    """
    for n in expr_nodes(prog):
        if isinstance(n, Param) and not params:
            what = ("a value computed from kernel attributes" if n.expr is not None else
                    f"kernel attribute self.{n.name}")
            return (f"{what} is read at each call (it changed between calls): only the OpenMP "
                    "code takes such parameters")
        if isinstance(n, (NeighborLoop, Attr, Distance)):
            return f"{type(n).__name__} nodes remain (a required domain pass was disabled)"
        if isinstance(n, PointExpr) and n.var is not None:
            return "neighbour reads remain (unroll-neighbors was disabled)"
    return None

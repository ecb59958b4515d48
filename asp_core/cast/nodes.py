"""Platform AST: C, C++ and CUDA nodes, printed by :mod:`asp_core.cast.printer` (no C from
strings elsewhere, Mako templates aside). Structural equality lets platform passes be tested by
comparing trees, without compiling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asp_core.ir import Node

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CType", "DOUBLE", "FLOAT", "INT", "LONG", "VOID", "SIZE_T", "ctype_for",
    "Expr", "Stmt", "Name", "Constant", "BinOp", "UnaryOp", "Call", "Index", "Cast", "Ternary",
    "Member", "Decl", "Assign", "AugAssign", "ExprStmt", "Block", "For", "While", "If", "Return",
    "Break", "Continue", "Clause", "Pragma", "Comment", "Include", "Define", "Param", "FunctionDef",
    "Module", "CudaLaunch", "BINARY_OPS", "UNARY_OPS",
]

BINARY_OPS = frozenset({"+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^", "&&", "||",
                        "==", "!=", "<", "<=", ">", ">="})
UNARY_OPS = frozenset({"-", "+", "!", "~"})


@dataclass(frozen=True)
class CType(Node):
    """A C type: ``base`` plus pointer depth and qualifiers (``const``, ``restrict``, ...)."""

    base: str
    pointer: int = 0
    const: bool = False
    restrict: bool = False
    qualifiers: tuple[str, ...] = ()

    def ptr(self, restrict: bool = False) -> CType:
        return CType(self.base, self.pointer + 1, self.const, restrict, self.qualifiers)

    def as_const(self) -> CType:
        return CType(self.base, self.pointer, True, self.restrict, self.qualifiers)

    def children(self) -> list[Node]:
        return []


DOUBLE = CType("double")
FLOAT = CType("float")
INT = CType("int")
LONG = CType("long")
VOID = CType("void")
SIZE_T = CType("size_t")


@functools.lru_cache(maxsize=1)
def _dtypes() -> dict[Any, str]:
    # built on first use: importing the PAST (plugins do, at registration) must not cost numpy
    import numpy as np

    ints = (np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32, np.uint64)
    return {np.dtype(np.float64): "double", np.dtype(np.float32): "float",
            **{np.dtype(t): f"{np.dtype(t).name}_t" for t in ints}, np.dtype(np.bool_): "uint8_t"}


def ctype_for(dtype: np.dtype | type | str) -> CType:
    """The C type holding one element of a NumPy dtype (``TypeError`` if none does)."""
    import numpy as np

    dt = np.dtype(dtype)
    try:
        return CType(_dtypes()[dt])
    except KeyError:
        raise TypeError(f"no C type for NumPy dtype {dt}; supported: "
                        f"{', '.join(str(d) for d in _dtypes())}") from None


class Expr(Node):
    """Base of expressions."""


class Stmt(Node):
    """Base of statements."""


@dataclass
class Name(Expr):
    id: str


@dataclass
class Constant(Expr):
    """A literal (a Python or NumPy number), printed exactly or refused: ``ctype`` FLOAT
    prints NumPy's float32 of it with an ``f`` suffix so float32 code stays float32, DOUBLE
    prints an integer as a double (``1 / 2`` of two DOUBLE constants is 0.5), an integer
    ctype takes integral values only."""

    value: int | float | bool
    ctype: CType | None = None


@dataclass
class BinOp(Expr):
    left: Expr
    op: str
    right: Expr

    def __post_init__(self) -> None:
        _check_op(self.op, BINARY_OPS, "binary")


@dataclass
class UnaryOp(Expr):
    op: str
    operand: Expr

    def __post_init__(self) -> None:
        _check_op(self.op, UNARY_OPS, "unary")


def _check_op(op: str, known: frozenset[str], kind: str) -> None:
    if op not in known:
        raise ValueError(f"unknown C {kind} operator {op!r}")


@dataclass
class Call(Expr):
    func: str
    args: list[Expr] = field(default_factory=list)


@dataclass
class Index(Expr):
    """``base[index]``."""

    base: Expr
    index: Expr


@dataclass
class Cast(Expr):
    ctype: CType
    expr: Expr


@dataclass
class Ternary(Expr):
    cond: Expr
    then: Expr
    orelse: Expr


@dataclass
class Member(Expr):
    """``value.attr`` (or ``value->attr`` with ``arrow``); CUDA's ``threadIdx.x`` is one."""

    value: Expr
    attr: str
    arrow: bool = False


@dataclass
class Decl(Stmt):
    """``ctype name[dims] = init;`` with optional alignment (``__attribute__((aligned))``)."""

    ctype: CType
    name: str
    init: Expr | None = None
    dims: tuple[int, ...] = ()
    align: int | None = None


@dataclass
class Assign(Stmt):
    target: Expr
    value: Expr


@dataclass
class AugAssign(Stmt):
    target: Expr
    op: str
    value: Expr


@dataclass
class ExprStmt(Stmt):
    expr: Expr


@dataclass
class Clause(Node):
    """One pragma clause, ``name`` or ``name([modifier:]args)``: ``Clause("reduction",
    (Name("acc"),), modifier="+")`` prints ``reduction(+:acc)``. ``args`` are C expressions,
    integers or identifiers; the printer checks every part."""

    name: str
    args: tuple[Expr | int | str, ...] = ()
    modifier: str = ""


@dataclass
class Pragma(Stmt):
    """``#pragma <namespace> <directive> <clauses>``, e.g. ``Pragma("GCC", "unroll 4")``;
    ``directive`` is words, anything with arguments a :class:`Clause`."""

    namespace: str
    directive: str
    clauses: list[Clause] = field(default_factory=list)


@dataclass
class Comment(Stmt):
    text: str


@dataclass
class Block(Stmt):
    body: list[Stmt] = field(default_factory=list)


@dataclass
class For(Stmt):
    """``for (ctype var = start; var < stop; var += step) body`` with pragmas printed before."""

    var: str
    start: Expr
    stop: Expr
    body: Block
    step: Expr = field(default_factory=lambda: Constant(1))
    pragmas: list[Pragma] = field(default_factory=list)
    ctype: CType = LONG


@dataclass
class While(Stmt):
    cond: Expr
    body: Block


@dataclass
class If(Stmt):
    cond: Expr
    body: Block
    orelse: Block | None = None


@dataclass
class Return(Stmt):
    value: Expr | None = None


@dataclass
class Break(Stmt):
    """``break;``"""


@dataclass
class Continue(Stmt):
    """``continue;``"""


@dataclass
class Include(Node):
    header: str
    system: bool = True


@dataclass
class Define(Node):
    name: str
    value: Expr


@dataclass
class Param(Node):
    ctype: CType
    name: str


@dataclass
class FunctionDef(Node):
    """A function; ``extern_c`` gives it C linkage under C++/CUDA, ``qualifier`` is e.g.
    ``__global__`` or ``__device__``, ``storage`` e.g. ``("static", "inline")``."""

    name: str
    params: list[Param]
    body: Block
    ret: CType = VOID
    extern_c: bool = True
    qualifier: str = ""
    storage: tuple[str, ...] = ()


@dataclass
class CudaLaunch(Stmt):
    """``kernel<<<grid, block, shared, stream>>>(args);``; grid/block are 1-3 expressions."""

    kernel: str
    grid: list[Expr]
    block: list[Expr]
    args: list[Expr]
    shared: Expr | None = None
    stream: Expr | None = None


@dataclass
class Module(Node):
    """A translation unit."""

    body: list[Node] = field(default_factory=list)

"""Row kernels: one point loop of the DAST, applied to one row of the padded 3-D frame.

The temporally blocked driver (``templates/temporal.c.mako``) never addresses a grid by its
global position alone: the state grid of the previous time level may live in the global array or
in a per-thread ring buffer of planes. So each point loop becomes a ``static`` C function over a
row segment ``[lo, hi)`` that receives, for every plane offset ``dz`` it reads the state at, a
pointer to row ``y`` of plane ``p + dz`` wherever that plane is stored, indexed by the global
``x`` (rows are ``ys`` doubles apart: ``N2`` in the grid, the ring's row length in the ring);
constant inputs are read from their global arrays.

Each point is lowered by :func:`~asp_stencil.lower_c.point_body`, the lowering the OpenMP and
CUDA paths share, so a point computes exactly what the plain sweep computes (same operations,
same order, the kernel's top-level locals first); only the addressing of reads differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from asp_core import cast as C

from .. import dast as D
from ..lower_c import point_body
from .analysis import TemporalPlan, pad3, stores

__all__ = ["RowKernel", "row_kernels", "dz_name"]

CONST_LONG = C.CType("long", const=True)
IN_PTR = C.CType("double", 1, True, True)


def dz_name(dz: int) -> str:
    """C name of the state-row pointer for plane offset ``dz`` (``s_m1``, ``s_0``, ``s_p2``)."""
    return f"s_{'m' if dz < 0 else 'p' if dz > 0 else ''}{abs(dz)}"


@dataclass
class RowKernel:
    """The C function of one point loop and what the driver must pass to it."""

    index: int
    region: str            # "interior" | "border"
    name: str
    dzs: tuple[int, ...]   # plane offsets of state reads, sorted
    function: C.FunctionDef
    #: the same loop over two adjacent rows in one pass (interior loops only): ``pair`` rows
    #: y, y + 1 of plane p, ``zpair`` row y of planes p, p + 1 (output rows ``out``, ``out1``;
    #: ``zdzs`` the plane offsets ``zpair`` reads). Each point is computed by the same
    #: statements, but the input rows the two rows share are loaded once.
    pair: C.FunctionDef | None = None
    zpair: C.FunctionDef | None = None
    zdzs: tuple[int, ...] = ()


def _const(v: int) -> C.Expr:
    return C.Constant(int(v))


def _plus(a: C.Expr, k: int) -> C.Expr:
    return a if k == 0 else C.BinOp(a, "+", _const(k))


def row_kernels(prog: D.StencilProgram, plan: TemporalPlan, suffix: str = ""
                ) -> list[RowKernel]:
    """One :class:`RowKernel` per point loop of ``prog``, in program order; ``suffix`` names a
    second copy of the functions (the engine compiled for another vector width)."""
    n0, n1, n2 = plan.shape
    out: list[RowKernel] = []
    x = C.Name("x")
    for loop in prog.body:
        if not isinstance(loop, D.PointLoop) or not stores(loop):
            continue  # a loop that stores nothing has no effect on any sweep
        idx = len(out)
        # the plan admits only assignments and stores in point loops
        dzs = sorted({pad3(r.at.offset, 0)[0] for s in loop.body
                      if isinstance(s, (D.Assign, D.Store)) for r in D.reads(s.value)
                      if r.grid == plan.state})

        def point(dz1: int, dy1: int) -> list[C.Stmt]:
            """The statements of point x of row y + ``dy1`` of plane p + ``dz1`` (the same
            operations for every row: only the offsets of reads move; stored into ``out``, or
            ``out1`` for the second row of a pair)."""

            def read(r: D.Read) -> C.Expr:
                dz, dy, dx = pad3(r.at.offset, 0)
                dz, dy = dz + dz1, dy + dy1
                if r.grid == plan.state:  # rows of the state are ``ys`` apart (global or ring)
                    at = _plus(x, dx)
                    if dy:
                        at = C.BinOp(at, "+", C.BinOp(C.Name("ys"), "*", _const(dy)))
                    return C.Index(C.Name(dz_name(dz)), at)
                return C.Index(C.Name("c_" + r.grid), _plus(C.BinOp(C.Name("base"), "+", x),
                                                            dz * n1 * n2 + dy * n2 + dx))

            target = C.Name("out1" if dz1 or dy1 else "out")
            return point_body(prog, loop, read,
                              lambda s, value: C.Assign(C.Index(target, x), value))

        def function(name: str, second: tuple[int, int] | None, planes: list[int]
                     ) -> C.FunctionDef:
            body: list[C.Stmt] = []
            if plan.constants:
                body.append(C.Decl(CONST_LONG, "base", C.BinOp(
                    C.BinOp(C.Name("p"), "*", _const(n1 * n2)), "+",
                    C.BinOp(C.Name("y"), "*", _const(n2)))))
            # a pair: each point in its own scope (its locals), both in one iteration
            stmts: list[C.Stmt] = point(0, 0) if second is None else [
                C.Block(point(0, 0)), C.Block(point(*second))]
            body.append(C.For("x", C.Name("lo"), C.Name("hi"), C.Block(stmts),
                              pragmas=[C.Pragma("omp", "simd")]))
            params = [C.Param(C.DOUBLE.ptr(restrict=True), "out")]
            params += [C.Param(C.DOUBLE.ptr(restrict=True), "out1")] if second else []
            params += [C.Param(IN_PTR, dz_name(dz)) for dz in planes]
            params += [C.Param(IN_PTR, "c_" + g) for g in plan.constants]
            params += [C.Param(C.LONG, "p"), C.Param(C.LONG, "y"), C.Param(C.LONG, "ys"),
                       C.Param(C.LONG, "lo"), C.Param(C.LONG, "hi")]
            return C.FunctionDef(name, params, C.Block(body), extern_c=False,
                                 storage=("static", "inline"))

        name = f"asp_row{idx}{suffix}"
        zdzs = sorted(set(dzs) | {dz + 1 for dz in dzs})
        inner = loop.region == "interior"
        out.append(RowKernel(idx, loop.region, name, tuple(dzs), function(name, None, dzs),
                             function(name + "_y2", (0, 1), dzs) if inner else None,
                             function(name + "_z2", (1, 0), zdzs) if inner else None,
                             tuple(zdzs)))
    return out

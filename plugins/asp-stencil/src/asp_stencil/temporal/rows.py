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
same order, the kernel's top-level locals first); only the addressing of reads differs. The
AVX-512 engine's x-shifted rows (:func:`xshift_row`) are written in intrinsics instead, by the
vector lowering the plain sweeps' streaming rows use, which keeps the same operations and order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from asp_core import cast as C

from .. import dast as D
from ..lower_c import point_body
from ..vector import AVX512, VectorLowering, vectorizable
from .analysis import TemporalPlan, pad3, stores

__all__ = ["RowKernel", "row_kernels", "dz_name", "xshift_row", "xshiftable"]

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
    #: x-shifted versions (:func:`xshift_row`, named ``<name>_xs``) of ``function``, ``pair``
    #: and ``zpair`` (interior loops of the AVX-512 engine; empty where the loop has none)
    xs: tuple[C.FunctionDef, ...] = ()


def _const(v: int) -> C.Expr:
    return C.Constant(int(v))


def _plus(a: C.Expr, k: int) -> C.Expr:
    return a if k == 0 else C.BinOp(a, "+", _const(k))


def row_kernels(prog: D.StencilProgram, plan: TemporalPlan, suffix: str = "",
                xshift: bool = False) -> list[RowKernel]:
    """One :class:`RowKernel` per point loop of ``prog``, in program order; ``suffix`` names a
    second copy of the functions (the engine compiled for another vector width). With
    ``xshift`` interior loops also get :func:`xshift_row` functions where they allow (AVX-512
    engines only)."""
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
        kernel = RowKernel(idx, loop.region, name, tuple(dzs), function(name, None, dzs),
                           function(name + "_y2", (0, 1), dzs) if inner else None,
                           function(name + "_z2", (1, 0), zdzs) if inner else None,
                           tuple(zdzs))
        if xshift and inner:
            kernel.xs = _xshifted(prog, loop, plan, kernel)
        out.append(kernel)
    return out


#: points ahead of x that the x-shifted rows prefetch in each input row (eight cache lines):
#: heat 3-D 256^3 blocked 59 -> 66 GB/s effective, Jacobi 64 -> 72, 2-D unchanged (AMD Zen 4;
#: 32 points gained less, a row ahead lost)
PREFETCH_AHEAD = 64


def xshiftable(prog: D.StencilProgram, plan: TemporalPlan) -> bool:
    """Whether the full-width engine of ``prog`` has x-shifted rows (``W = 2`` runs them)."""
    return any(rk.xs for rk in row_kernels(prog, plan, "_w512", xshift=True))


def _xshifted(prog: D.StencilProgram, loop: D.PointLoop, plan: TemporalPlan,
              kernel: RowKernel) -> tuple[C.FunctionDef, ...]:
    """The x-shifted row, pair and plane pair of ``kernel``, or none (see :func:`xshift_row`)."""
    made = []
    for scalar, second in ((kernel.function, None), (kernel.pair, (0, 1)),
                           (kernel.zpair, (1, 0))):
        assert scalar is not None
        fn = xshift_row(prog, loop, plan, replace(scalar, name=scalar.name + "_xs"), second)
        if fn is None:
            return ()
        made.append(fn)
    return tuple(made)


def xshift_row(prog: D.StencilProgram, loop: D.PointLoop, plan: TemporalPlan,
               scalar: C.FunctionDef, second: tuple[int, int] | None = None
               ) -> C.FunctionDef | None:
    """The interior row ``scalar`` computes, in AVX-512 vectors whose x-neighbours come from
    registers: each input row is loaded once per vector (at x, x + 8), and the reads x ± d of
    it are lane shifts (``valignq``) of the vectors before, at and after x. The scalar row
    loads every neighbour again, unaligned (seven loads a point for heat 3-D, where AMD's Zen 4
    does one 512-bit load a cycle: the blocked loops were load-bound). The last vector loads
    only the lanes of the one after it that it reads, and the points left (fewer than 8) are
    one vector of masked loads. Same operations in the same order as the scalar code
    (:class:`~asp_stencil.vector.VectorLowering`), so the results are bitwise equal. With
    ``second`` (plane and row offset) it computes the pair ``scalar`` computes, both points of
    a vector in one pass, the input rows they share loaded once. None where the loop is not
    plain float64 arithmetic or reads further than a vector along x."""
    width = AVX512.width
    pos = next(i for i, st in enumerate(prog.body) if st is loop)
    prologue = [st for st in prog.body[:pos] if isinstance(st, D.Assign)]
    stmts = prologue + list(loop.body)
    if {g.dtype for g in prog.grids} != {"<f8"} or \
            not vectorizable(replace(loop, body=tuple(stmts)), "<f8") or \
            any(D.reads(st.value) for st in prologue):
        return None
    n0, n1, n2 = plan.shape
    x = C.Name("x")
    shifts = [(0, 0)] + ([second] if second else [])   # the points of one pass
    sources: dict[tuple[str, int, int], set[int]] = {}   # input row -> its x offsets
    for st in stmts:
        assert isinstance(st, (D.Assign, D.Store))  # vectorizable() checked it
        for r in D.reads(st.value):
            dz, dy, dx = pad3(r.at.offset, 0)
            if abs(dx) >= width:
                return None
            for dz1, dy1 in shifts:
                sources.setdefault((r.grid, dz + dz1, dy + dy1), set()).add(dx)
    keys = list(sources)
    body: list[C.Stmt] = []
    if plan.constants:
        body.append(C.Decl(CONST_LONG, "base", C.BinOp(
            C.BinOp(C.Name("p"), "*", _const(n1 * n2)), "+", C.BinOp(C.Name("y"), "*",
                                                                      _const(n2)))))
    for i, (grid, dz, dy) in enumerate(keys):
        if grid == plan.state:
            ptr: C.Expr = C.Name(dz_name(dz))
            if dy:
                ptr = C.BinOp(ptr, "+", C.BinOp(C.Name("ys"), "*", _const(dy)))
        else:
            ptr = C.BinOp(C.Name("c_" + grid), "+", _plus(C.Name("base"), dz * n1 * n2 + dy * n2))
        body.append(C.Decl(IN_PTR, f"q{i}", ptr))
    vec = AVX512.type

    def at(i: int, dx: int) -> C.Expr:
        return _plus(C.BinOp(C.Name(f"q{i}"), "+", x), dx)

    def load(i: int, dx: int, lanes: C.Expr | None = None) -> C.Expr:
        if lanes is None:
            return C.Call("_mm512_loadu_pd", [at(i, dx)])
        return C.Call("_mm512_maskz_loadu_pd", [lanes, at(i, dx)])

    def mask(bits: int) -> C.Expr:
        return C.Cast(C.CType("__mmask8"), _const(bits))

    def shift(high: str, low: str, d: int) -> C.Expr:
        joined = C.Call("_mm512_alignr_epi64", [C.Call("_mm512_castpd_si512", [C.Name(high)]),
                                                C.Call("_mm512_castpd_si512", [C.Name(low)]),
                                                _const(d)])
        return C.Call("_mm512_castsi512_pd", [joined])

    def source(r: D.Read, shift1: tuple[int, int]) -> tuple[int, int]:
        """The index of the input row ``r`` reads for the point at ``shift1``, and its x."""
        dz, dy, dx = pad3(r.at.offset, 0)
        return keys.index((r.grid, dz + shift1[0], dy + shift1[1])), dx

    def shifted(shift1: tuple[int, int]) -> Callable[[D.Read], C.Expr]:
        def vector(r: D.Read) -> C.Expr:
            i, dx = source(r, shift1)
            if dx > 0:
                return shift(f"q{i}_n", f"q{i}_c", dx)
            return shift(f"q{i}_c", f"q{i}_p", width + dx) if dx < 0 else C.Name(f"q{i}_c")
        return vector

    def direct(shift1: tuple[int, int]) -> Callable[[D.Read], C.Expr]:
        return lambda r: at(*source(r, shift1))

    def point(lanes: C.Expr | None) -> list[C.Stmt]:
        """The statements of one vector of every point of the pass (each in its own scope,
        stored into ``out``, ``out1`` at x): with ``lanes``, reads are masked loads and the
        stores masked, else reads come from the registers."""
        blocks: list[C.Stmt] = []
        for n, shift1 in enumerate(shifts):
            low = VectorLowering(AVX512, direct(shift1), lanes,
                                 load=None if lanes is not None else shifted(shift1))
            dst = C.BinOp(C.Name("out1" if n else "out"), "+", x)

            def store(value: C.Expr, dst: C.Expr = dst) -> C.Stmt:
                return C.ExprStmt(C.Call("_mm512_storeu_pd", [dst, value]) if lanes is None
                                  else C.Call("_mm512_mask_storeu_pd", [dst, lanes, value]))

            blocks.append(C.Block(low.statements(stmts, store)))
        return blocks

    def step(last: bool) -> list[C.Stmt]:
        """One vector of the register path; the ``last`` loads only the lanes of the next
        vector it reads (the rest may lie beyond the row). Each input row is prefetched
        :data:`PREFETCH_AHEAD` points ahead (a hint: it never faults)."""
        out: list[C.Stmt] = []
        for i in range(len(keys) if not last else 0):
            soon = _plus(C.BinOp(C.Name(f"q{i}"), "+", x), PREFETCH_AHEAD)
            out.append(C.ExprStmt(C.Call("_mm_prefetch", [
                C.Cast(C.CType("char", 1, const=True), soon), C.Name("_MM_HINT_T0")])))
        for i, key in enumerate(keys):
            ahead = max(sources[key])
            if ahead > 0:
                out.append(C.Decl(vec.as_const(), f"q{i}_n", load(
                    i, width, mask((1 << ahead) - 1) if last else None)))
            else:
                out.append(C.Decl(vec.as_const(), f"q{i}_c", load(i, 0)))
        out += point(None)
        for i, key in enumerate(keys):
            if min(sources[key]) < 0:
                out.append(C.Assign(C.Name(f"q{i}_p"), C.Name(f"q{i}_c")))
            if max(sources[key]) > 0:
                out.append(C.Assign(C.Name(f"q{i}_c"), C.Name(f"q{i}_n")))
        return out + [C.Assign(x, _plus(x, width))]

    before: list[C.Stmt] = []
    for i, key in enumerate(keys):
        reach = -min(sources[key])
        if reach > 0:   # the lanes x - reach .. x - 1 of the vector before the first
            before.append(C.Decl(vec, f"q{i}_p", load(
                i, -width, mask((0xFF << (width - reach)) & 0xFF))))
        if max(sources[key]) > 0:
            before.append(C.Decl(vec, f"q{i}_c", load(i, 0)))
    body.append(C.Decl(C.LONG, "x", C.Name("lo")))
    body.append(C.If(C.BinOp(_plus(x, width), "<=", C.Name("hi")), C.Block(before + [
        C.While(C.BinOp(_plus(x, 2 * width), "<=", C.Name("hi")), C.Block(step(False))),
        C.If(C.BinOp(_plus(x, width), "<=", C.Name("hi")), C.Block(step(True)))])))
    # fewer than a vector of points left: one vector of masked loads of every read
    lanes = AVX512.lanes(C.BinOp(C.Name("hi"), "-", x))
    body.append(C.If(C.BinOp(x, "<", C.Name("hi")), C.Block(
        [C.Decl(C.CType("__mmask8", const=True), "m", lanes), *point(C.Name("m"))])))
    return replace(scalar, body=C.Block(body))

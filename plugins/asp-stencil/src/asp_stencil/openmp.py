"""OpenMP C platform: lowering of an optimised stencil DAST to a platform AST (``asp_core.cast``).

``lower_openmp(prog, schedule, isa)`` builds one translation unit exporting
``void <name>(double *g_out, const double *g_in, ...)`` (plain C ABI, grids in call order). Shapes
are compile-time constants (they are part of the specialisation key), so every read is
``g[p + OFFSET]`` with a constant ``OFFSET`` and the innermost loop vectorises.

Loops marked ``sequential`` (Gauss–Seidel: the output read at a neighbour) run as plain nested
loops in Python's point order. Other point loops are parallel over the outer dimension and
``simd`` in the innermost one, shaped by a :class:`~asp_stencil.schedule.Schedule`; the
platform optimiser (:mod:`asp_stencil.variants`) produces one variant per schedule.
"""

from __future__ import annotations

import re
from math import prod
from typing import TYPE_CHECKING, Any

from asp_core import cast as C
from asp_core.components import Platform, PlatformProgram

from . import dast as D
from .c_helpers import helper_functions
from .lower_c import clamped_index, param_kind, param_var, point_body, refusals_unsupported
from .scalar_types import GRID_DTYPES, ctype_of
from .schedule import Schedule
from .vector import VectorISA, VectorLowering, vector_isa, vectorizable

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["OpenMPPlatform", "lower_openmp", "function_name", "grid_param"]

CONST_LONG = C.CType("long", const=True)


def function_name(prog: D.StencilProgram) -> str:
    return "asp_stencil_" + re.sub(r"\W", "_", prog.name)


def grid_param(name: str) -> str:
    return "g_" + name


def _add(a: C.Expr, b: C.Expr) -> C.Expr:
    if isinstance(b, C.Constant) and b.value == 0:
        return a
    if isinstance(a, C.Constant) and a.value == 0:
        return b
    return C.BinOp(a, "+", b)


def _mul(a: C.Expr, k: int) -> C.Expr:
    return a if k == 1 else C.BinOp(a, "*", C.Constant(k))


def _nest(loops: list[tuple[str, C.Expr, C.Expr]], body: C.Block) -> C.For:
    """``for`` loops over ``(variable, start, stop)``, outermost first, around ``body``."""
    assert loops
    for var, lo, hi in reversed(loops):
        loop = C.For(var, lo, hi, body)
        body = C.Block([loop])
    return loop


class _Lowering:
    def __init__(self, prog: D.StencilProgram, schedule: Schedule, isa: tuple[str, ...]) -> None:
        self.prog = prog
        self.s = schedule
        self.isa = isa
        self.vector = vector_isa(isa)   # None off x86: no streaming stores
        self.shape = prog.output.shape
        self.dim = len(self.shape)
        self.strides = [prod(self.shape[d + 1:]) for d in range(self.dim)]
        self.uses_stream = False
        self.uses_intrinsics = False
        self.edge_isa: VectorISA | None = None  # set when rows end in non-temporal scalar stores
        # streaming stores are written for one float output (buffered rows: float64 or float32;
        # intrinsic rows: float64 grids only)
        self.streamable = (len(prog.outputs) == 1 and prog.output.dtype in ("<f8", "<f4"))
        # the one floating dtype of every grid, which intrinsic rows need (None: mixed/other)
        dtypes = {g.dtype for g in prog.grids}
        self.vector_dtype = dtypes.pop() if len(dtypes) == 1 and dtypes <= {"<f8", "<f4"} \
            else None
        self.out_ctype = ctype_of(prog.output.dtype)

    # -- expressions ------------------------------------------------------------------------
    def flat(self, off: tuple[int, ...]) -> int:
        return sum(o * s for o, s in zip(off, self.strides))

    def read(self, r: D.Read) -> C.Expr:
        if r.at.clamp >= 0:
            return C.Index(C.Name(grid_param(r.grid)), clamped_index(self.shape, r.at.clamp))
        return C.Index(C.Name(grid_param(r.grid)), _add(C.Name("p"), C.Constant(self.flat(r.at.offset))))

    def body(self, loop: D.PointLoop, store: Any) -> list[C.Stmt]:
        """The statements of one point (``p`` is its flat index); ``store(stmt, value)`` writes."""
        return point_body(self.prog, loop, self.read, store)

    def direct_store(self, s: D.Store, value: C.Expr) -> C.Stmt:
        return C.Assign(C.Index(C.Name(grid_param(s.grid)), C.Name("p")), value)

    def vector_row(self, loop: D.PointLoop, lo: int, hi: int) -> list[C.Stmt]:
        """One row ``k in [lo, hi)`` (row base ``r``): head up to the first 64-byte aligned
        output element, SIMD body with streaming stores, tail. With AVX-512 the head and tail
        are one masked vector each, otherwise scalar loops; a head that is not element-aligned
        runs the whole row scalar. Head and tail lines hold ghost cells of this row or the
        next, which must keep their values, so they are not streamed whole: regular stores, or
        with ``nt_edges`` non-temporal scalar stores of just their points."""
        out_name = grid_param(self.prog.output.name)
        k = C.Name("k")
        assert self.vector is not None and self.vector_dtype is not None
        isa = self.vector if self.vector_dtype == "<f8" else self.vector.single()
        width, item = isa.width, isa.itemsize
        if self.s.nt_edges:
            self.edge_isa = isa

        def edge_store(s: D.Store, value: C.Expr) -> C.Stmt:
            dst = C.BinOp(C.Name(grid_param(s.grid)), "+", C.Name("p"))
            return C.ExprStmt(C.Call("asp_stream_point", [dst, value]))

        def scalar(a: C.Expr, b: C.Expr) -> C.Stmt:
            point: list[C.Stmt] = [C.Decl(CONST_LONG, "p", C.BinOp(C.Name("r"), "+", k))]
            point += self.body(loop, edge_store if self.s.nt_edges else self.direct_store)
            return C.For("k", a, b, C.Block(point))

        def vector_point(start: C.Expr, mask: C.Expr | None, count: C.Expr | None = None
                         ) -> list[C.Stmt]:
            """One vector of points from ``start``: all lanes streamed, or the first ``count``
            (``mask``) stored."""
            vec = VectorLowering(isa, lambda r: C.BinOp(C.Name(grid_param(r.grid)), "+", _add(
                C.Name("p"), C.Constant(self.flat(r.at.offset)))), mask)
            dst = C.BinOp(C.Name(out_name), "+", C.Name("p"))

            def store(value: C.Expr) -> C.Stmt:
                if mask is None:
                    return C.ExprStmt(C.Call(isa.fn("stream"), [dst, value]))
                if self.s.nt_edges:
                    assert count is not None
                    return C.ExprStmt(C.Call("asp_stream_lanes", [dst, value, count]))
                return C.ExprStmt(C.Call(isa.fn("mask_storeu"), [dst, mask, value]))

            return [C.Decl(CONST_LONG, "p", C.BinOp(C.Name("r"), "+", start)),
                    *vec.statements(loop.body, store)]

        def masked(start: C.Expr, n: C.Expr) -> list[C.Stmt]:
            return [C.Decl(C.CType(f"__mmask{width}", const=True), "m", isa.lanes(n)),
                    *vector_point(start, C.Name("m"), n)]

        addr = C.Cast(C.CType("uintptr_t"), C.BinOp(C.Name(out_name), "+",
                                                     _add(C.Name("r"), C.Constant(lo))))
        mis = C.BinOp(C.Name("a"), "&", C.Constant(63))
        head = C.BinOp(C.BinOp(C.BinOp(C.Constant(64), "-", mis), "&", C.Constant(63)), ">>",
                       C.Constant(item.bit_length() - 1))  # bytes to elements
        kh = C.Ternary(C.BinOp(C.BinOp(C.Name("a"), "&", C.Constant(item - 1)), "!=",
                               C.Constant(0)),
                       C.Constant(hi), C.BinOp(C.Constant(lo), "+", head))
        kh_capped = C.Ternary(C.BinOp(C.Name("kh0"), "<", C.Constant(hi)), C.Name("kh0"),
                              C.Constant(hi))
        kv = C.BinOp(C.Name("kh"), "+", C.BinOp(C.BinOp(C.BinOp(C.Constant(hi), "-", C.Name("kh")),
                                                       "/", C.Constant(width)), "*",
                                              C.Constant(width)))
        n_head = C.BinOp(C.Name("kh"), "-", C.Constant(lo))
        if isa.masked:
            short = C.BinOp(C.BinOp(C.Name("kh"), ">", C.Constant(lo)), "&&",
                            C.BinOp(n_head, "<=", C.Constant(width)))
            head_stmt: C.Stmt = C.If(short, C.Block(masked(C.Constant(lo), n_head)),
                                     C.Block([scalar(C.Constant(lo), C.Name("kh"))]))
            tail_stmt: C.Stmt = C.If(C.BinOp(C.Name("kv"), "<", C.Constant(hi)), C.Block(
                masked(C.Name("kv"), C.BinOp(C.Constant(hi), "-", C.Name("kv")))))
        else:
            head_stmt = scalar(C.Constant(lo), C.Name("kh"))
            tail_stmt = scalar(C.Name("kv"), C.Constant(hi))
        prefetch: list[C.Stmt] = []
        if self.s.prefetch and self.dim >= 2:
            # the line the tail writes, some rows ahead: its read-for-ownership is under way
            # before the regular stores need it (they would stall the streaming stores)
            ahead = C.Constant(hi - 1 + self.s.prefetch * self.strides[-2])
            prefetch = [C.ExprStmt(C.Call("_mm_prefetch", [
                C.Cast(C.CType("char", 1, const=True), C.BinOp(C.Name(out_name), "+", C.BinOp(
                    C.Name("r"), "+", ahead))), C.Name("_MM_HINT_T0")]))]
        return [
            C.Decl(C.CType("uintptr_t", const=True), "a", addr),
            C.Decl(CONST_LONG, "kh0", kh),
            C.Decl(CONST_LONG, "kh", kh_capped),
            C.Decl(CONST_LONG, "kv", kv),
            *prefetch,
            head_stmt,
            C.For("k", C.Name("kh"), C.Name("kv"), C.Block(vector_point(k, None)),
                  step=C.Constant(width)),
            tail_stmt,
        ]

    # -- loops ------------------------------------------------------------------------------
    def bounds(self, loop: D.PointLoop) -> tuple[list[int], list[int]]:
        g = self.prog.grid(loop.grid).ghost_depth
        return [g] * self.dim, [n - g for n in self.shape]

    def parallel_ok(self, npoints: int) -> bool:
        return self.s.threads != 1 and npoints >= self.s.parallel_min_points

    def omp_for(self, collapse: bool = False, combined: bool = True, simd: bool = False
                ) -> C.Pragma:
        kind, _, chunk = self.s.omp_schedule.partition(",")
        clauses = [C.Clause("schedule", (kind.strip(), int(chunk)) if chunk else (kind.strip(),))]
        if collapse:
            clauses.append(C.Clause("collapse", (2,)))
        if combined and self.s.threads > 1:
            clauses.append(C.Clause("num_threads", (self.s.threads,)))
        return C.Pragma("omp", ("parallel for" if combined else "for") + (" simd" if simd else ""),
                        clauses)

    def inner_pragmas(self, simd: bool) -> list[C.Pragma]:
        # gcc accepts only one of these before a loop: an unrolled variant relies on -O3's
        # auto-vectoriser (the restrict pointers make it legal) instead of ``omp simd``
        if self.s.unroll:
            return [C.Pragma("GCC", f"unroll {int(self.s.unroll)}")]
        if simd and self.s.simd:
            return [C.Pragma("omp", "simd")]
        return []

    def row_base(self, idx: list[str]) -> C.Stmt:
        expr: C.Expr = C.Constant(0)
        for d, v in enumerate(idx):
            expr = _add(expr, _mul(C.Name(v), self.strides[d]))
        return C.Decl(CONST_LONG, "r", expr)

    def sequential(self, loop: D.PointLoop) -> list[C.Stmt]:
        lo, hi = self.bounds(loop)
        idx = [f"i{d}" for d in range(self.dim)]
        inner: list[C.Stmt] = [self.row_base(idx[:-1]),
                               C.Decl(CONST_LONG, "p", _add(C.Name("r"), C.Name(idx[-1])))]
        inner += self.body(loop, self.direct_store)
        stmt: C.Stmt = C.Block(inner)
        for d in reversed(range(self.dim)):
            stmt = C.For(idx[d], C.Constant(lo[d]), C.Constant(hi[d]),
                         stmt if isinstance(stmt, C.Block) else C.Block([stmt]))
        return [C.Comment(f"{loop.region} points, sequential (reads its own output)"), stmt]

    def interior(self, loop: D.PointLoop) -> list[C.Stmt]:
        lo, hi = self.bounds(loop)
        if any(high <= low for low, high in zip(lo, hi)):
            return [C.Comment(f"{loop.region} points: none for this shape")]
        npoints = prod(high - low for low, high in zip(lo, hi))
        par = self.parallel_ok(npoints)
        nt = self.s.nt and self.dim >= 2 and self.vector is not None and self.streamable
        vec = nt and self.s.vec and self.vector_dtype is not None and vectorizable(
            loop, self.vector_dtype)
        d_in = self.dim - 1
        idx = [f"i{d}" for d in range(self.dim)]
        out_name = grid_param(self.prog.output.name)

        # innermost loop over idx[-1]
        if vec:
            self.uses_intrinsics = True
            innermost: C.Stmt = C.Block(self.vector_row(loop, lo[d_in], hi[d_in]))
        elif nt:
            self.uses_stream = True
            length = hi[d_in] - lo[d_in]
            chunk = min(length, 2048)
            kk = C.Name("kk")

            def buf_store(_: D.Store, value: C.Expr) -> C.Stmt:
                return C.Assign(C.Index(C.Name("buf"), C.Name("k")), value)

            point: list[C.Stmt] = [
                C.Decl(CONST_LONG, "p", _add(C.Name("r"), C.BinOp(kk, "+", C.Name("k"))))]
            point += self.body(loop, buf_store)
            kn = C.Ternary(C.BinOp(C.BinOp(C.Constant(hi[d_in]), "-", kk), "<", C.Constant(chunk)),
                           C.BinOp(C.Constant(hi[d_in]), "-", kk), C.Constant(chunk))
            chunk_body = C.Block([
                C.Decl(CONST_LONG, "kn", kn),
                C.For("k", C.Constant(0), C.Name("kn"), C.Block(point),
                      pragmas=self.inner_pragmas(True)),
                C.ExprStmt(C.Call("asp_stream", [
                    C.BinOp(C.Name(out_name), "+", C.BinOp(C.Name("r"), "+", kk)),
                    C.Name("buf"), C.Name("kn")])),
            ])
            innermost = C.For("kk", C.Constant(lo[d_in]), C.Constant(hi[d_in]), chunk_body,
                              step=C.Constant(chunk))
        else:
            point = [C.Decl(CONST_LONG, "p", _add(C.Name("r"), C.Name(idx[d_in])))]
            point += self.body(loop, self.direct_store)
            pr = self.inner_pragmas(True)
            if self.dim == 1 and par:
                pr = [self.omp_for(simd=self.s.simd)]
            innermost = C.For(idx[d_in], C.Constant(lo[d_in]), C.Constant(hi[d_in]),
                              C.Block(point), pragmas=pr)
        if self.dim == 1:
            return [C.Comment(f"{loop.region} points"), C.Block([C.Decl(CONST_LONG, "r", C.Constant(0)),
                                                                 innermost])]

        # outer loops (dims 0 .. dim-2), optionally tiled along dim-2
        block = self.s.block if (self.dim >= 3 and self.s.block and
                                 hi[self.dim - 2] - lo[self.dim - 2] > self.s.block) else 0
        t = self.dim - 2
        stmt = _nest([(idx[d], C.Name("jlo"), C.Name("jhi")) if block and d == t else
                      (idx[d], C.Constant(lo[d]), C.Constant(hi[d])) for d in range(self.dim - 1)],
                     C.Block([self.row_base(idx[:-1]), innermost]))
        if block:
            ntiles = -(-(hi[t] - lo[t]) // block)
            tile_lo = C.BinOp(C.Constant(lo[t]), "+", C.BinOp(C.Name("tb"), "*", C.Constant(block)))
            tile = C.Block([
                C.Decl(CONST_LONG, "jlo", tile_lo),
                C.Decl(CONST_LONG, "jhi", C.Ternary(
                    C.BinOp(C.BinOp(C.Name("jlo"), "+", C.Constant(block)), "<", C.Constant(hi[t])),
                    C.BinOp(C.Name("jlo"), "+", C.Constant(block)), C.Constant(hi[t]))),
                stmt,
            ])
            stmt = C.For("tb", C.Constant(0), C.Constant(ntiles), tile)
        if par:
            collapse = bool(self.s.collapse and not block and self.dim >= 3)
            stmt.pragmas = [self.omp_for(collapse, combined=not nt)]
        if nt:
            region: list[C.Stmt] = [] if vec else [
                C.Decl(self.out_ctype, "buf", dims=(min(hi[d_in] - lo[d_in], 2048),), align=64)]
            region += [stmt, C.ExprStmt(C.Call("_mm_sfence", []))]
            head = []
            if par:
                threads = [C.Clause("num_threads", (self.s.threads,))] if self.s.threads > 1 else []
                head = [C.Pragma("omp", "parallel", threads)]
            return [C.Comment(f"{loop.region} points, streaming stores"), *head, C.Block(region)]
        return [C.Comment(f"{loop.region} points"), stmt]

    def border(self, loop: D.PointLoop, parallel: bool = True) -> list[C.Stmt]:
        """The border points in Python's order (row by row, each row whole or its two ends);
        rows split over threads when ``parallel`` (not for a loop that reads points it writes:
        :attr:`~asp_stencil.dast.PointLoop.sequential`)."""
        g = self.prog.grid(loop.grid).ghost_depth
        n = self.shape
        idx = [f"i{d}" for d in range(self.dim)]
        last = n[-1]

        def inner(a: int, b: int) -> C.For:
            point: list[C.Stmt] = [C.Decl(CONST_LONG, "p", _add(C.Name("r"), C.Name(idx[-1])))]
            point += self.body(loop, self.direct_store)
            return C.For(idx[-1], C.Constant(a), C.Constant(b), C.Block(point))

        full = inner(0, last)
        split: list[C.Stmt] = [inner(0, min(g, last)), inner(max(last - g, g), last)]
        if self.dim == 1:
            return [C.Comment("border points"), C.Block([C.Decl(CONST_LONG, "r", C.Constant(0)),
                                                         *split])]
        cond: C.Expr | None = None
        for d in range(self.dim - 1):
            t = C.BinOp(C.BinOp(C.Name(idx[d]), "<", C.Constant(g)), "||",
                        C.BinOp(C.Name(idx[d]), ">=", C.Constant(n[d] - g)))
            cond = t if cond is None else C.BinOp(cond, "||", t)
        assert cond is not None
        stmt = _nest([(idx[d], C.Constant(0), C.Constant(n[d])) for d in range(self.dim - 1)],
                     C.Block([self.row_base(idx[:-1]),
                              C.If(cond, C.Block([full]), C.Block(split))]))
        if parallel and self.parallel_ok(prod(n) - prod(max(0, k - 2 * g) for k in n)) \
                and n[0] >= 4:
            stmt.pragmas = [self.omp_for()]
        return [C.Comment("border points"), stmt]

    def stream_helper(self) -> C.FunctionDef:
        assert self.vector is not None
        # a vector is 64·width bits: width doubles or 2·width floats
        isa = self.vector.single() if self.out_ctype.base == "float" else self.vector
        width = isa.width
        store, load = isa.fn("stream"), isa.fn("loadu")
        i, n, dst, src = C.Name("i"), C.Name("n"), C.Name("dst"), C.Name("src")
        if self.s.nt_edges:
            self.edge_isa = isa

        def copy(at: C.Expr) -> C.Stmt:
            # the unaligned ends: with ``nt_edges`` non-temporal too (see :func:`edge_helpers`)
            if self.s.nt_edges:
                return C.ExprStmt(C.Call("asp_stream_point", [C.BinOp(dst, "+", at),
                                                              C.Index(src, at)]))
            return C.Assign(C.Index(dst, at), C.Index(src, at))

        misaligned = C.BinOp(C.BinOp(C.Cast(C.CType("uintptr_t"), C.BinOp(dst, "+", i)), "&",
                                     C.Constant(self.vector.width * 8 - 1)), "!=", C.Constant(0))
        body = [
            C.Decl(C.LONG, "i", C.Constant(0)),
            C.While(C.BinOp(C.BinOp(i, "<", n), "&&", misaligned),
                    C.Block([copy(i), C.Assign(i, C.BinOp(i, "+", C.Constant(1)))])),
            C.Decl(CONST_LONG, "head", i),
            C.Decl(CONST_LONG, "vend", C.BinOp(C.Name("head"), "+", C.BinOp(
                C.BinOp(C.BinOp(n, "-", C.Name("head")), "/", C.Constant(width)), "*",
                C.Constant(width)))),
            C.For("j", C.Name("head"), C.Name("vend"), C.Block([C.ExprStmt(C.Call(store, [
                C.BinOp(dst, "+", C.Name("j")),
                C.Call(load, [C.BinOp(src, "+", C.Name("j"))])]))]), step=C.Constant(width)),
            C.For("j", C.Name("vend"), n, C.Block([copy(C.Name("j"))])),
        ]
        return C.FunctionDef("asp_stream", [
            C.Param(self.out_ctype.ptr(restrict=True), "dst"),
            C.Param(C.CType(self.out_ctype.base, 1, True, True), "src"), C.Param(C.LONG, "n")],
            C.Block(body), extern_c=False, storage=("static", "inline"))

    # -- the translation unit -----------------------------------------------------------------
    def module(self) -> C.Module:
        stmts: list[C.Stmt] = []
        for s in self.prog.body:
            if not isinstance(s, D.PointLoop):
                continue
            if not any(isinstance(n, D.Store) for n in D.expr_nodes(s)):
                # no observable effect (its locals are not read after it); the buffered
                # streaming rows would otherwise stream a buffer nothing wrote
                stmts.append(C.Comment(f"{s.region} points: nothing stored"))
                continue
            if s.region == "border":   # in Python's point order: one thread when sequential
                stmts += self.border(s, parallel=not s.sequential)
            elif s.sequential:
                stmts += self.sequential(s)
            else:
                stmts += self.interior(s)
        params = []
        for g in self.prog.grids:
            base = ctype_of(g.dtype).base
            t = C.CType(base, 1, restrict=True) if g.output else C.CType(base, 1, True, True)
            params.append(C.Param(t, grid_param(g.name)))
        params += [C.Param(ctype_of(param_kind(p)), param_var(p.name))
                   for p in D.params_of(self.prog)]
        fn = C.FunctionDef(function_name(self.prog), params, C.Block(stmts))
        head: list[Any] = [C.Include("math.h"), C.Include("stdint.h")]
        if self.uses_stream or self.uses_intrinsics:
            head.append(C.Include("immintrin.h"))
        head += helper_functions(C.DOUBLE)
        stream = [self.stream_helper()] if self.uses_stream else []
        if self.edge_isa is not None:  # used by the rows and by ``asp_stream``
            head += edge_helpers(self.edge_isa)
        return C.Module([*head, *stream, fn])


def edge_helpers(isa: VectorISA) -> list[C.FunctionDef]:
    """``asp_stream_point(dst, v)``: one element stored with ``movnti`` (SSE2, so every x86-64),
    its bits moved through an SSE register; with AVX-512 also ``asp_stream_lanes(dst, v, n)``:
    the first ``n`` lanes of ``v`` stored so. Consecutive such stores fill one write-combining
    buffer; a partial line goes to memory with byte enables, without a read for ownership."""
    single = not isa.double
    scalar = isa.scalar
    bits = C.CType("int" if single else "long long")
    stream = "_mm_stream_si32" if single else "_mm_stream_si64"
    dst, v = C.Name("dst"), C.Name("v")
    as_int = C.Call("_mm_cvtsi128_si32" if single else "_mm_cvtsi128_si64", [
        C.Call("_mm_castps_si128" if single else "_mm_castpd_si128", [
            C.Call("_mm_set_ss" if single else "_mm_set_sd", [v])])])
    static = ("static", "inline")
    out = [C.FunctionDef("asp_stream_point", [C.Param(scalar.ptr(), "dst"), C.Param(scalar, "v")],
                         C.Block([C.ExprStmt(C.Call(stream, [C.Cast(bits.ptr(), dst), as_int]))]),
                         extern_c=False, storage=static)]
    if isa.masked:
        t, n, lane = C.Name("t"), C.Name("n"), C.Name("l")
        body = [
            C.Decl(bits, "t", dims=(isa.width,), align=64),
            C.ExprStmt(C.Call("_mm512_store_si512", [C.Cast(C.CType("void", 1), t), C.Call(
                "_mm512_castps_si512" if single else "_mm512_castpd_si512", [v])])),
            C.For("l", C.Constant(0), n, C.Block([C.ExprStmt(C.Call(stream, [
                C.BinOp(C.Cast(bits.ptr(), dst), "+", lane), C.Index(t, lane)]))])),
        ]
        out.append(C.FunctionDef("asp_stream_lanes", [
            C.Param(scalar.ptr(), "dst"), C.Param(isa.type, "v"), C.Param(C.LONG, "n")],
            C.Block(body), extern_c=False, storage=static))
    return out


def lower_openmp(prog: D.StencilProgram, schedule: Schedule | None = None,
                 isa: tuple[str, ...] = ()) -> C.Module:
    """The platform AST of ``prog`` under ``schedule`` (default: no streaming, no tiling)."""
    return _Lowering(prog, schedule or Schedule(), isa).module()


class OpenMPPlatform(Platform):
    """Phase 3 component ``openmp`` (the default platform)."""

    name = "openmp"
    compiler = "c"

    def check(self, dast: D.StencilProgram, ctx: SpecializationContext) -> str | None:
        bad = {g.dtype for g in dast.grids} - set(GRID_DTYPES)
        if bad:
            return f"grids of dtype {', '.join(sorted(bad))} are not compiled"
        from asp_core.toolchain import compiler_unavailable_reason

        return D.unlowered_reason(dast, params=True) or compiler_unavailable_reason("c")

    def lower(self, dast: D.StencilProgram, ctx: SpecializationContext) -> PlatformProgram:
        isa = tuple(ctx.hardware.isa)
        schedule = Schedule()
        with refusals_unsupported(ctx):
            module = lower_openmp(dast, schedule, isa)
        return PlatformProgram("openmp", module, {"dast": dast, "isa": isa, "schedule": schedule,
                                                  "function": function_name(dast)})

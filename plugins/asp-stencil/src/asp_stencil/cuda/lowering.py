"""Lowering of an optimised stencil DAST to CUDA C (``asp_core.cast`` nodes, ``print_cuda``).

One translation unit holds every variant of a kernel, so a single ``nvcc`` run (about 1.5 s)
serves the whole autotuning search. For each variant and each point loop there is a
``__global__`` kernel; each variant has an ``extern "C"`` host launcher

``int asp_cuda_<name>_<variant>(const double *g_in..., double *g_out, long n0[, n1[, n2]])``

taking device pointers and the grid's sizes (checked against the sizes the code was specialised
for: ``cudaErrorInvalidValue`` on a mismatch) that launches the point loops in program order on
the default stream and returns ``cudaGetLastError()``; and an ``..._iterate`` launcher running
``steps`` Jacobi sweeps on the device, swapping the output with the last input after each.

Variants (see :class:`CudaVariant`):

* ``direct``: one thread per point, a 1-D/2-D/3-D thread block whose ``x`` runs along the
  contiguous axis (coalesced), reads through the read-only cache (``__ldg``);
* ``shared``: the block first stages its tile plus halo of every input grid read at a neighbour
  into shared memory (cooperative, coalesced loads), synchronises, then computes from it; not
  proposed for a block whose tiles exceed 48 KiB of static shared memory.

A grid needing more than 65535 blocks along y or z (CUDA's limit) is launched in chunks, each
kernel taking its chunk's block offsets ``bo1``/``bo2``.

Expressions are lowered by the shared :class:`~asp_stencil.lower_c.ExprLowering` with
``__device__`` helpers, so each point evaluates the DAST's operations in the same order; with
``--fmad=false`` the arithmetic (``+ - * /``, ``sqrt``) is IEEE-exact like the CPU's, while CUDA's
``exp/log/sin/cos/pow`` may differ from glibc's in the last bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from asp_core import cast as C

from .. import dast as D
from ..c_helpers import helper_functions
from ..lower_c import clamped_index, point_body
from ..scalar_types import GRID_DTYPES, ctype_of, precision

__all__ = ["CudaVariant", "lower_cuda", "launcher_name", "iterate_name", "default_variants",
           "unsupported_reason", "kernel_symbol"]

CONST_LONG = C.CType("long", const=True)
AXES = ("x", "y", "z")
#: CUDA's launch limits: blocks along a grid's y and z, and a kernel's static shared memory
MAX_GRID_YZ = 65535
MAX_STATIC_SHARED = 48 * 1024


@dataclass(frozen=True)
class CudaVariant:
    """Tuning point of the CUDA lowering: strategy and thread-block shape (x fastest)."""

    strategy: str                 # "direct" | "shared"
    block: tuple[int, ...]        # (bx[, by[, bz]]): x along the contiguous axis

    @property
    def label(self) -> str:
        return f"{self.strategy}_{'x'.join(str(b) for b in self.block)}"

    def params(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "block": list(self.block)}


def kernel_symbol(prog: D.StencilProgram) -> str:
    """The prefix of every symbol of ``prog``'s translation unit: ASCII only, because nvcc
    refuses a universal character in the name of a ``__global__`` function ("Universal
    character is not allowed in device entity name"), and Python's ``\\W`` keeps ``ä`` of a
    class ``Wärme``. Each other character becomes its code point (``Wärme`` → ``W_e4_rme``)."""
    return "asp_cuda_" + re.sub(r"[^0-9A-Za-z_]",
                                lambda m: f"_{ord(m.group()):x}_" if ord(m.group()) > 127
                                else "_", prog.name)


def launcher_name(prog: D.StencilProgram, v: CudaVariant) -> str:
    return f"{kernel_symbol(prog)}_{v.label}"


def iterate_name(prog: D.StencilProgram, v: CudaVariant) -> str:
    return launcher_name(prog, v) + "_iterate"


def default_variants(prog: D.StencilProgram) -> list[CudaVariant]:
    """Block shapes worth timing, the usual best first (x a multiple of the 32-thread warp)."""
    dim = prog.dim
    if dim == 1:
        blocks: list[tuple[int, ...]] = [(256,), (128,), (512,)]
        shared: list[tuple[int, ...]] = [(256,)]
    elif dim == 2:
        blocks = [(32, 8), (64, 4), (128, 2)]
        shared = [(32, 8), (32, 16)]
    else:
        blocks = [(32, 4, 2), (64, 4, 1), (32, 8, 1)]
        shared = [(32, 4, 4), (32, 8, 2)]
    out = [CudaVariant("direct", b) for b in blocks]
    if any(_halo(prog, loop) for loop in _loops(prog) if loop.region == "interior"):
        # a tile that does not fit in a block's static shared memory would fail ptxas, and
        # with it every variant of the translation unit
        low = _CudaLowering(prog)
        out += [CudaVariant("shared", b) for b in shared
                if low.shared_bytes(b) <= MAX_STATIC_SHARED]
    return out


def _loops(prog: D.StencilProgram) -> list[D.PointLoop]:
    return [s for s in prog.body if isinstance(s, D.PointLoop)]


def _halo(prog: D.StencilProgram, loop: D.PointLoop) -> dict[str, tuple[int, ...]]:
    """Per input grid read at a neighbour in ``loop``: the halo width along each axis."""
    out: dict[str, list[int]] = {}
    for s in loop.body:
        assert isinstance(s, (D.Assign, D.Store))  # point loops are unrolled before lowering
        for r in D.reads(s.value):
            if prog.grid(r.grid).output or not any(r.at.offset):
                continue
            h = out.setdefault(r.grid, [0] * prog.dim)
            for d, o in enumerate(r.at.offset):
                h[d] = max(h[d], abs(o))
    return {g: tuple(h) for g, h in out.items()}


def unsupported_reason(prog: D.StencilProgram) -> str | None:
    """Why this DAST cannot be lowered to CUDA (``None``: it can)."""
    if prog.dim not in (1, 2, 3):
        return f"{prog.dim}-D grids (the CUDA backend handles 1-3 dimensions)"
    bad = {g.dtype for g in prog.grids} - set(GRID_DTYPES)
    if bad:
        return f"grids of dtype {', '.join(sorted(bad))} are not generated for CUDA"
    reason = D.unlowered_reason(prog)
    if reason:
        return reason
    for s in prog.body:
        if isinstance(s, D.PointLoop):
            if s.sequential:
                return (f"the {s.region} loop reads a grid it writes at another point "
                        "(Gauss-Seidel, or a border loop's nearest interior point of a "
                        "shallower grid): its points must run in order, which a GPU cannot do")
            if s.region == "border" and any(any(r.at.offset) for r in D.reads(s)):
                return "a border loop reads a neighbour"
        elif not isinstance(s, D.Assign):
            return f"top-level {type(s).__name__}"
    return None


def _grid_ptr(g: D.GridParam) -> C.CType:
    """``const T *__restrict__`` for a grid the kernel only reads, ``T *__restrict__`` else."""
    base = ctype_of(g.dtype).base
    return C.CType(base, 1, restrict=True) if g.output else C.CType(base, 1, True, True)


def _c(v: int) -> C.Expr:
    return C.Constant(int(v))


def _add(a: C.Expr, k: int | C.Expr) -> C.Expr:
    if isinstance(k, int):
        return a if k == 0 else C.BinOp(a, "+", _c(k))
    return C.BinOp(a, "+", k)


def _mul(a: C.Expr, k: int) -> C.Expr:
    return a if k == 1 else C.BinOp(a, "*", _c(k))


def _tid(axis: int) -> C.Expr:
    return C.Member(C.Name("threadIdx"), AXES[axis])


def _block_index(axis: int) -> C.Expr:
    """The block's index along ``axis`` in the whole grid, as a long: ``blockIdx`` plus the
    launch's chunk offset ``bo<axis>`` along y and z."""
    idx: C.Expr = C.Cast(C.LONG, C.Member(C.Name("blockIdx"), AXES[axis]))
    return idx if axis == 0 else C.BinOp(idx, "+", C.Name(f"bo{axis}"))


def _or(terms: list[C.Expr]) -> C.Expr:
    acc = terms[0]
    for t in terms[1:]:
        acc = C.BinOp(acc, "||", t)
    return acc


class _CudaLowering:
    def __init__(self, prog: D.StencilProgram) -> None:
        self.prog = prog
        self.shape = prog.output.shape
        self.dim = len(self.shape)
        self.strides = [prod(self.shape[d + 1:]) for d in range(self.dim)]

    def flat(self, off: tuple[int, ...]) -> int:
        return sum(o * s for o, s in zip(off, self.strides))

    # -- grid indices: array axis d (0 = outermost) runs along thread axis dim-1-d ------------
    def _axis(self, d: int) -> int:
        return self.dim - 1 - d

    def _params(self) -> list[C.Param]:
        return [C.Param(_grid_ptr(g), "g_" + g.name) for g in self.prog.grids]

    def _point_body(self, loop: D.PointLoop, read: Any) -> list[C.Stmt]:
        def store(s: D.Store, value: C.Expr) -> C.Stmt:
            return C.Assign(C.Index(C.Name("g_" + s.grid), C.Name("p")), value)

        return point_body(self.prog, loop, read, store)

    def _global_read(self, r: D.Read) -> C.Expr:
        ptr = C.Name("g_" + r.grid)
        idx = (clamped_index(self.shape, r.at.clamp) if r.at.clamp >= 0
               else _add(C.Name("p"), self.flat(r.at.offset)))
        if self.prog.grid(r.grid).output:
            return C.Index(ptr, idx)
        return C.Call("__ldg", [C.BinOp(ptr, "+", idx)])

    def _coords(self, lo: list[int], block: tuple[int, ...]) -> list[C.Stmt]:
        out: list[C.Stmt] = []
        for d in range(self.dim):
            a = self._axis(d)
            bsz = block[a] if a < len(block) else 1
            out.append(C.Decl(CONST_LONG, f"i{d}", _add(C.BinOp(
                C.BinOp(_block_index(a), "*", _c(bsz)), "+", _tid(a)), lo[d])))
        return out

    def _kernel_params(self) -> list[C.Param]:
        """The grids, then the block offsets along y and z of a launch split in chunks (a
        grid taller than :data:`MAX_GRID_YZ` blocks runs as several launches)."""
        return self._params() + [C.Param(C.LONG, f"bo{a}") for a in range(1, self.dim)]

    def shared_bytes(self, block: tuple[int, ...]) -> int:
        """Static shared memory of the ``shared`` strategy's largest kernel with ``block``."""
        return max((sum(prod(self._tile_dims(block, h)) * np.dtype(precision(
            self.prog.grid(g).dtype)).itemsize for g, h in _halo(self.prog, loop).items())
            for loop in _loops(self.prog) if loop.region == "interior"), default=0)

    def _flat_p(self) -> C.Stmt:
        expr: C.Expr = _c(0)
        for d in range(self.dim):
            term = _mul(C.Name(f"i{d}"), self.strides[d])
            expr = term if (isinstance(expr, C.Constant) and expr.value == 0) else \
                C.BinOp(expr, "+", term)
        return C.Decl(CONST_LONG, "p", expr)

    # -- kernels -------------------------------------------------------------------------------
    def interior_kernel(self, name: str, loop: D.PointLoop, v: CudaVariant
                        ) -> tuple[C.FunctionDef, list[int], list[int]]:
        g = self.prog.grid(loop.grid).ghost_depth
        lo = [g] * self.dim
        hi = [n - g for n in self.shape]
        block = v.block
        body: list[C.Stmt] = self._coords(lo, block)
        outside = _or([C.BinOp(C.Name(f"i{d}"), ">=", _c(hi[d])) for d in range(self.dim)])
        read = self._global_read
        halos = _halo(self.prog, loop) if v.strategy == "shared" else {}
        if halos:
            body += self._stage(lo, hi, block, halos)
            tile = {gname: self._tile_dims(block, h) for gname, h in halos.items()}

            def read(r: D.Read) -> C.Expr:  # noqa: F811 - shared-memory reads
                if r.grid not in halos:
                    return self._global_read(r)
                h, dims = halos[r.grid], tile[r.grid]
                idx: C.Expr = _c(0)
                for d in range(self.dim):
                    a = self._axis(d)
                    local = _add(_tid(a), h[d] + r.at.offset[d])
                    stride = prod(dims[d + 1:])
                    term = _mul(C.Cast(C.LONG, local) if stride != 1 else local, stride)
                    idx = term if (isinstance(idx, C.Constant) and idx.value == 0) else \
                        C.BinOp(idx, "+", term)
                return C.Index(C.Name("sh_" + r.grid), idx)
        body.append(C.If(outside, C.Block([C.Return()])))
        body.append(self._flat_p())
        body += self._point_body(loop, read)
        fn = C.FunctionDef(name, self._kernel_params(), C.Block(body), extern_c=False,
                           qualifier="__global__")
        return fn, lo, hi

    def _tile_dims(self, block: tuple[int, ...], h: tuple[int, ...]) -> list[int]:
        """Shared tile extent per array axis (block along that axis plus both halos)."""
        return [(block[self._axis(d)] if self._axis(d) < len(block) else 1) + 2 * h[d]
                for d in range(self.dim)]

    def _stage(self, lo: list[int], hi: list[int], block: tuple[int, ...],
               halos: dict[str, tuple[int, ...]]) -> list[C.Stmt]:
        """Cooperative load of each haloed input's tile into shared memory, then a barrier."""
        nthreads = prod(block)
        tid: C.Expr = _tid(0)
        if len(block) > 1:
            tid = C.BinOp(tid, "+", C.BinOp(_c(block[0]), "*", _tid(1)))
        if len(block) > 2:
            tid = C.BinOp(tid, "+", C.BinOp(_c(block[0] * block[1]), "*", _tid(2)))
        out: list[C.Stmt] = [C.Decl(C.CType("int", const=True), "tid", tid)]
        for gname, h in halos.items():
            dims = self._tile_dims(block, h)
            vol = prod(dims)
            shared_t = C.CType(ctype_of(self.prog.grid(gname).dtype).base, qualifiers=("__shared__",))
            out.append(C.Decl(shared_t, "sh_" + gname, dims=(vol,)))
            loop_body: list[C.Stmt] = []
            rest: C.Expr = C.Name("t")
            conds: list[C.Expr] = []
            gidx: C.Expr = _c(0)
            for d in reversed(range(self.dim)):
                a = self._axis(d)
                bsz = block[a] if a < len(block) else 1
                if d == 0:
                    local: C.Expr = rest
                else:
                    local = C.BinOp(rest, "%", _c(dims[d]))
                loop_body.append(C.Decl(CONST_LONG, f"q{d}", C.BinOp(_add(C.BinOp(
                    _block_index(a), "*", _c(bsz)), lo[d] - h[d]), "+", local)))
                if d:
                    rest = C.BinOp(rest, "/", _c(dims[d]))
                conds.append(C.BinOp(C.Name(f"q{d}"), "<", _c(self.shape[d])))
                term = _mul(C.Name(f"q{d}"), self.strides[d])
                gidx = term if (isinstance(gidx, C.Constant) and gidx.value == 0) else \
                    C.BinOp(gidx, "+", term)
            cond = conds[0]
            for c in conds[1:]:
                cond = C.BinOp(cond, "&&", c)
            loop_body.append(C.If(cond, C.Block([C.Assign(
                C.Index(C.Name("sh_" + gname), C.Name("t")),
                C.Call("__ldg", [C.BinOp(C.Name("g_" + gname), "+", gidx)]))])))
            out.append(C.For("t", C.Name("tid"), _c(vol), C.Block(loop_body),
                             step=_c(nthreads), ctype=C.INT))
        out.append(C.ExprStmt(C.Call("__syncthreads", [])))
        return out

    def border_kernel(self, name: str, loop: D.PointLoop, v: CudaVariant
                      ) -> tuple[C.FunctionDef, list[int], list[int]]:
        g = self.prog.grid(loop.grid).ghost_depth
        lo = [0] * self.dim
        hi = list(self.shape)
        body = self._coords(lo, v.block)
        outside = _or([C.BinOp(C.Name(f"i{d}"), ">=", _c(hi[d])) for d in range(self.dim)])
        interior = None
        for d in range(self.dim):
            t = C.BinOp(C.BinOp(C.Name(f"i{d}"), ">=", _c(g)), "&&",
                        C.BinOp(C.Name(f"i{d}"), "<", _c(self.shape[d] - g)))
            interior = t if interior is None else C.BinOp(interior, "&&", t)
        assert interior is not None
        body.append(C.If(C.BinOp(outside, "||", interior), C.Block([C.Return()])))
        body.append(self._flat_p())
        body += self._point_body(loop, self._global_read)
        fn = C.FunctionDef(name, self._kernel_params(), C.Block(body), extern_c=False,
                           qualifier="__global__")
        return fn, lo, hi

    # -- host side -----------------------------------------------------------------------------
    def launches(self, v: CudaVariant, kernels: list[tuple[str, list[int], list[int]]],
                 args: list[C.Expr]) -> list[C.Stmt]:
        out: list[C.Stmt] = []
        for name, lo, hi in kernels:
            if any(high <= low for low, high in zip(lo, hi)):
                out.append(C.Comment(f"{name}: no points for this shape"))
                continue
            blocks = []
            for a in range(len(v.block)):
                d = self.dim - 1 - a
                extent = hi[d] - lo[d] if d >= 0 else 1
                blocks.append(-(-extent // v.block[a]))
            grid: list[C.Expr] = [_c(blocks[0])]
            offsets: list[C.Expr] = []
            chunked = []
            for a in range(1, len(blocks)):
                if a >= self.dim:   # a block axis the grid does not have
                    grid.append(_c(blocks[a]))
                elif blocks[a] <= MAX_GRID_YZ:
                    grid.append(_c(blocks[a]))
                    offsets.append(_c(0))
                else:   # chunks of MAX_GRID_YZ blocks, the last one shorter
                    left = C.BinOp(_c(blocks[a]), "-", C.Name(f"bo{a}"))
                    grid.append(C.Ternary(C.BinOp(left, "<", _c(MAX_GRID_YZ)), left,
                                          _c(MAX_GRID_YZ)))
                    offsets.append(C.Name(f"bo{a}"))
                    chunked.append(a)
            launch: C.Stmt = C.CudaLaunch(name, grid, [_c(b) for b in v.block],
                                          [*args, *offsets])
            for a in chunked:
                launch = C.For(f"bo{a}", _c(0), _c(blocks[a]), C.Block([launch]),
                               step=_c(MAX_GRID_YZ))
            out.append(launch)
        return out

    def size_check(self) -> C.Stmt:
        bad = _or([C.BinOp(C.Name(f"n{d}"), "!=", _c(n)) for d, n in enumerate(self.shape)])
        return C.If(bad, C.Block([C.Return(C.Name("cudaErrorInvalidValue"))]))

    def module(self, variants: list[CudaVariant]) -> C.Module:
        items: list[Any] = [C.Include("math.h"), C.Include("stdint.h"), C.Include("cuda_runtime.h")]
        items += helper_functions(C.DOUBLE, storage=("static", "inline"), qualifier="__device__")
        sizes = [C.Param(C.LONG, f"n{d}") for d in range(self.dim)]
        names = [C.Name("g_" + g.name) for g in self.prog.grids]
        for v in variants:
            kernels = []
            for i, loop in enumerate(_loops(self.prog)):
                kname = f"{launcher_name(self.prog, v)}_L{i}"
                make = self.border_kernel if loop.region == "border" else self.interior_kernel
                fn, lo, hi = make(kname, loop, v)
                items.append(fn)
                kernels.append((kname, lo, hi))
            body = [self.size_check(), *self.launches(v, kernels, list(names)),
                    C.Return(C.Cast(C.INT, C.Call("cudaGetLastError", [])))]
            items.append(C.FunctionDef(launcher_name(self.prog, v), self._params() + sizes,
                                       C.Block(body), ret=C.INT))
            grids = self.prog.grids
            if len(grids) >= 2 and grids[-2].dtype == grids[-1].dtype \
                    and len(self.prog.outputs) == 1:  # output and last input swappable
                items.append(self.iterate_launcher(v, kernels, sizes))
        return C.Module(items)

    def iterate_launcher(self, v: CudaVariant, kernels: list, sizes: list[C.Param]
                         ) -> C.FunctionDef:
        """``steps`` sweeps on the device with the Jacobi swap of output and last input."""
        grids = self.prog.grids
        state, out = "g_" + grids[-2].name, "g_" + grids[-1].name
        params = [C.Param(_grid_ptr(g), "g_" + g.name) for g in grids[:-2]]
        t = ctype_of(grids[-1].dtype)
        params += [C.Param(t.ptr(), "x0"), C.Param(t.ptr(), "x1"),
                   C.Param(C.LONG, "steps")] + sizes
        args: list[C.Expr] = [C.Name("g_" + g.name) for g in grids[:-2]]
        args += [C.Name(state), C.Name(out)]
        step: list[C.Stmt] = [C.Decl(C.CType(t.base, 1, True, True), state, C.Ternary(C.BinOp(C.BinOp(C.Name("s"), "%", _c(2)), "==",
                                                         _c(0)), C.Name("x0"), C.Name("x1"))),
                C.Decl(t.ptr(restrict=True), out, C.Ternary(C.BinOp(C.BinOp(C.Name("s"), "%", _c(2)), "==",
                                                        _c(0)), C.Name("x1"), C.Name("x0")))]
        step += self.launches(v, kernels, args)
        step.append(C.Decl(C.CType("cudaError_t", const=True), "err",
                           C.Call("cudaGetLastError", [])))
        step.append(C.If(C.BinOp(C.Name("err"), "!=", C.Name("cudaSuccess")),
                         C.Block([C.Return(C.Cast(C.INT, C.Name("err")))])))
        body = [self.size_check(), C.For("s", _c(0), C.Name("steps"), C.Block(step)),
                C.Return(_c(0))]
        return C.FunctionDef(iterate_name(self.prog, v), params, C.Block(body), ret=C.INT)


def lower_cuda(prog: D.StencilProgram, variants: list[CudaVariant] | None = None) -> C.Module:
    """The CUDA platform AST of ``prog`` holding every variant in ``variants``."""
    reason = unsupported_reason(prog)
    if reason:
        raise ValueError(f"cannot lower {prog.name} to CUDA: {reason}")
    return _CudaLowering(prog).module(variants or default_variants(prog))

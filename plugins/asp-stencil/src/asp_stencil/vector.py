"""x86 SIMD lowering of straight-line arithmetic, for rows written with streaming stores.

gcc ignores ``#pragma omp simd nontemporal(...)``, so the plain streaming variant computes a row
into a buffer and copies it out with streaming stores. For kernels whose points are pure
arithmetic (``+ - * /``, unary minus, literals, locals and grid reads: the Laplacian, heat,
divergence, ...) this module writes the row loop with intrinsics instead, so each vector of
results goes straight from registers to memory. Every DAST operation becomes one IEEE operation
per lane with the same operands in the same order (no FMA), so results stay bitwise equal to the
scalar code and to Python; negation flips the sign bit, as Python's ``-x`` does.

The vector width follows the machine the code is compiled for (the hardware query's ISA, the
same machine ``-march=native`` targets): AVX-512 (8 doubles), AVX (4) or SSE2 (2, every x86-64),
and twice as many floats for float32 kernels (:meth:`VectorISA.single`), whose operations are
float32 IEEE operations like the scalar code's.
Other architectures have no streaming-store intrinsics here: :func:`vector_isa` returns None and
the streaming schedules are not proposed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from asp_core import cast as C

from . import dast as D
from .lower_c import c_var, param_var

__all__ = ["VectorISA", "vector_isa", "vectorizable", "VectorLowering"]

_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
_SIGN_BIT = C.BinOp(C.UnaryOp("-", C.Constant(2**63 - 1)), "-", C.Constant(1))  # INT64_MIN
_SIGN_BIT32 = C.BinOp(C.UnaryOp("-", C.Constant(2**31 - 1)), "-", C.Constant(1))  # INT32_MIN


@dataclass(frozen=True)
class VectorISA:
    """One x86 vector extension for one element type: its vector type, lane count and
    intrinsic prefix (doubles unless :meth:`single` made it the float version)."""

    name: str
    width: int          # elements (lanes) per vector
    prefix: str         # "_mm512", "_mm256", "_mm"
    double: bool = True

    @property
    def itemsize(self) -> int:
        return 8 if self.double else 4

    @property
    def type(self) -> C.CType:
        return C.CType(f"__m{self.width * self.itemsize * 8}{'d' if self.double else ''}")

    @property
    def scalar(self) -> C.CType:
        return C.DOUBLE if self.double else C.FLOAT

    def fn(self, op: str) -> str:
        return f"{self.prefix}_{op}_{'pd' if self.double else 'ps'}"

    @property
    def masked(self) -> bool:
        """Whether loads and stores take a lane mask (AVX-512), so a row's partial vectors at
        its ends need no scalar loop."""
        return self.prefix == "_mm512"

    def lanes(self, n: C.Expr) -> C.Expr:
        """The mask of the first ``n`` lanes (``0 <= n <= width``)."""
        ones = C.BinOp(C.BinOp(C.Constant(1), "<<", n), "-", C.Constant(1))
        return C.Cast(C.CType(f"__mmask{self.width}"), ones)

    def single(self) -> VectorISA:
        """The float32 version: the same registers hold twice as many lanes."""
        return replace(self, width=self.width * 2 if self.double else self.width, double=False)


AVX512 = VectorISA("avx512f", 8, "_mm512")
AVX = VectorISA("avx", 4, "_mm256")
SSE2 = VectorISA("sse2", 2, "_mm")


def vector_isa(isa: tuple[str, ...]) -> VectorISA | None:
    """The widest vector extension in ``isa`` (hardware query feature names), None off x86."""
    if "avx512f" in isa:
        return AVX512
    if "avx" in isa or "avx2" in isa:
        return AVX
    if "sse4_2" in isa or "sse2" in isa:
        return SSE2
    return None


def vectorizable(loop: D.PointLoop, dtype: str = "<f8") -> bool:
    """Whether every statement of ``loop`` is arithmetic this module can lower in rows of
    ``dtype`` (every grid of that float dtype)."""
    # float32 scalars meeting each other (a float32 parameter, or one with a float32 constant)
    # compute in float32 in NumPy, in double in a float64 row's vectors
    params = any(isinstance(n, D.Param) for s in loop.body for n in D.expr_nodes(s))
    for stmt in loop.body:
        if not isinstance(stmt, (D.Assign, D.Store)):
            return False
        for n in D.expr_nodes(stmt.value):
            if isinstance(n, D.Const):
                if not _row_constant(n.value, dtype) or (
                        params and dtype == "<f8" and isinstance(n.value, np.float32)):
                    return False
            elif isinstance(n, D.Param):   # a Python float is weak, as a constant is
                if n.kind not in ("", dtype):
                    return False
            elif isinstance(n, D.BinOp):
                if n.op not in _OPS:
                    return False
            elif isinstance(n, D.UnaryOp):
                if n.op not in ("-", "+"):
                    return False
            elif isinstance(n, D.Read):
                if n.at.var is not None:
                    return False
            elif not isinstance(n, (D.Var, D.PointExpr)):
                return False
    return True


def _row_constant(value: object, dtype: str) -> bool:
    """Whether arithmetic of ``value`` with a row's values stays in the row's dtype: Python
    numbers are weak (a float32 row computes with them in float32); a NumPy scalar keeps its
    dtype, so in a float32 row only a float32 one does (``np.float64``, a ``float`` subclass,
    makes ``u32[x] * c`` float64), while every real NumPy scalar meets float64 in float64."""
    if type(value) in (int, float):
        return True
    if isinstance(value, np.float32):
        return True
    return dtype == "<f8" and isinstance(value, (np.floating, np.integer))


class VectorLowering:
    """DAST expression → vector expression of ``isa``; ``address(read)`` gives a read's pointer.
    With ``mask`` (AVX-512) reads load only those lanes (the others are zero and never stored,
    so a partial vector at a row's end reads nothing beyond the points it computes); with
    ``load``, ``load(read)`` is the read's vector (built by the caller) instead of a load."""

    def __init__(self, isa: VectorISA, address: Callable[[D.Read], C.Expr],
                 mask: C.Expr | None = None,
                 load: Callable[[D.Read], C.Expr] | None = None) -> None:
        self.isa = isa
        self.address = address
        self.mask = mask
        self.load = load   # a read's vector where the caller has it already (in registers)

    def statements(self, stmts: Sequence[D.Stmt], store: Callable[[C.Expr], C.Stmt]
                   ) -> list[C.Stmt]:
        """The assignments and stores of one vector of points (``vectorizable()`` checked
        them): a local is declared, of the vector type, at its first assignment;
        ``store(value)`` is the statement writing a store's value."""
        out: list[C.Stmt] = []
        declared: set[str] = set()
        for st in stmts:
            assert isinstance(st, (D.Assign, D.Store))
            value = self(st.value)
            if isinstance(st, D.Assign):
                target = c_var(st.target)
                out.append(C.Assign(C.Name(target), value) if st.target in declared
                           else C.Decl(self.isa.type, target, value))
                declared.add(st.target)
            else:
                out.append(store(value))
        return out

    def __call__(self, e: D.Node) -> C.Expr:
        v = self.isa
        if isinstance(e, D.Const):  # float32: the literal rounded to float, as the scalar code
            return C.Call(v.fn("set1"), [C.Constant(float(e.value), v.scalar)])
        if isinstance(e, D.Param):   # float32 rows: the value rounded to float, as NumPy does
            return C.Call(v.fn("set1"), [C.Cast(v.scalar, C.Name(param_var(e.name)))])
        if isinstance(e, D.Var):
            return C.Name(c_var(e.name))
        if isinstance(e, D.Read):
            if self.load is not None:
                return self.load(e)
            if self.mask is not None:
                return C.Call(v.fn("maskz_loadu"), [self.mask, self.address(e)])
            return C.Call(v.fn("loadu"), [self.address(e)])
        if isinstance(e, D.BinOp):
            return C.Call(v.fn(_OPS[e.op]), [self(e.left), self(e.right)])
        if isinstance(e, D.UnaryOp):
            x = self(e.operand)
            if e.op == "+":
                return x
            if v.prefix == "_mm512":  # _mm512_xor_p[ds] need AVX512DQ: flip the bit as integers
                sfx, lanes, bit = ("pd", "epi64", _SIGN_BIT) if v.double else \
                    ("ps", "epi32", _SIGN_BIT32)
                flipped = C.Call("_mm512_xor_si512", [C.Call(f"_mm512_cast{sfx}_si512", [x]),
                                                      C.Call(f"_mm512_set1_{lanes}", [bit])])
                return C.Call(f"_mm512_castsi512_{sfx}", [flipped])
            return C.Call(v.fn("xor"), [x, C.Call(v.fn("set1"), [C.Constant(-0.0, v.scalar)])])
        raise TypeError(f"{type(e).__name__} cannot be vectorised (check vectorizable() first)")

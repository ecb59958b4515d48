"""x86 SIMD lowering of straight-line arithmetic, for rows written with streaming stores.

gcc ignores ``#pragma omp simd nontemporal(...)``, so the plain streaming variant computes a row
into a buffer and copies it out with streaming stores. For kernels whose points are pure
arithmetic (``+ - * /``, unary minus, literals, locals and grid reads: the Laplacian, heat,
divergence, ...) this module writes the row loop with intrinsics instead, so each vector of
results goes straight from registers to memory. Every DAST operation becomes one IEEE operation
per lane with the same operands in the same order (no FMA), so results stay bitwise equal to the
scalar code and to Python; negation flips the sign bit, as Python's ``-x`` does.

The vector width follows the machine the code is compiled for (the hardware query's ISA, the
same machine ``-march=native`` targets): AVX-512 (8 doubles), AVX (4) or SSE2 (2, every x86-64).
Other architectures have no streaming-store intrinsics here: :func:`vector_isa` returns None and
the streaming schedules are not proposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from asp_core import cast as C

from . import dast as D
from .lower_c import c_var

__all__ = ["VectorISA", "vector_isa", "vectorizable", "VectorLowering"]

_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
_SIGN_BIT = C.BinOp(C.UnaryOp("-", C.Constant(2**63 - 1)), "-", C.Constant(1))  # INT64_MIN


@dataclass(frozen=True)
class VectorISA:
    """One x86 vector extension: its double-vector type, lane count and intrinsic prefix."""

    name: str
    width: int          # doubles per vector
    prefix: str         # "_mm512", "_mm256", "_mm"

    @property
    def type(self) -> C.CType:
        return C.CType(f"__m{self.width * 64}d")

    def fn(self, op: str) -> str:
        return f"{self.prefix}_{op}_pd"


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


def vectorizable(loop: D.PointLoop) -> bool:
    """Whether every statement of ``loop`` is arithmetic this module can lower."""
    for stmt in loop.body:
        if not isinstance(stmt, (D.Assign, D.Store)):
            return False
        for n in D.expr_nodes(stmt.value):
            if isinstance(n, D.Const):
                if isinstance(n.value, bool) or not isinstance(n.value, (int, float)):
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


class VectorLowering:
    """DAST expression → vector expression of ``isa``; ``address(read)`` gives a read's pointer."""

    def __init__(self, isa: VectorISA, address: Callable[[D.Read], C.Expr]) -> None:
        self.isa = isa
        self.address = address

    def __call__(self, e: D.Node) -> C.Expr:
        v = self.isa
        if isinstance(e, D.Const):
            return C.Call(v.fn("set1"), [C.Constant(float(e.value), C.DOUBLE)])
        if isinstance(e, D.Var):
            return C.Name(c_var(e.name))
        if isinstance(e, D.Read):
            return C.Call(v.fn("loadu"), [self.address(e)])
        if isinstance(e, D.BinOp):
            return C.Call(v.fn(_OPS[e.op]), [self(e.left), self(e.right)])
        if isinstance(e, D.UnaryOp):
            x = self(e.operand)
            if e.op == "+":
                return x
            if v is AVX512:  # _mm512_xor_pd needs AVX512DQ: flip the bit as integers
                flipped = C.Call("_mm512_xor_si512", [C.Call("_mm512_castpd_si512", [x]),
                                                      C.Call("_mm512_set1_epi64", [_SIGN_BIT])])
                return C.Call("_mm512_castsi512_pd", [flipped])
            return C.Call(v.fn("xor"), [x, C.Call(v.fn("set1"), [C.Constant(-0.0, C.DOUBLE)])])
        raise TypeError(f"{type(e).__name__} cannot be vectorised (check vectorizable() first)")

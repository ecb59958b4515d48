"""AVX-512 lowering of straight-line arithmetic, for rows written with streaming stores.

gcc ignores ``#pragma omp simd nontemporal(...)``, so the plain streaming variant computes a row
into a buffer and copies it out with ``_mm512_stream_pd``. For kernels whose points are pure
arithmetic (``+ - * /``, unary minus, literals, locals and grid reads: the Laplacian, heat,
divergence, ...) this module writes the row loop with intrinsics instead, so each vector of
results goes straight from registers to memory. Every DAST operation becomes one IEEE operation
on eight lanes with the same operands in the same order (no FMA), so results stay bitwise equal
to the scalar code and to Python; negation flips the sign bit, as Python's ``-x`` does.
"""

from __future__ import annotations

from typing import Callable

from asp_core import cast as C

from . import dast as D
from .lower_c import c_var

__all__ = ["VECTOR", "WIDTH", "vectorizable", "VectorLowering"]

VECTOR = C.CType("__m512d")
WIDTH = 8
_OPS = {"+": "_mm512_add_pd", "-": "_mm512_sub_pd", "*": "_mm512_mul_pd", "/": "_mm512_div_pd"}
_SIGN_BIT = C.BinOp(C.UnaryOp("-", C.Constant(2**63 - 1)), "-", C.Constant(1))  # INT64_MIN


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
    """DAST expression → ``__m512d`` expression; ``address(read)`` gives a read's pointer."""

    def __init__(self, address: Callable[[D.Read], C.Expr]) -> None:
        self.address = address

    def __call__(self, e: D.Node) -> C.Expr:
        if isinstance(e, D.Const):
            return C.Call("_mm512_set1_pd", [C.Constant(float(e.value), C.DOUBLE)])
        if isinstance(e, D.Var):
            return C.Name(c_var(e.name))
        if isinstance(e, D.Read):
            return C.Call("_mm512_loadu_pd", [self.address(e)])
        if isinstance(e, D.BinOp):
            return C.Call(_OPS[e.op], [self(e.left), self(e.right)])
        if isinstance(e, D.UnaryOp):
            x = self(e.operand)
            if e.op == "+":
                return x
            flipped = C.Call("_mm512_xor_si512", [C.Call("_mm512_castpd_si512", [x]),
                                                  C.Call("_mm512_set1_epi64", [_SIGN_BIT])])
            return C.Call("_mm512_castsi512_pd", [flipped])
        raise TypeError(f"{type(e).__name__} cannot be vectorised (check vectorizable() first)")

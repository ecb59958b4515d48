"""Pass ``linear-detection``: find constant-coefficient linear stencils (an analysis).

For each point loop, the value finally stored is expanded through the loop's locals; if it is
``c0 + Σ c_k · grid_k[x + o_k]`` with constant ``c`` (only ``+ - *`` by constants and ``/`` by a
constant), the loop is *linear* and its coefficients are recorded in
``prog.info["loops"][i]["coefficients"]`` (``{(grid, offset): c}``, Python numbers; exact as far as
Python's own arithmetic on the constants is). Nothing is rewritten: the generated code keeps the
kernel's operation order. The record also lists each loop's distinct reads, whether it reads the
output, and a flop count — what platforms use to choose streaming stores and what benchmarks use to
count bytes and flops per point; later backends (CUDA, temporal blocking) use the coefficients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from asp_core.passes import asp_pass

from .. import dast as D
from ._util import point_body

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

Affine = tuple[dict[tuple[str, tuple[int, ...]], float], float]


class _NotLinear(Exception):
    pass


def affine(e: D.Expr, env: dict[str, Affine]) -> Affine:
    """``e`` as (coefficients, constant), or raise ``_NotLinear``."""
    if isinstance(e, D.Const):
        if isinstance(e.value, (bool, np.bool_)):
            raise _NotLinear
        return {}, e.value
    if isinstance(e, D.Read):
        return {(e.grid, e.at.offset): 1}, 0
    if isinstance(e, D.Var):
        if e.name not in env:
            raise _NotLinear
        return env[e.name]
    if isinstance(e, D.UnaryOp) and e.op in "+-":
        c, k = affine(e.operand, env)
        s = -1 if e.op == "-" else 1
        return {r: s * v for r, v in c.items()}, s * k
    if isinstance(e, D.BinOp) and e.op in ("+", "-"):
        (ca, ka), (cb, kb) = affine(e.left, env), affine(e.right, env)
        s = 1 if e.op == "+" else -1
        out = dict(ca)
        for r, v in cb.items():
            out[r] = out.get(r, 0) + s * v
        return out, ka + s * kb
    if isinstance(e, D.BinOp) and e.op in ("*", "/"):
        (ca, ka), (cb, kb) = affine(e.left, env), affine(e.right, env)
        if e.op == "*":
            if not ca:
                return {r: ka * v for r, v in cb.items()}, ka * kb
            if not cb:
                return {r: v * kb for r, v in ca.items()}, ka * kb
        elif not cb and kb != 0:
            return {r: v / kb for r, v in ca.items()}, ka / kb
    raise _NotLinear


def _flops(e: D.Expr) -> int:
    return sum(1 for n in D.expr_nodes(e)
               if isinstance(n, (D.BinOp, D.Call)) or (isinstance(n, D.UnaryOp) and n.op == "-"))


def analyse(loop: D.PointLoop, out: str) -> dict[str, Any]:
    env: dict[str, Affine] = {}
    linear = True
    coeffs: dict = {}
    const: Any = 0
    reads: set[tuple[str, tuple[int, ...]]] = set()
    flops = 0
    for s in point_body(loop):
        reads.update((r.grid, r.at.offset) for r in D.reads(s.value))
        flops += _flops(s.value)
        if not linear:
            continue
        try:
            # coefficients are folded with the constants' own arithmetic: NumPy scalars can
            # overflow or refuse (``-1 * np.uint8(3)`` is an OverflowError), which makes the
            # loop not linear here and must not fail the kernel (nor warn the user)
            with np.errstate(all="ignore"):
                a = affine(s.value, env)
        except (_NotLinear, ArithmeticError, TypeError, ValueError):
            if isinstance(s, D.Store):
                linear = False
            continue
        if isinstance(s, D.Assign):
            env[s.target] = a
        else:
            coeffs, const = a
    stores = any(isinstance(s, D.Store) for s in loop.body)
    return {
        "region": loop.region,
        "sequential": loop.sequential,
        "linear": bool(linear and stores),
        "coefficients": {k: v for k, v in coeffs.items() if v != 0} if linear and stores else {},
        "constant": const if linear and stores else None,
        "reads": sorted(reads),
        "input_grids": sorted({g for g, _ in reads if g != out}),
        "reads_output": any(g == out for g, _ in reads),
        "flops": flops,
    }


@asp_pass("linear-detection")
def linear_detection(prog: D.StencilProgram, ctx: SpecializationContext) -> tuple[D.StencilProgram, bool]:
    """Record per-loop linearity, coefficients, reads and flops in ``prog.info['loops']``."""
    info = dict(prog.info)
    info["loops"] = [analyse(s, prog.output.name) for s in prog.body if isinstance(s, D.PointLoop)]
    # the statements are untouched; the program changed if its recorded facts did
    return D.StencilProgram(prog.name, prog.grids, prog.body, info), \
        info["loops"] != prog.info.get("loops")

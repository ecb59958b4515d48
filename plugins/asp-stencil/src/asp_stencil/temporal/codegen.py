"""C source of the temporally blocked ``iterate`` of one kernel.

The row kernels (one per point loop) are platform-AST functions printed with ``print_c``; the
driver that arranges them into wavefronts, ring buffers and blocks is the Mako template
``templates/temporal.c.mako`` (fixed logic with a handful of specialised constants). The library
exports ``<prefix>_run(x0, x1, constants..., steps, K, B0, B1)``: ``steps`` Jacobi sweeps of the
kernel, exactly equal to ``steps`` plain sweeps with swaps, blocked ``K`` time levels deep over
chunks of ``B0`` planes and tiles of ``B1`` rows (the tuning parameters, chosen at run time, so
every variant shares one compiled library).
"""

from __future__ import annotations

import re

from asp_core import cast as C
from asp_core.templates import render

from .. import dast as D
from ..lower_c import helper_functions
from .analysis import TemporalPlan
from .rows import row_kernels

__all__ = ["temporal_source", "run_symbol", "scratch_symbol", "symbol_prefix"]


def symbol_prefix(prog: D.StencilProgram) -> str:
    return "asp_temporal_" + re.sub(r"\W", "_", prog.name)


def run_symbol(prog: D.StencilProgram) -> str:
    return symbol_prefix(prog) + "_run"


def scratch_symbol(prog: D.StencilProgram) -> str:
    return symbol_prefix(prog) + "_scratch_doubles"


class _RowCall:
    """What the template needs to call one row kernel."""

    def __init__(self, index: int, region: str, name: str, args: str) -> None:
        self.index, self.region, self.name, self.args = index, region, name, args


def temporal_source(prog: D.StencilProgram, plan: TemporalPlan) -> str:
    """The whole translation unit (C11 + OpenMP) for ``prog`` under ``plan``."""
    rows = row_kernels(prog, plan)
    dzs = sorted({dz for rk in rows for dz in rk.dzs})
    calls = []
    for rk in rows:
        args = "".join(f", s[{dzs.index(dz)}]" for dz in rk.dzs)
        args += "".join(f", c_{name}" for name in plan.constants)
        calls.append(_RowCall(rk.index, rk.region, rk.name, args))
    helpers = C.print_c(C.Module(list(helper_functions(C.DOUBLE))))
    functions = C.print_c(C.Module([rk.function for rk in rows]))
    n0, n1, n2 = plan.shape
    g0, g1, g2 = plan.ghost
    r0, r1, _ = plan.radius
    return render("asp_stencil.temporal", "temporal.c.mako",
                  n0=n0, n1=n1, n2=n2, g0=g0, g1=g1, g2=g2, r0=r0, r1=r1,
                  helpers=helpers, row_functions=functions, rows=calls, dzs=dzs,
                  untouched=plan.untouched, prefix=symbol_prefix(prog),
                  const_params_decl="".join(f"    const double *restrict c_{n},\n"
                                            for n in plan.constants),
                  const_args="".join(f"c_{n}, " for n in plan.constants))

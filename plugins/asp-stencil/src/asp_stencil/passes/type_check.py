"""Pass ``type-check``: every operation computes in one precision, as NumPy would (an analysis).

Lowers each point loop's statements through :func:`~asp_stencil.lower_c.lower_statements` with
the grids' dtypes and turns a :class:`~asp_stencil.scalar_types.TypeRefusal` (integer
arithmetic, a float stored into an integer grid, an operation whose precision NumPy would pick
per value) into an ``Unspecializable`` naming the line, so the kernel runs in Python with one
warning instead of failing in a backend. Nothing is rewritten.

It also refuses Python-int arithmetic the backends may not compute exactly
(:func:`asp_stencil.python_ints.check_python_ints`), naming the line; the C lowering checks it
again, so disabling this pass never makes such a kernel compile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import cast as C
from asp_core.passes import asp_pass

from .. import dast as D
from ..lower_c import ExprLowering, lower_statements
from ..python_ints import check_python_ints
from ..scalar_types import TypeRefusal
from ._util import unsupported_at

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext


@asp_pass("type-check")
def type_check(prog: D.StencilProgram, ctx: SpecializationContext
               ) -> tuple[D.StencilProgram, bool]:
    """Refuse kernels whose arithmetic the C backends cannot do in NumPy's precision."""
    kinds = {g.name: g.dtype for g in prog.grids}
    for loop in prog.body:
        if not isinstance(loop, D.PointLoop):
            continue
        low = ExprLowering(lambda r: C.Name("x"), grid_kinds=kinds)
        try:
            check_python_ints(loop.body)
            lower_statements(loop.body, low, lambda s, v: C.ExprStmt(v))
        except TypeRefusal as exc:
            raise unsupported_at(ctx, getattr(exc, "line", 0) or loop.line, str(exc)) from None
    return prog, False  # an analysis: nothing is rewritten

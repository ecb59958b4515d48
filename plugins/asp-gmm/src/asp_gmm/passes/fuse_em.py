"""``fuse-em``: E-step and M-step run block by block over the samples; the N x M responsibility
matrix is never stored (enables the fused variants)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import asp_pass
from asp_gmm.dast import EMProblem, Fused, LogDensity

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["fuse_em"]


@asp_pass("fuse-em")
def fuse_em(problem: EMProblem, ctx: SpecializationContext) -> tuple[EMProblem, bool]:
    """Group everything after the density into one block-local step."""
    if problem.op != "em_step" or any(isinstance(s, Fused) for s in problem.steps):
        return problem, False
    head = [s for s in problem.steps if isinstance(s, LogDensity)]
    tail = [s for s in problem.steps if not isinstance(s, LogDensity)]
    return problem.replace(steps=[Fused(steps=head + tail)]), True

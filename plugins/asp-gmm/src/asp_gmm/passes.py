"""Phase 2: domain passes over the EM problem (each can be disabled by name).

``fold-constants``   log det L_k, log w_k and -D/2 log 2 pi become one number per component.
``triangular-precision``  the precision Cholesky factors are upper-triangular: skip their zeros
                     (and accumulate only the upper triangle of the symmetric second moments).
``shift-moments``    accumulate moments of x - c (c: the component's incoming mean for full,
                     one global point for diag) so second moments do not cancel when the data
                     sit far from the origin.
``fuse-em``          E-step and M-step run block by block over the samples; the N x M
                     responsibility matrix is never stored (enables the fused variants).
"""

from __future__ import annotations

from typing import Any

from asp_core import DomainOptimizer, PassManager, asp_pass
from asp_gmm.dast import AddLogWeights, EMProblem, Fused, LogDensity, Moments

__all__ = ["GMMDomainOptimizer", "domain_passes"]


@asp_pass("fold-constants")
def fold_constants(problem: EMProblem, ctx: Any) -> EMProblem:
    """Fold the per-component constant terms of the weighted log-density into one number."""
    steps = []
    for step in problem.steps:
        if isinstance(step, LogDensity):
            step = step.replace(constants_folded=True)
        elif isinstance(step, AddLogWeights):
            continue
        steps.append(step)
    return problem.replace(steps=steps)


@asp_pass("triangular-precision")
def triangular_precision(problem: EMProblem, ctx: Any) -> EMProblem:
    """Mark the full-covariance densities as triangular products (diag has no triangle)."""
    if problem.covariance != "full":
        return problem
    return problem.replace(steps=[s.replace(triangular=True)
                                  if isinstance(s, (LogDensity, Moments)) else s
                                  for s in problem.steps])


@asp_pass("shift-moments")
def shift_moments(problem: EMProblem, ctx: Any) -> EMProblem:
    """Accumulate moments about the incoming means (full) or one global point (diag)."""
    center = "component" if problem.covariance == "full" else "global"
    return problem.replace(steps=[s.replace(center=center) if isinstance(s, Moments) else s
                                  for s in problem.steps])


@asp_pass("fuse-em")
def fuse_em(problem: EMProblem, ctx: Any) -> EMProblem:
    """Group everything after the density into one block-local step."""
    if problem.op != "em_step" or any(isinstance(s, Fused) for s in problem.steps):
        return problem
    head = [s for s in problem.steps if isinstance(s, LogDensity)]
    tail = [s for s in problem.steps if not isinstance(s, LogDensity)]
    return problem.replace(steps=[Fused(steps=head + tail)])


def domain_passes() -> PassManager:
    return PassManager("gmm-domain", [fold_constants, triangular_precision, shift_moments,
                                      fuse_em])


class GMMDomainOptimizer(DomainOptimizer):
    """Runs :func:`domain_passes`."""

    def optimize(self, dast: EMProblem, ctx: Any) -> EMProblem:
        return domain_passes().run(dast, ctx)

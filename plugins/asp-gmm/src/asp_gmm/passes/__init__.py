"""Phase 2: domain passes over the EM problem, one per module (each can be disabled by name).

``fold-constants``   log det L_k, log w_k and -D/2 log 2 pi become one number per component.
``triangular-precision``  the precision Cholesky factors are upper-triangular: skip their zeros
                     (and accumulate only the upper triangle of the symmetric second moments).
``shift-moments``    accumulate moments of x - c_k (c_k: component k's incoming mean) so
                     second moments do not cancel when the data sit far from the origin.
``fuse-em``          E-step and M-step run block by block over the samples; the N x M
                     responsibility matrix is never stored (enables the fused variants).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import DomainOptimizer, PassManager
from asp_gmm.dast import EMProblem
from asp_gmm.passes.fold_constants import fold_constants
from asp_gmm.passes.fuse_em import fuse_em
from asp_gmm.passes.shift_moments import shift_moments
from asp_gmm.passes.triangular_precision import triangular_precision

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["GMMDomainOptimizer", "domain_passes", "fold_constants", "triangular_precision",
           "shift_moments", "fuse_em"]


def domain_passes() -> PassManager:
    return PassManager("gmm-domain", [fold_constants, triangular_precision, shift_moments,
                                      fuse_em])


class GMMDomainOptimizer(DomainOptimizer):
    """Runs :func:`domain_passes`."""

    def optimize(self, dast: EMProblem, ctx: SpecializationContext) -> EMProblem:
        return domain_passes().run(dast, ctx)

"""Phase 1: from a call of a reference kernel to the domain AST.

The "kernel" of the GMM specializer is a call of :func:`asp_gmm.reference.em_step` or
:func:`asp_gmm.reference.log_prob`; what is specialised is its data signature (M, D,
covariance type, dtype), so the frontend reads the call's arguments, not free-form code. Any
other function is outside the DSL and is reported as such.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asp_core import Frontend
from asp_gmm.dast import AddLogWeights, EMProblem, LogDensity, LogSumExp, Moments, Responsibilities

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["EMFrontend"]


class EMFrontend(Frontend):
    """Builds an :class:`EMProblem` from the first call's arguments."""

    def parse(self, ctx: SpecializationContext) -> EMProblem:
        name = getattr(ctx.func, "__name__", "")
        if name not in ("em_step", "log_prob"):
            raise ctx.unsupported(None, f"function {name!r}",
                                  "the gmm specializer handles asp_gmm.reference.em_step and "
                                  "asp_gmm.reference.log_prob calls only")
        from asp_gmm.signature import parse_call

        call = parse_call(name, ctx.args, ctx.kwargs)
        steps: list[Any] = [LogDensity(call.covariance)]
        if name == "em_step":
            steps += [AddLogWeights(), LogSumExp(), Responsibilities(),
                      Moments(call.covariance)]
        return EMProblem(op=name, n_components=call.n_components, n_features=call.n_features,
                         covariance=call.covariance, x_dtype=call.x_dtype,
                         n_samples=call.n_samples, steps=steps)

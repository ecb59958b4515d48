"""Phase 1: from a call of a reference kernel to the domain AST.

The "kernel" of the GMM specializer is a call of one of :mod:`asp_gmm.reference`'s four
computations (``em_step``, ``log_prob``, ``e_step``, ``m_step`` and the k-means passes of
the initialisation, ``kmeans_assign`` and ``kmeans_seed``); what is specialised is its data signature (M, D,
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
        from asp_gmm import reference
        from asp_gmm.signature import OPS, parse_call

        name = getattr(ctx.func, "__name__", "")
        # the function itself, not its name: a user's em_step is not asp_gmm's
        if name not in OPS or ctx.func is not getattr(reference, name):
            raise ctx.unsupported(None, f"function {name!r}",
                                  "the gmm specializer handles calls of asp_gmm.reference's "
                                  + ", ".join(OPS) + " only")
        call = parse_call(name, ctx.args, ctx.kwargs)
        cov = call.covariance
        programs: dict[str, list[Any]] = {
            "em_step": [LogDensity(cov), AddLogWeights(), LogSumExp(), Responsibilities(),
                        Moments(cov)],
            "log_prob": [LogDensity(cov)],
            "e_step": [LogDensity(cov), AddLogWeights(), LogSumExp(), Responsibilities()],
            "m_step": [Moments(cov)],
            # k-means computes no densities; its entry points share the M-step's unit
            "kmeans_assign": [Moments(cov)],
            "kmeans_seed": [Moments(cov)],
        }
        steps = programs[name]
        return EMProblem(op=name, n_components=call.n_components, n_features=call.n_features,
                         covariance=call.covariance, x_dtype=call.x_dtype,
                         n_samples=call.n_samples, steps=steps)

"""Phases 1-4 without a call: the variants of a problem for a named platform.

Used to compile-check CUDA where there is no GPU (the CUDA platform's ``check`` refuses to run
here, but its code can still be generated and given to ``nvcc -c``), and by tests and the
benchmark to look at generated code.
"""

from __future__ import annotations

from typing import Any

from asp_core import SpecializationContext, Variant
from asp_gmm.dast import EMProblem, LogDensity
from asp_gmm.passes import domain_passes
from asp_gmm.platforms import CudaPlatform, NumpyPlatform, OpenMPPlatform
from asp_gmm.variants import CPUVariants, CudaVariants

__all__ = ["problem", "variants_for"]


def problem(op: str, M: int, D: int, cov: str, dtype: str = "float64",
            n_samples: int = 1000, options: dict | None = None) -> EMProblem:
    """The optimised DAST of a problem, as the frontend and domain passes would build it."""
    ctx = SpecializationContext("gmm", None, options=dict(options or {}))
    steps: list[Any] = [LogDensity(cov)]
    if op == "em_step":
        from asp_gmm.dast import AddLogWeights, LogSumExp, Moments, Responsibilities

        steps += [AddLogWeights(), LogSumExp(), Responsibilities(), Moments(cov)]
    dast = EMProblem(op, M, D, cov, dtype, n_samples, steps)
    return domain_passes().run(dast, ctx)


def variants_for(platform: str, op: str, M: int, D: int, cov: str, dtype: str = "float64",
                 n_samples: int = 1000, options: dict | None = None) -> list[Variant]:
    """Every variant the platform optimiser makes for ``platform`` ("openmp" | "cuda")."""
    ctx = SpecializationContext("gmm", None, options=dict(options or {}))
    dast = problem(op, M, D, cov, dtype, n_samples, options)
    if platform == "cuda":
        return CudaVariants().variants(CudaPlatform().lower(dast, ctx), ctx)
    if platform == "openmp":
        return CPUVariants().variants(OpenMPPlatform().lower(dast, ctx), ctx)
    if platform == "numpy":
        from asp_core import Variant as _V

        return [_V("numpy", NumpyPlatform().lower(dast, ctx), {})]
    raise ValueError(f"unknown platform {platform!r}")

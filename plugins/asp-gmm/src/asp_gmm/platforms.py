"""Phase 3: platform selection. OpenMP C, CUDA, or NumPy.

Each platform says why it cannot run a problem here (``check``), so ``asp explain`` shows, for
instance, "cuda: no CUDA GPU on this machine" next to the chosen "openmp".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import Platform, PlatformProgram
from asp_gmm.dast import EMProblem, LogDensity, find
from asp_gmm.layout import MAX_FEATURES_C
from asp_gmm.lowering import MOMENT_OPS, plan_for, program_module

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["CudaPlatform", "NumpyPlatform", "OpenMPPlatform"]


def _compiled_reason(problem: EMProblem) -> str | None:
    if problem.covariance not in ("full", "diag"):
        return (f"covariance_type={problem.covariance!r} is not compiled (full and diag are); "
                "the NumPy platform runs it")
    if problem.n_features > MAX_FEATURES_C:
        return f"{problem.n_features} features > {MAX_FEATURES_C}, the compiled kernels' limit"
    density = find(problem, LogDensity)
    if problem.op not in MOMENT_OPS and (density is None or not density.constants_folded):
        return "the compiled kernels need the fold-constants pass (disabled)"
    return None


class OpenMPPlatform(Platform):
    """C with OpenMP and GCC vector extensions, compiled by the core's C toolchain."""

    name = "openmp"
    compiler = "c"   # for asp list only: a fit without a compiler still reaches lower()

    def check(self, dast: EMProblem, ctx: SpecializationContext) -> str | None:
        return _compiled_reason(dast)

    def lower(self, dast: EMProblem, ctx: SpecializationContext) -> PlatformProgram:
        # A missing compiler is not a reason to pick another platform silently: it raises
        # CompilerNotFound here, so the dispatcher falls back to NumPy with the core's warning.
        from asp_core.toolchain import find_toolchain

        find_toolchain("c")
        plan = plan_for(dast, tuple(ctx.hardware.isa))
        return PlatformProgram("openmp", program_module(plan, 256), {"plan": plan})


class CudaPlatform(Platform):
    """CUDA C compiled by nvcc into a plain-C-ABI shared object (host pointers in, results out).

    Needs a GPU at run time; where there is none the reason is recorded and OpenMP is used.
    """

    name = "cuda"

    def check(self, dast: EMProblem, ctx: SpecializationContext) -> str | None:
        reason = _compiled_reason(dast)
        if reason:
            return reason
        if dast.op in ("e_step", *MOMENT_OPS):
            return f"{dast.op} is compiled for OpenMP only (the CUDA units have em_step and log_prob)"
        if not plan_for(dast).layout.cuda_samples_per_block(128):
            return (f"M={dast.n_components} components and D={dast.n_features} features do not "
                    "fit a CUDA block's 48 KiB of shared memory for one sample's statistics")
        return self.unavailable_reason()

    def unavailable_reason(self) -> str | None:
        from asp_core.hardware import cuda_unavailable_reason

        return cuda_unavailable_reason()

    def lower(self, dast: EMProblem, ctx: SpecializationContext) -> PlatformProgram:
        plan = plan_for(dast)
        return PlatformProgram("cuda", program_module(plan, 256, cuda=True), {"plan": plan})


class NumpyPlatform(Platform):
    """The reference computation in NumPy: always available, slowest."""

    name = "numpy"

    def check(self, dast: EMProblem, ctx: SpecializationContext) -> str | None:
        return None

    def lower(self, dast: EMProblem, ctx: SpecializationContext) -> PlatformProgram:
        return PlatformProgram("numpy", dast, {"op": dast.op})


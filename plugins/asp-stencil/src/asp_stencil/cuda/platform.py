"""Phase 3 and 4 components of the CUDA backend: the ``cuda`` platform and its variants.

Selection: ``check`` accepts a kernel only when a CUDA GPU is present (``nvidia-smi`` through
``asp_core.hardware``), the grid is big enough for a GPU to pay for the transfers and a binding
for device memory (pycuda, cuda-python or cupy) works, or when the
user forces the platform (``ASP_PLATFORM_SELECTION=cuda`` or the kernel option
``{"platform_selection": "cuda"}``; then only ``nvcc`` is required, which is how CI compiles
the CUDA code on machines without a GPU). Kernels that cannot run in parallel (Gauss–Seidel) are
refused with the reason, and the OpenMP platform takes them; so is every kernel on a GPU older
than every architecture the installed nvcc builds for (CUDA 13 starts at sm_75).
"""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING

from asp_core import config
from asp_core.components import Platform, PlatformOptimizer, PlatformProgram, Variant

from .. import dast as D
from ..lower_c import refusals_unsupported
from .lowering import CudaVariant, default_variants, lower_cuda, unsupported_reason

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["CudaPlatform", "CudaVariants", "MIN_GPU_POINTS"]

#: below this many points, a single call is dominated by host<->device copies
MIN_GPU_POINTS = 1 << 18


def forced(ctx: SpecializationContext) -> bool:
    """Did the user ask for the ``cuda`` platform by name?"""
    requested, _ = config.phase_choice(getattr(ctx, "specializer", "stencil") or "stencil",
                                       "platform_selection", getattr(ctx, "options", None))
    return requested == "cuda"


class CudaPlatform(Platform):
    """Phase 3 component ``cuda``."""

    name = "cuda"

    def check(self, dast: D.StencilProgram, ctx: SpecializationContext) -> str | None:
        reason = unsupported_reason(dast)
        if reason:
            return reason
        from asp_core.hardware import nvcc_unavailable_reason

        nvcc = nvcc_unavailable_reason()  # probed once per process
        if nvcc:
            return nvcc
        from .backend import gpu_arch_unsupported_reason

        # a GPU nvcc cannot build for: the compile would fail (the kernel then ran in Python
        # with "a bug; please report it" where OpenMP can run it)
        arch = gpu_arch_unsupported_reason(ctx.hardware)
        if arch:
            return arch
        if forced(ctx):
            return None
        if not ctx.hardware.has_gpu:
            return ("no CUDA GPU on this machine (force with ASP_PLATFORM_SELECTION=cuda to "
                    "generate and compile the CUDA code anyway)")
        points = prod(dast.output.shape)
        if points < MIN_GPU_POINTS:
            return (f"grid of {points} points is too small for a GPU to pay for the copies "
                    f"(< {MIN_GPU_POINTS}); force with ASP_PLATFORM_SELECTION=cuda")
        from .devmem import CudaUnavailable, get_device_memory

        try:  # the generated launchers need device memory from pycuda, cuda-python or cupy
            get_device_memory()
        except (CudaUnavailable, ValueError) as exc:
            # ValueError: ASP_CUDA_MEMORY names no binding, a setting to fix, not a broken
            # plugin (raised here, the core reported the whole stencil-cuda plugin broken)
            return str(exc)
        return None

    def unavailable_reason(self) -> str | None:
        from asp_core.hardware import cuda_unavailable_reason

        return cuda_unavailable_reason()

    def lower(self, dast: D.StencilProgram, ctx: SpecializationContext) -> PlatformProgram:
        variants = default_variants(dast)
        with refusals_unsupported(ctx):
            module = lower_cuda(dast, variants)
        return PlatformProgram("cuda", module, {"dast": dast, "variants": variants})


class CudaVariants(PlatformOptimizer):
    """Phase 4 component ``cuda-blocks``: one variant per strategy and thread-block shape.

    All variants live in the one translation unit the platform produced (a single ``nvcc`` run);
    a variant only names the launcher the backend binds.
    """

    name = "cuda-blocks"
    platforms = ("cuda",)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        out = []
        v: CudaVariant
        for v in program.meta["variants"]:
            meta = dict(program.meta, variant=v)
            out.append(Variant(v.label, PlatformProgram(program.platform, program.ir, meta),
                               v.params()))
        return out

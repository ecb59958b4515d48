"""Phase 5: print, compile through the core, bind.

The OpenMP backend prints the PAST prelude, the rendered template and the PAST entry points,
compiles with the core's C toolchain (its flags plus ``-ffp-contract=fast``: the EM numerics are
defined to rounding, not bitwise, so FMAs are allowed) and binds with ctypes. The CUDA backend
does the same with nvcc; its shared object takes host pointers, so it needs no Python CUDA
package. The NumPy backend returns the reference functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asp_core import Backend, Variant
from asp_core.cast import print_c, print_cuda
from asp_core.templates import render
from asp_gmm.lowering import KernelPlan, split_module

__all__ = ["CudaBackend", "NumpyBackend", "OpenMPBackend", "cuda_source", "openmp_source"]

C_FLAGS = ("-ffp-contract=fast",)
CUDA_FLAGS: tuple[str, ...] = ()


def _template_args(variant: Variant) -> dict[str, Any]:
    plan: KernelPlan = variant.program.meta["plan"]
    return {**plan.layout.template_args(), "strategy": variant.params["strategy"],
            "triangular": plan.triangular, "block": variant.params["block"]}


def openmp_source(variant: Variant) -> str:
    """The complete C translation unit of an OpenMP variant."""
    head, tail = split_module(variant.program.ir)
    body = render("asp_gmm", "em_openmp.c.mako", **_template_args(variant))
    return print_c(head) + "\n" + body + "\n" + print_c(tail)


def cuda_source(variant: Variant) -> str:
    """The complete CUDA translation unit of a CUDA variant."""
    head, tail = split_module(variant.program.ir)
    body = render("asp_gmm", "em_cuda.cu.mako", **_template_args(variant))
    return print_cuda(head) + "\n" + body + "\n" + print_cuda(tail)


def _bind(lib: Any, variant: Variant) -> Callable[..., Any]:
    from asp_gmm.binding import EMStepKernel, EStepKernel, LogProbKernel, MStepKernel

    plan: KernelPlan = variant.program.meta["plan"]
    if plan.op == "em_step":
        return EMStepKernel(lib.cdll, plan, bool(variant.params["materialise"]), variant.name,
                            lib)
    kernel = {"log_prob": LogProbKernel, "e_step": EStepKernel, "m_step": MStepKernel}[plan.op]
    return kernel(lib.cdll, plan, variant.name, lib)


def _specialised_on(variant: Variant) -> dict[str, Any]:
    plan: KernelPlan = variant.program.meta["plan"]
    # no "op": both ops' entry points are in every unit, so they share compiled code
    return {"M": plan.layout.M, "D": plan.layout.D, "cov": plan.layout.cov,
            "dtype": plan.ctype, "variant": variant.name}


def _compile(variant: Variant, ctx: Any, args: Callable[[Variant], dict[str, Any]]) -> Any:
    """Compile ``variant``; the default variant compiles all its siblings in one batch."""
    siblings = variant.program.meta.get("siblings")
    if siblings and len(siblings) > 1 and siblings[0] is variant:
        return ctx.compile_many([{**args(v), "variant": v.name} for v in siblings])[0]
    return ctx.compile(**args(variant))


class OpenMPBackend(Backend):
    platforms = ("openmp",)

    @staticmethod
    def compile_args(variant: Variant) -> dict[str, Any]:
        return {"source": openmp_source(variant), "lang": "c", "openmp": True,
                "flags": C_FLAGS, "name": "gmm_em", "specialised_on": _specialised_on(variant)}

    def build(self, variant: Variant, ctx: Any) -> Callable[..., Any]:
        return _bind(_compile(variant, ctx, self.compile_args), variant)


class CudaBackend(Backend):
    platforms = ("cuda",)

    @staticmethod
    def compile_args(variant: Variant) -> dict[str, Any]:
        return {"source": cuda_source(variant), "lang": "cuda", "openmp": False,
                "flags": CUDA_FLAGS, "name": "gmm_em_cuda",
                "specialised_on": _specialised_on(variant)}

    def build(self, variant: Variant, ctx: Any) -> Callable[..., Any]:
        return _bind(_compile(variant, ctx, self.compile_args), variant)


class NumpyBackend(Backend):
    platforms = ("numpy",)

    def build(self, variant: Variant, ctx: Any) -> Callable[..., Any]:
        from asp_gmm import reference

        return getattr(reference, variant.program.meta["op"])

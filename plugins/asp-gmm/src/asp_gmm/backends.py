"""Phase 5: print, compile through the core, bind.

The OpenMP backend renders the template with the printed PAST prelude and entry points (the
template places them around the kernel bodies; no C is assembled here), compiles with the
core's C toolchain (its flags plus ``-ffp-contract=fast``: the EM numerics are defined to
rounding, not bitwise, so FMAs are allowed) and binds with ctypes. The CUDA backend
does the same with nvcc; its shared object takes host pointers, so it needs no Python CUDA
package. The NumPy backend returns the reference functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asp_core import Backend, Variant, background
from asp_core.cast import print_c, print_cuda
from asp_core.templates import render
from asp_gmm.lowering import KernelPlan, split_module

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["CudaBackend", "NumpyBackend", "OpenMPBackend", "compiling", "cuda_source",
           "openmp_source"]

C_FLAGS = ("-ffp-contract=fast",)
CUDA_FLAGS: tuple[str, ...] = ()


def _template_args(variant: Variant) -> dict[str, Any]:
    plan: KernelPlan = variant.program.meta["plan"]
    return {**plan.layout.template_args(), "strategy": variant.params["strategy"],
            "triangular": plan.triangular, "block": variant.params["block"]}


def openmp_source(variant: Variant) -> str:
    """The complete C translation unit of an OpenMP variant: the template places the printed
    prelude and entry points around the kernel bodies."""
    head, tail = split_module(variant.program.ir)
    return render("asp_gmm", "em_openmp.c.mako", prelude=print_c(head),
                  exports=print_c(tail), **_template_args(variant))


def cuda_source(variant: Variant) -> str:
    """The complete CUDA translation unit of a CUDA variant (as :func:`openmp_source`)."""
    head, tail = split_module(variant.program.ir)
    block = variant.params["block"]
    return render("asp_gmm", "em_cuda.cu.mako", prelude=print_cuda(head),
                  exports=print_cuda(tail), **_template_args(variant),
                  SB=variant.program.meta["plan"].layout.cuda_samples_per_block(block))


def _bind(lib: Any, variant: Variant) -> Callable[..., Any]:
    from asp_gmm.binding import (
        EMStepKernel,
        EStepKernel,
        KMeansAssignKernel,
        KMeansSeedKernel,
        LogProbKernel,
        MStepKernel,
    )

    plan: KernelPlan = variant.program.meta["plan"]
    if plan.op == "em_step":
        return EMStepKernel(lib.cdll, plan, bool(variant.params["materialise"]), variant.name,
                            lib)
    kernels: dict[str, type[LogProbKernel | EStepKernel | MStepKernel | KMeansAssignKernel
                            | KMeansSeedKernel]] = {
        "log_prob": LogProbKernel, "e_step": EStepKernel, "m_step": MStepKernel,
        "kmeans_assign": KMeansAssignKernel, "kmeans_seed": KMeansSeedKernel}
    return kernels[plan.op](lib.cdll, plan, variant.name, lib)


def _specialised_on(variant: Variant) -> dict[str, Any]:
    plan: KernelPlan = variant.program.meta["plan"]
    # no "op": both ops' entry points are in every unit, so they share compiled code
    return {"M": plan.layout.M, "D": plan.layout.D, "cov": plan.layout.cov,
            "dtype": plan.ctype, "variant": variant.name}


def compiling() -> bool:
    """Whether variants are still compiling in the background (:mod:`asp_core.background`),
    at low priority included, or wait to compile once the fits end: building one of them now
    would wait for gcc."""
    return background.busy(low_priority=True)


def _compile(variant: Variant, ctx: SpecializationContext, args: Callable[[Variant], dict[str, Any]]) -> Any:
    """Compile ``variant``; when it is the default, start its siblings' compiles in the
    background (their builds, one per tuning call, then take the background compile's library
    or the code cache: one gcc per variant either way), so the first call waits for one
    compile only. A sibling that fails to compile fails again in its own build, which reports
    it. The siblings compile at low priority once no fit has run for a while
    (:func:`asp_core.background.foreground`): a
    fit never waits for them (:func:`asp_gmm.engine.em_step`), and a gcc at normal priority
    next to its compiled passes made the fit that follows a first one 1.5-2x slower (measured,
    diag N=200k D=16 M=32, two cores); at low priority still 1.5x."""
    siblings = variant.program.meta.get("siblings")
    if siblings and len(siblings) > 1 and siblings[0] is variant:
        for sibling in siblings[1:]:
            _compile_later(ctx, args(sibling), sibling.name)
    return ctx.compile(**args(variant))


def _compile_later(ctx: SpecializationContext, args: dict[str, Any], name: str) -> None:
    """A sibling's background compile once the fits end, unless the code cache has it (a
    later process: the tuner then times it on the fit's iterations, loaded at no cost)."""
    from asp_core.build import is_cached

    keyed = ("lang", "openmp", "flags", "specialised_on")
    try:
        cached = is_cached(args["source"], **{k: v for k, v in args.items() if k in keyed})
    except Exception:  # noqa: BLE001 - e.g. no compiler: the sibling's own build reports it
        cached = False
    if not cached:
        background.submit(ctx, low_priority=True, when_idle=True, **args, variant=name)


class OpenMPBackend(Backend):
    platforms = ("openmp",)

    @staticmethod
    def compile_args(variant: Variant) -> dict[str, Any]:
        return {"source": openmp_source(variant), "lang": "c", "openmp": True,
                "flags": C_FLAGS, "name": "gmm_em", "specialised_on": _specialised_on(variant)}

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., Any]:
        return _bind(_compile(variant, ctx, self.compile_args), variant)


class CudaBackend(Backend):
    platforms = ("cuda",)

    @staticmethod
    def compile_args(variant: Variant) -> dict[str, Any]:
        return {"source": cuda_source(variant), "lang": "cuda", "openmp": False,
                "flags": CUDA_FLAGS, "name": "gmm_em_cuda",
                "specialised_on": _specialised_on(variant)}

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., Any]:
        return _bind(_compile(variant, ctx, self.compile_args), variant)


class NumpyBackend(Backend):
    platforms = ("numpy",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., Any]:
        from asp_gmm import reference

        return getattr(reference, variant.program.meta["op"])

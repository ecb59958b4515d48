"""Phase 4: the parallelisation strategies of one EM iteration, as variants to time.

As in the Asp paper's GMM specializer, each variant is a complete EM iteration with a
different parallel structure; the dispatcher runs one real iteration with each and keeps the
fastest (remembered in the perf database under (M, D, order of magnitude of N, dtype, cov)).

``fused-b<B>``  blocked over samples (B per block, a tuning parameter), E- and M-step fused per
                block; per-thread statistics reduced at the end; N x M never stored.
``samples``     E-step parallel over samples into an N x M matrix, then M-step parallel over
                samples.
``components``  E-step and M-step parallel over components (each thread owns whole columns).
``dims``        E-step over samples; M-step parallel over dimensions (covariance rows / features).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from asp_core import PlatformOptimizer, PlatformProgram, Variant
from asp_gmm.lowering import set_define

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["FUSED_BLOCKS", "CPUVariants", "CudaVariants"]

FUSED_BLOCKS = (256, 64)


def _variant(program: PlatformProgram, name: str, strategy: str, block: int,
             materialise: bool) -> Variant:
    ir = set_define(program.ir, "BLOCK", block)
    params = {"strategy": strategy, "block": block, "materialise": materialise}
    return Variant(name, replace(program, ir=ir, meta={**program.meta, **params}), params)


def _with_siblings(variants: list[Variant]) -> list[Variant]:
    """Let the default variant carry the whole list, so the backend compiles every variant in
    one parallel batch (``ctx.compile_many``) when the first is built; the later builds, one
    per tuning call, are then cache hits and the timed iterations run on a quiet machine."""
    variants[0].program.meta["siblings"] = list(variants)
    return variants


class CPUVariants(PlatformOptimizer):
    """The OpenMP variants (first = default when ``ASP_AUTOTUNE=off``)."""

    platforms = ("openmp",)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        plan = program.meta["plan"]
        if plan.op == "log_prob":
            # the same translation unit as the default EM variant: a code-cache hit
            return [_variant(program, f"fused-b{FUSED_BLOCKS[0]}", "fused", FUSED_BLOCKS[0],
                             False)]
        out = []
        if plan.fused:
            out += [_variant(program, f"fused-b{b}", "fused", b, False) for b in FUSED_BLOCKS]
        out += [_variant(program, "samples", "samples", 128, True),
                _variant(program, "components", "components", 128, True),
                _variant(program, "dims", "dims", 128, True)]
        return _with_siblings(out)


class CudaVariants(PlatformOptimizer):
    """The CUDA variants: thread per sample, block per component, block per covariance row
    (dimensions), and a fused one where each thread block reduces its samples' statistics in
    shared memory (threads per block is the tuning parameter)."""

    platforms = ("cuda",)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        plan = program.meta["plan"]
        if plan.op == "log_prob":
            return [_variant(program, "fused-t128", "fused", 128, False)]
        out = []
        if plan.fused:
            out += [_variant(program, f"fused-t{t}", "fused", t, False) for t in (128, 256)]
        # device buffers are allocated by the entry points: no host work array
        out += [_variant(program, name, name, 128, False)
                for name in ("samples", "components", "dims")]
        return _with_siblings(out)

"""Phase 4: the parallelisation strategies of one EM iteration, as variants to time.

As in the Asp paper's GMM specializer, each variant is a complete EM iteration with a
different parallel structure; the dispatcher runs one real iteration with each and keeps the
fastest (remembered in the perf database under the shape class (M, D, order of magnitude of
N, dtype, cov), so a later process with a similar shape starts tuned).

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
from asp_gmm.layout import Layout
from asp_gmm.lowering import set_define

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["BLOCKS", "CPUVariants", "CudaVariants", "fused_blocks"]

#: the sample-block sizes a fused CPU variant may take
BLOCKS = (256, 128, 64, 32)


def _block_bytes(layout: Layout) -> int:
    """Scratch bytes per sample of a fused block: the sample, its log-probabilities and (full)
    the centred sample and its weighted copy that the covariance update re-reads M times."""
    full = layout.cov == "full"
    return 8 * ((layout.DP if full else layout.D) + layout.MP + (2 * layout.DP if full else 0))


def fused_blocks(layout: Layout, l1_bytes: int | None) -> tuple[int, int]:
    """(the model's block size, the candidate timed against it) for a fused CPU variant.

    The model: the largest block whose scratch fits the L1 data cache (from the hardware
    query; 32 KiB when unknown), since the M-step re-reads it once per component. Its half
    (or, at the smallest size, its double) is the second candidate, timed on the fit's own
    second iteration: the model picks the order, the machine decides.
    """
    budget = l1_bytes or 32768
    per_sample = _block_bytes(layout)
    first = next((b for b in BLOCKS if b * per_sample <= budget), BLOCKS[-1])
    second = first // 2 if first > BLOCKS[-1] else first * 2
    return first, second


def _variant(program: PlatformProgram, name: str, strategy: str, block: int,
             materialise: bool) -> Variant:
    ir = set_define(program.ir, "BLOCK", block)
    params = {"strategy": strategy, "block": block, "materialise": materialise}
    return Variant(name, replace(program, ir=ir, meta={**program.meta, **params}), params)


def _with_siblings(variants: list[Variant]) -> list[Variant]:
    """Let the default variant carry the whole list, so the backend starts compiling the
    other variants in the background when the first is built; the later builds, one per
    tuning call, are then cache hits (or wait for that compile)."""
    variants[0].program.meta["siblings"] = list(variants)
    return variants


class CPUVariants(PlatformOptimizer):
    """The OpenMP variants (first = the model's choice, the default when
    ``ASP_AUTOTUNE=off``).

    By default two fused variants are timed (see :func:`fused_blocks`): on this kind of
    machine the materialising strategies lose at every measured size (the paper's finding for
    CPUs too) and each costs a compile and a slow timed iteration. The option
    ``{"variants": "all"}`` (``asp_options`` of the estimator) times the paper's four
    strategies as well; without the ``fuse-em`` pass only those three exist.
    """

    platforms = ("openmp",)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        plan = program.meta["plan"]
        first, second = fused_blocks(plan.layout, ctx.hardware.caches.get("L1d"))
        if plan.op != "em_step":
            # the same translation unit as the default EM variant: a code-cache hit
            return [_variant(program, f"fused-b{first}", "fused", first, False)]
        out = []
        if plan.fused:
            out += [_variant(program, f"fused-b{b}", "fused", b, False)
                    for b in (first, second)]
        if not plan.fused or ctx.options.get("variants") == "all":
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
        if plan.fused:   # the threads whose shared tiles fit (the platform checked 128)
            out += [_variant(program, f"fused-t{t}", "fused", t, False) for t in (128, 256)
                    if plan.layout.cuda_samples_per_block(t)]
        # device buffers are allocated by the entry points: no host work array
        out += [_variant(program, name, name, 128, False)
                for name in ("samples", "components", "dims")]
        return _with_siblings(out)

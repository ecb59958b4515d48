"""Phase 4 component ``numpy-slabs``: whole-array and slab-by-slab variants of the NumPy code.

A whole-array statement on a 256³ grid makes each temporary 128 MiB, so every operation streams
through memory. Walking the boxes in slabs of a few planes along the first axis keeps the
temporaries of one statement in the cache; the price is one Python loop iteration (a few NumPy
calls) per slab. Which slab size wins depends on the machine and the kernel, so the variants are
timed by the core's autotuner on the first calls and the winner is stored.
"""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING

from asp_core.components import PlatformOptimizer, PlatformProgram, Variant

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["TARGET_POINTS", "SlabVariants", "slab_sizes"]

#: Points per slab the variants aim at (about 128 KiB and 1 MiB of float64 temporaries).
TARGET_POINTS = (16_384, 131_072)


def slab_sizes(shape: tuple[int, ...], targets: tuple[int, ...] = TARGET_POINTS) -> list[int]:
    """Planes per slab for each target, keeping only sizes that split the first axis."""
    if len(shape) < 2:
        return []
    plane = prod(shape[1:])
    sizes: list[int] = []
    for t in targets:
        b = max(1, t // plane)
        if b < shape[0] - 2 and b not in sizes:
            sizes.append(b)
    return sizes


class SlabVariants(PlatformOptimizer):
    """``whole`` plus ``slabs-B`` for each useful ``B``; the first is used when not tuning."""

    name = "numpy-slabs"
    platforms = ("numpy",)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        from asp_stencil_numpy.lowering import lower_numpy

        dast = program.meta["dast"]
        whole = Variant("whole", program, {"block": None})
        slabs = []
        for b in slab_sizes(dast.output.shape):
            src = lower_numpy(dast, block=b)
            slabs.append(Variant(f"slabs-{b}", PlatformProgram(
                "numpy", src, {**program.meta, "block": b, "function": src.function}),
                {"block": b}))
        # large grids: slabs first (the untuned default); small ones: whole arrays first
        big = prod(dast.output.shape) > 4 * TARGET_POINTS[-1]
        return [*slabs, whole] if big and slabs else [whole, *slabs]

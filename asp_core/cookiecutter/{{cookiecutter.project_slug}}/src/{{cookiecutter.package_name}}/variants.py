"""Phase 4, platform optimisation: variants of the C program for the autotuner.

``parallel-simd`` spreads the loop over OpenMP threads and vectorises it; ``serial`` does
neither (faster for small arrays, where starting threads costs more than the loop). Asp times
both on the first calls and remembers the winner per key in its performance database
(``ASP_AUTOTUNE=off`` uses the first).
"""

from __future__ import annotations


from asp_core import PlatformOptimizer, PlatformProgram, SpecializationContext, Variant
from asp_core import cast as c

from {{ cookiecutter.package_name }}.platforms import ERRORS

__all__ = ["LoopVariants", "SCHEDULES"]

#: variant name -> the pragma on the loop (a structured node: the printer writes the text); the
#: flag of elements for which Python raises is OR-reduced over the threads
SCHEDULES = (("parallel-simd", c.Pragma("omp", "parallel for simd",
                                        [c.Clause("schedule", ("static",)),
                                         c.Clause("reduction", (ERRORS,), modifier="|")])),
             ("serial", None))


class LoopVariants(PlatformOptimizer):
    name = "loop-variants"
    platforms = ("openmp",)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        out = []
        for name, pragma in SCHEDULES:
            module = program.ir.clone()
            loop = next(s for s in module.body[-1].body.body if isinstance(s, c.For))
            loop.pragmas = [pragma.clone()] if pragma else []
            out.append(Variant(name, PlatformProgram(program.platform, module, program.meta),
                               {"parallel": pragma is not None}))
        return out

"""Registration of the GMM specializer with Asp (the ``asp`` entry point).

Imports only the core: the components are registered by name and load when a kernel is first
specialised (no NumPy, SciPy, scikit-learn or CUDA for ``asp list`` or another plugin's call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import hookimpl

if TYPE_CHECKING:
    from asp_bench import BenchmarkRegistry
    from asp_core.registry import Registry

NAME = "gmm"


@hookimpl
def asp_register_specializers(register: Registry) -> None:
    # Components are named, not imported: a stencil or MPK call, ``asp list`` and ``import
    # asp_core`` load none of asp-gmm's implementation.
    register.specializer(
        name=NAME,
        description="Gaussian mixture EM with autotuned CPU/CUDA variants (Asp paper, Sec. 5)",
        signature="asp_gmm.signature:signature",
        tuning_key="asp_gmm.signature:tuning_key",
        # the paper: one timed EM iteration per variant (the core times those within 10 % of
        # the best once more), then the fastest
        tuning_repeats=1,
    )
    for phase, name, target, priority, platforms in (
            ("frontend", "em-call", "frontend:EMFrontend", 0, None),
            ("domain_optimization", "em-passes", "passes:GMMDomainOptimizer", 0, None),
            ("platform_selection", "cuda", "platforms:CudaPlatform", 20, None),
            ("platform_selection", "openmp", "platforms:OpenMPPlatform", 10, None),
            ("platform_selection", "numpy", "platforms:NumpyPlatform", -10, None),
            ("platform_optimization", "cpu-variants", "variants:CPUVariants", 0, ("openmp",)),
            ("platform_optimization", "cuda-variants", "variants:CudaVariants", 0, ("cuda",)),
            ("backend", "openmp-c", "backends:OpenMPBackend", 0, ("openmp",)),
            ("backend", "cuda-c", "backends:CudaBackend", 0, ("cuda",)),
            ("backend", "numpy", "backends:NumpyBackend", 0, ("numpy",))):
        register.component(specializer=NAME, phase=phase, name=name, obj=f"asp_gmm.{target}",
                           priority=priority, platforms=platforms)


@hookimpl
def asp_register_benchmarks(register: BenchmarkRegistry) -> None:
    from asp_gmm.bench import run_gmm_benchmarks

    register.benchmark(name="gmm", specializer=NAME, func=run_gmm_benchmarks,
                       description="GaussianMixture.fit as users call it (first fit in a "
                                   "new process with an empty cache, second fit) and one EM "
                                   "iteration (kernel only) vs scikit-learn")

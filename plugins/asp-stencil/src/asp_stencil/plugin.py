"""Registration of the stencil specializer and its components (entry point ``asp: stencil``).

Only ``asp_core`` and this package are imported here; numba, Devito and pystencils (benchmark
anchors) are imported inside the benchmark functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import hookimpl

if TYPE_CHECKING:
    from asp_bench import BenchmarkRegistry
    from asp_core.registry import Registry

_S = "stencil"


@hookimpl
def asp_register_specializers(register: Registry) -> None:
    # Components are named, not imported: `asp list` and `import asp_core` stay cheap, and the
    # implementation modules (numpy, the C lowering) load at a kernel's first call.
    register.specializer(
        name=_S,
        description="Structured-grid stencils (Asp paper, Figure 2): OpenMP C, autotuned",
        signature="asp_stencil.signature:stencil_signature",
        respecialize="asp_stencil.signature:respecialize",
        # the key holds everything of the object the code depends on (its attributes' values)
        shared_lowering=True,
    )
    register.component(specializer=_S, phase="frontend", name="python-ast",
                       obj="asp_stencil.frontend:StencilFrontend", priority=0)
    register.component(specializer=_S, phase="domain_optimization", name="stencil-passes",
                       obj="asp_stencil.domain:StencilDomainOptimizer", priority=0)
    register.component(specializer=_S, phase="platform_selection", name="openmp",
                       obj="asp_stencil.openmp:OpenMPPlatform", priority=10)
    register.component(specializer=_S, phase="platform_selection", name="python",
                       obj="asp_stencil.python_platform:PythonPlatform", priority=-100)
    # the blocked multi-step code of ``StencilKernel.iterate``, which names this platform; its
    # check declines ordinary calls
    register.component(specializer=_S, phase="platform_selection", name="openmp-temporal",
                       obj="asp_stencil.temporal.platform:TemporalPlatform", priority=-200)
    register.component(specializer=_S, phase="platform_optimization", name="schedules",
                       obj="asp_stencil.variants:ScheduleVariants", priority=0,
                       platforms=("openmp",))
    register.component(specializer=_S, phase="backend", name="c",
                       obj="asp_stencil.backend:OpenMPBackend", priority=0, platforms=("openmp",))
    register.component(specializer=_S, phase="platform_optimization", name="temporal-params",
                       obj="asp_stencil.temporal.variants:TemporalVariants", priority=0,
                       platforms=("openmp-temporal",))
    register.component(specializer=_S, phase="backend", name="c-temporal",
                       obj="asp_stencil.temporal.backend:TemporalBackend", priority=0,
                       platforms=("openmp-temporal",))
    register.component(specializer=_S, phase="backend", name="python",
                       obj="asp_stencil.python_platform:PythonBackend", priority=0,
                       platforms=("python",))


@hookimpl
def asp_doctor_checks() -> list[tuple[str, bool, str]]:
    # the stencil settings as iterate and the CUDA platform read them (an invalid one failed
    # only at the first iterate or GPU call)
    from asp_core import config

    from .cuda.devmem import wanted_binding
    from .temporal.iterate import temporal_mode
    from .temporal.variants import forced_params

    problems = config.problems(lambda: temporal_mode(None), forced_params, wanted_binding)
    return [("asp-stencil settings", not problems, "; ".join(problems) or
             "ASP_STENCIL_TEMPORAL, ASP_STENCIL_TEMPORAL_PARAMS and ASP_CUDA_MEMORY valid")]


@hookimpl
def asp_register_benchmarks(register: BenchmarkRegistry) -> None:
    from .bench import run_stencil_benchmarks

    register.benchmark(name="stencil", specializer="stencil", func=run_stencil_benchmarks,
                       description="3-D Laplacian and divergence 256^3, 2-D/3-D heat 64 steps vs "
                                   "numpy, numba, Devito, pystencils and STREAM copy")

"""Registration of the stencil specializer and its components (entry point ``asp: stencil``).

Only ``asp_core`` and this package are imported here; numba, Devito and pystencils (benchmark
anchors) are imported inside the benchmark functions.
"""

from __future__ import annotations

from asp_core import hookimpl

from .backend import OpenMPBackend
from .domain import StencilDomainOptimizer
from .frontend import StencilFrontend
from .openmp import OpenMPPlatform
from .python_platform import PythonBackend, PythonPlatform
from .signature import stencil_signature
from .variants import ScheduleVariants


@hookimpl
def asp_register_specializers(register):  # type: ignore[no-untyped-def]
    register.specializer(
        name="stencil",
        description="Structured-grid stencils (Asp paper, Figure 2): OpenMP C, autotuned",
        signature=stencil_signature,
    )
    register.component(specializer="stencil", phase="frontend", name="python-ast",
                       obj=StencilFrontend(), priority=0)
    register.component(specializer="stencil", phase="domain_optimization", name="stencil-passes",
                       obj=StencilDomainOptimizer(), priority=0)
    register.component(specializer="stencil", phase="platform_selection", name="openmp",
                       obj=OpenMPPlatform(), priority=10)
    register.component(specializer="stencil", phase="platform_selection", name="python",
                       obj=PythonPlatform(), priority=-100)
    register.component(specializer="stencil", phase="platform_optimization", name="schedules",
                       obj=ScheduleVariants(), priority=0)
    register.component(specializer="stencil", phase="backend", name="c",
                       obj=OpenMPBackend(), priority=0)
    register.component(specializer="stencil", phase="backend", name="python",
                       obj=PythonBackend(), priority=0)


@hookimpl
def asp_register_benchmarks(register):  # type: ignore[no-untyped-def]
    from .bench import run_stencil_benchmarks

    register.benchmark(name="stencil", specializer="stencil", func=run_stencil_benchmarks,
                       description="3-D Laplacian and divergence 256^3, 2-D/3-D heat 64 steps vs "
                                   "numpy, numba, Devito, pystencils and STREAM copy")

"""Entry point ``asp: stencil-cuda``: the CUDA backend and the temporal-blocking benchmarks.

Registers, for the ``stencil`` specializer defined by ``asp_stencil.plugin``, a ``cuda``
platform (priority above OpenMP, but its ``check`` refuses unless a GPU is present or the user
forces it), the ``cuda-blocks`` variant generator and the ``cuda`` backend; and the benchmark
suite ``stencil-temporal``. Only ``asp_core`` and this package are imported here: pycuda,
cuda-python, cupy, numba, Devito and pystencils are imported when something runs; the
components themselves are registered by name and imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import hookimpl

if TYPE_CHECKING:
    from asp_bench import BenchmarkRegistry
    from asp_core.registry import Registry


@hookimpl
def asp_register_specializers(register: Registry) -> None:
    register.component(specializer="stencil", phase="platform_selection", name="cuda",
                       obj="asp_stencil.cuda.platform:CudaPlatform", priority=20)
    register.component(specializer="stencil", phase="platform_optimization", name="cuda-blocks",
                       obj="asp_stencil.cuda.platform:CudaVariants", priority=0,
                       platforms=("cuda",))
    register.component(specializer="stencil", phase="backend", name="cuda",
                       obj="asp_stencil.cuda.backend:CudaBackend", priority=0,
                       platforms=("cuda",))


@hookimpl
def asp_register_benchmarks(register: BenchmarkRegistry) -> None:
    from .temporal.bench import run_temporal_benchmarks

    register.benchmark(name="stencil-temporal", specializer="stencil",
                       func=run_temporal_benchmarks,
                       description="2-D/3-D heat and 3-D Laplacian Jacobi, 64 steps beyond the "
                                   "L3: temporally blocked vs plain sweeps vs numba/Devito/"
                                   "pystencils, effective bandwidth vs STREAM copy")

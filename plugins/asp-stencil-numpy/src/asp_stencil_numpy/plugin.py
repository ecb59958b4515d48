"""Entry point ``asp: stencil-numpy``: registers the NumPy components for the ``stencil`` specializer.

Only ``asp_core`` and this package's light modules are imported here; the DAST lowering (which
imports ``asp_stencil``) loads when a kernel is first specialised on this platform, so ``asp list``
stays cheap and this plugin still loads when asp-stencil is blocked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import hookimpl
from asp_stencil_numpy.backend import NumpyBackend
from asp_stencil_numpy.platform import PRIORITY, NumpyPlatform
from asp_stencil_numpy.variants import SlabVariants

if TYPE_CHECKING:
    from asp_bench import BenchmarkRegistry
    from asp_core.registry import Registry

SPECIALIZER = "stencil"


@hookimpl
def asp_register_specializers(register: Registry) -> None:
    register.component(specializer=SPECIALIZER, phase="platform_selection", name="numpy",
                       obj=NumpyPlatform(), priority=PRIORITY)
    # Only used on the numpy platform (their ``platforms`` say so); the low priority keeps
    # asp-stencil's own components first in `asp list`, which does not filter by platform.
    register.component(specializer=SPECIALIZER, phase="platform_optimization",
                       name="numpy-slabs", obj=SlabVariants(), priority=PRIORITY)
    register.component(specializer=SPECIALIZER, phase="backend", name="numpy",
                       obj=NumpyBackend(), priority=PRIORITY)


@hookimpl
def asp_register_benchmarks(register: BenchmarkRegistry) -> None:
    from asp_stencil_numpy.bench import run_stencil_numpy_benchmarks

    register.benchmark(name="stencil-numpy", specializer=SPECIALIZER,
                       func=run_stencil_numpy_benchmarks,
                       description="stencil kernels on the NumPy platform vs pure Python, "
                                   "hand-written NumPy slicing and the OpenMP platform")

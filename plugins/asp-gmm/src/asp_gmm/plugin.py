"""Registration of the GMM specializer with Asp (the ``asp`` entry point).

Imports only the core and this package's light modules: no NumPy, SciPy, scikit-learn or CUDA
(``asp list`` stays fast); those are imported when a kernel is first specialised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asp_core import hookimpl
from asp_gmm.backends import CudaBackend, NumpyBackend, OpenMPBackend
from asp_gmm.frontend import EMFrontend
from asp_gmm.passes import GMMDomainOptimizer
from asp_gmm.platforms import CudaPlatform, NumpyPlatform, OpenMPPlatform
from asp_gmm.variants import CPUVariants, CudaVariants

if TYPE_CHECKING:
    from asp_bench import BenchmarkRegistry
    from asp_core.registry import Registry

NAME = "gmm"


def _signature(args: tuple, kwargs: dict, instance: Any) -> tuple:
    from asp_gmm.signature import signature

    return signature(args, kwargs, instance)


def _tuning_key(args: tuple, kwargs: dict, instance: Any) -> tuple:
    from asp_gmm.signature import tuning_key

    return tuning_key(args, kwargs, instance)


@hookimpl
def asp_register_specializers(register: Registry) -> None:
    register.specializer(
        name=NAME,
        description="Gaussian mixture EM with autotuned CPU/CUDA variants (Asp paper, Sec. 5)",
        signature=_signature,
        tuning_key=_tuning_key,
        tuning_repeats=1,  # the paper: one timed EM iteration per variant, then the fastest
    )
    register.component(specializer=NAME, phase="frontend", name="em-call", obj=EMFrontend())
    register.component(specializer=NAME, phase="domain_optimization", name="em-passes",
                       obj=GMMDomainOptimizer())
    register.component(specializer=NAME, phase="platform_selection", name="cuda",
                       obj=CudaPlatform(), priority=20)
    register.component(specializer=NAME, phase="platform_selection", name="openmp",
                       obj=OpenMPPlatform(), priority=10)
    register.component(specializer=NAME, phase="platform_selection", name="numpy",
                       obj=NumpyPlatform(), priority=-10)
    register.component(specializer=NAME, phase="platform_optimization", name="cpu-variants",
                       obj=CPUVariants())
    register.component(specializer=NAME, phase="platform_optimization", name="cuda-variants",
                       obj=CudaVariants())
    register.component(specializer=NAME, phase="backend", name="openmp-c", obj=OpenMPBackend())
    register.component(specializer=NAME, phase="backend", name="cuda-c", obj=CudaBackend())
    register.component(specializer=NAME, phase="backend", name="numpy", obj=NumpyBackend())


@hookimpl
def asp_register_benchmarks(register: BenchmarkRegistry) -> None:
    from asp_gmm.bench import run_gmm_benchmarks

    register.benchmark(name="gmm", specializer=NAME, func=run_gmm_benchmarks,
                       description="GaussianMixture.fit as users call it (first fit in a "
                                   "new process with an empty cache, second fit) and one EM "
                                   "iteration (kernel only) vs scikit-learn")

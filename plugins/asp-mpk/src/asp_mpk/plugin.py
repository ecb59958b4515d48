"""Registration of the ``mpk`` specializer with Asp (the ``asp`` entry point).

Imports only the core: the components are registered by name and load at the first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import hookimpl

if TYPE_CHECKING:
    from asp_bench import BenchmarkRegistry
    from asp_core.registry import Registry


@hookimpl
def asp_register_specializers(register: Registry) -> None:
    # Components are named, not imported: a stencil or GMM call, ``asp list`` and ``import
    # asp_core`` load none of asp-mpk's implementation (which imports SciPy).
    where = "asp_mpk.components:"
    register.specializer(
        name="mpk",
        description="Communication-avoiding matrix powers (PA1) and s-step CG (Asp paper)",
        signature=where + "signature",
        tuning_key=where + "tuning_key",
        tuning_repeats=2,
    )
    register.component(specializer="mpk", phase="frontend", name="matrix",
                       obj=where + "MatrixFrontend", priority=0)
    register.component(specializer="mpk", phase="domain_optimization", name="mpk-passes",
                       obj=where + "MPKDomainOptimizer", priority=0)
    register.component(specializer="mpk", phase="platform_selection", name="openmp",
                       obj=where + "OpenMPPlatform", priority=10)
    register.component(specializer="mpk", phase="platform_selection", name="scipy",
                       obj=where + "ScipyPlatform", priority=0)
    register.component(specializer="mpk", phase="platform_optimization", name="pa1-variants",
                       obj=where + "PA1Variants", priority=0, platforms=("openmp",))
    register.component(specializer="mpk", phase="backend", name="c", obj=where + "CBackend",
                       priority=10, platforms=("openmp",))
    register.component(specializer="mpk", phase="backend", name="scipy",
                       obj=where + "ScipyBackend", priority=0, platforms=("scipy",))


@hookimpl
def asp_doctor_checks() -> list[tuple[str, bool, str]]:
    import importlib

    from asp_core import config

    from asp_mpk.powers import compile_choice
    from asp_mpk.writewatch import watcher

    problems = config.problems(compile_choice,
                               lambda: config.flag("ASP_MPK_WATCH_WRITES", True))
    if problems:
        return [("asp-mpk settings", False, "; ".join(problems))]
    try:   # loaded, not only found: a build that cannot load (a libgomp missing) was "ok"
        importlib.import_module("asp_mpk._planner")
        built, why = True, ""
    except ImportError as exc:
        built, why = False, f" ({exc})"
    if watcher() is not None:
        watching = "on: matrix_powers/spmv/cg recognise an unchanged matrix without reading it"
    else:
        why = ("ASP_MPK_WATCH_WRITES=0" if not config.flag("ASP_MPK_WATCH_WRITES", True) else
               "needs Linux >= 6.7 with the userfaultfd system call allowed; container seccomp "
               "profiles may filter it")
        watching = (f"off ({why}): matrix_powers/spmv/cg checksum A's arrays on every call; "
                    "asp_mpk.MatrixPowers(A, k) never reads A again")
    return [
        ("asp-mpk plan builder", built, "native (pybind11)" if built else
         f"not built{why}: matrix analysis runs in numpy, several times slower (reinstall "
         "asp-mpk with a C++ compiler present)"),
        ("asp-mpk write watching", True, watching),
    ]


@hookimpl
def asp_register_benchmarks(register: BenchmarkRegistry) -> None:
    from asp_mpk.bench import run_benchmarks

    register.benchmark(name="mpk", specializer="mpk", func=run_benchmarks,
                       description="matrix powers k=2..16 and CA-CG vs SciPy (Poisson 2-D/3-D)")

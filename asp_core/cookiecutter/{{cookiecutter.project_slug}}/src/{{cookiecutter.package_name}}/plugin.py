"""Registration with Asp (the ``asp`` entry point in pyproject.toml points here).

``asp list`` imports every installed plugin, so this module imports nothing but ``asp_core``:
components are registered by ``"module:attribute"`` name and imported at a kernel's first call
(a class named there is instantiated). ``priority`` decides between competing components of one
phase when the user sets nothing; ``platforms`` tells the registry, without importing anything,
which platform a platform-optimisation or backend component serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asp_core import hookimpl

if TYPE_CHECKING:
    from asp_core.registry import Registry

SPECIALIZER = "{{ cookiecutter.specializer_name }}"
PKG = "{{ cookiecutter.package_name }}"


@hookimpl
def asp_register_specializers(register: Registry) -> None:
    register.specializer(name=SPECIALIZER, description="{{ cookiecutter.description|escape_str }}",
                         signature=f"{PKG}.signature:signature")
    register.component(specializer=SPECIALIZER, phase="frontend", name="python-ast",
                       obj=f"{PKG}.frontend:ElementwiseFrontend")
    register.component(specializer=SPECIALIZER, phase="domain_optimization",
                       name="domain-passes", obj=f"{PKG}.domain:ElementwiseOptimizer")
    register.component(specializer=SPECIALIZER, phase="platform_selection", name="openmp",
                       obj=f"{PKG}.platforms:OpenMPPlatform", priority=10)
    register.component(specializer=SPECIALIZER, phase="platform_selection", name="python",
                       obj=f"{PKG}.platforms:PythonPlatform", priority=-100)
    register.component(specializer=SPECIALIZER, phase="platform_optimization",
                       name="loop-variants", obj=f"{PKG}.variants:LoopVariants",
                       platforms=("openmp",))
    register.component(specializer=SPECIALIZER, phase="backend", name="c",
                       obj=f"{PKG}.backends:CBackend", platforms=("openmp",))
    register.component(specializer=SPECIALIZER, phase="backend", name="vectorize",
                       obj=f"{PKG}.backends:PythonBackend", platforms=("python",))

"""Registration with Asp (the ``asp`` entry point in pyproject.toml points here).

Keep this module's imports light: ``asp list`` imports every plugin. Components are plain
objects; ``priority`` decides between competing components of one phase when the user sets
nothing (see Asp's plugin conventions).
"""

from __future__ import annotations

from typing import Any

from asp_core import hookimpl

from {{ cookiecutter.package_name }}.api import SPECIALIZER
from {{ cookiecutter.package_name }}.backends import CBackend, PythonBackend
from {{ cookiecutter.package_name }}.domain import ElementwiseOptimizer
from {{ cookiecutter.package_name }}.frontend import ElementwiseFrontend
from {{ cookiecutter.package_name }}.platforms import OpenMPPlatform, PythonPlatform
from {{ cookiecutter.package_name }}.signature import signature
from {{ cookiecutter.package_name }}.variants import LoopVariants


@hookimpl
def asp_register_specializers(register: Any) -> None:
    register.specializer(name=SPECIALIZER, description="{{ cookiecutter.description }}",
                         signature=signature)
    register.component(specializer=SPECIALIZER, phase="frontend", name="python-ast",
                       obj=ElementwiseFrontend())
    register.component(specializer=SPECIALIZER, phase="domain_optimization",
                       name="domain-passes", obj=ElementwiseOptimizer())
    register.component(specializer=SPECIALIZER, phase="platform_selection", name="openmp",
                       obj=OpenMPPlatform(), priority=10)
    register.component(specializer=SPECIALIZER, phase="platform_selection", name="python",
                       obj=PythonPlatform(), priority=-100)
    register.component(specializer=SPECIALIZER, phase="platform_optimization",
                       name="loop-variants", obj=LoopVariants())
    register.component(specializer=SPECIALIZER, phase="backend", name="c", obj=CBackend())
    register.component(specializer=SPECIALIZER, phase="backend", name="vectorize",
                       obj=PythonBackend())

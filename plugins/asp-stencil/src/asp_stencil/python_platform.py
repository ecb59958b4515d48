"""The ``python`` platform: the kernel's own pure-Python semantics, chosen when C cannot run.

It is the last platform candidate (lowest priority): used when no C compiler is installed, for
grids the C backend does not compile (float32), or on request (``ASP_PLATFORM_SELECTION=python``).
Unlike the dispatcher's fallback it is a *selected* platform, so no warning is given, and the
arguments are still validated before the kernel runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from asp_core.components import Backend, Platform, PlatformProgram, Variant

from .grid import fill_periodic_ghosts
from .signature import check_grids

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["PythonPlatform", "PythonBackend"]


class PythonPlatform(Platform):
    name = "python"

    def check(self, dast: Any, ctx: SpecializationContext) -> str | None:
        return None

    def lower(self, dast: Any, ctx: SpecializationContext) -> PlatformProgram:
        return PlatformProgram("python", dast, {"dast": dast})


class PythonBackend(Backend):
    name = "python"
    platforms = ("python",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., Any]:
        func = ctx.func
        if func is None:  # every stencil kernel has one; a context without it is a caller's bug
            raise TypeError("the python platform needs the kernel function (ctx.func is None)")
        instance = ctx.instance
        bound = func if getattr(func, "__self__", None) is not None or instance is None \
            else func.__get__(instance, type(instance))

        def run(*grids: Any) -> Any:
            check_grids(grids)
            fill_periodic_ghosts(grids)
            return bound(*grids)

        return run

"""Base classes stating what a component of each phase provides (optional: components are
duck-typed), with defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["PlatformProgram", "Variant", "Frontend", "DomainOptimizer", "Platform",
           "PlatformOptimizer", "Backend"]


@dataclass
class PlatformProgram:
    """The result of platform selection: the platform's name and its IR (usually a PAST)."""

    platform: str
    ir: Any
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Variant:
    """One candidate implementation (a program plus the tuning parameters that produced it)."""

    name: str
    program: PlatformProgram
    params: dict[str, Any] = field(default_factory=dict)


class Frontend:
    """Phase 1: Python source → domain AST (DAST)."""

    def parse(self, ctx: SpecializationContext) -> Any:
        """Return the DAST, or ``raise ctx.unsupported(node, construct)``."""
        raise NotImplementedError


class DomainOptimizer:
    """Phase 2: platform-independent rewrites of the DAST."""

    def optimize(self, dast: Any, ctx: SpecializationContext) -> Any:
        return dast


class Platform:
    """Phase 3: a target (OpenMP C, CUDA, NumPy, ...) that can lower a DAST to a PAST."""

    name: str = ""
    #: the language of the code it compiles (``"c"``), if any: without that compiler the
    #: platform can run no kernel here, which :meth:`unavailable_reason` says
    compiler: str | None = None

    def check(self, dast: Any, ctx: SpecializationContext) -> str | None:
        """``None`` if this platform can run the kernel here, else the reason it cannot."""
        return None

    def unavailable_reason(self) -> str | None:
        """Why this platform can run no kernel on this machine, else None (for ``asp list``:
        no process is started, no compiler probed; the compiler is only looked for)."""
        if self.compiler is None:
            return None
        from asp_core.toolchain import compiler_unavailable_reason

        return compiler_unavailable_reason(self.compiler, probe=False)

    def lower(self, dast: Any, ctx: SpecializationContext) -> PlatformProgram:
        raise NotImplementedError


class PlatformOptimizer:
    """Phase 4: rewrites of the PAST that yield variants with tuning parameters."""

    platforms: tuple[str, ...] = ()

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        return [Variant("default", program, {})]

    def materialise(self, variant: Variant, ctx: SpecializationContext) -> Variant:
        """Finish one variant just before the backend builds it: data-dependent work too
        costly for every proposed variant when a stored winner means only one is built
        (asp-mpk's plan and fallback), so the backend only compiles and binds."""
        return variant


class Backend:
    """Phase 5: source → compiled → bound callable taking the kernel's call arguments."""

    platforms: tuple[str, ...] = ()

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., Any]:
        raise NotImplementedError

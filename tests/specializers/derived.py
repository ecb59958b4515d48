"""Specializers derived from the element-wise one, for core tests that need a different key
function, a missing platform or a platform that never checks for a compiler.

:func:`derived_plugin` returns a plugin object that re-registers every element-wise component under
a new specializer name, with phases dropped or replaced, so each test states only what differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from asp_core import SpecializationContext, hookimpl
from tests.specializers import elementwise

if TYPE_CHECKING:
    from asp_core.registry import Registry


class _Renamed:
    """A registry proxy that files the element-wise registrations under another name."""

    def __init__(self, registry: Any, name: str, signature: Callable | None,
                 drop: set[tuple[str, str]], replace: dict[tuple[str, str], Any],
                 respecialize: Callable | None = None) -> None:
        self._registry, self._name, self._signature = registry, name, signature
        self._drop, self._replace, self._respecialize = drop, replace, respecialize

    def specializer(self, name: str, description: str = "", signature: Any = None,
                    **kw: Any) -> Any:
        return self._registry.specializer(name=self._name, description=description,
                                          signature=self._signature or signature,
                                          respecialize=self._respecialize, **kw)

    def component(self, specializer: str, phase: str, name: str, obj: Any,
                  priority: int = 0) -> Any:
        if (phase, name) in self._drop:
            return None
        obj = self._replace.get((phase, name), obj)
        return self._registry.component(specializer=self._name, phase=phase, name=name, obj=obj,
                                        priority=priority)


class DerivedPlugin:
    """Plugin object: ``pm.register(DerivedPlugin(...))``."""

    def __init__(self, name: str, *, signature: Callable | None = None,
                 drop: tuple[tuple[str, str], ...] = (),
                 replace: dict[tuple[str, str], Any] | None = None,
                 respecialize: Callable | None = None) -> None:
        self.name, self.signature = name, signature
        self.drop, self.replace = set(drop), dict(replace or {})
        self.respecialize = respecialize

    @hookimpl
    def asp_register_specializers(self, register: Registry) -> None:
        elementwise.asp_register_specializers(
            _Renamed(register, self.name, self.signature, self.drop, self.replace,
                     self.respecialize))


class TrustingOpenMP(elementwise.OpenMPPlatform):
    """An OpenMP platform that does not check for a compiler, so the backend meets its absence."""

    def check(self, dast: Any, ctx: SpecializationContext) -> None:
        return None


def shaped_signature(args: tuple, kwargs: dict, instance: Any) -> tuple:
    """The element-wise key plus the shape: every new shape is a new specialisation."""
    return elementwise.signature(args, kwargs, instance) + (args[0].shape,)

"""Fake entry points and plugin modules for plugin-manager tests (no installation needed)."""

from __future__ import annotations

import types
from typing import Any

from asp_core import hookimpl
from asp_core import plugins as plugins_mod
from asp_core.components import Platform


class FakeDist:
    """Stands in for ``importlib.metadata.Distribution``; ``reads`` counts the reads of its
    metadata, each a parse of a file in the real one (``name`` and ``version`` read it too)."""

    def __init__(self, name: str, version: str = "1.2.3") -> None:
        self._fields = {"Name": name, "Version": version}
        self.reads = 0

    @property
    def metadata(self) -> dict[str, str]:
        self.reads += 1
        return dict(self._fields)

    @property
    def name(self) -> str:
        return self.metadata["Name"]

    @property
    def version(self) -> str:
        return self.metadata["Version"]


class FakeEntryPoint:
    """Stands in for ``importlib.metadata.EntryPoint``; ``load`` returns or raises."""

    def __init__(self, name: str, load: Any, dist: str | None = None) -> None:
        self.name = name
        self.dist = FakeDist(dist or f"asp-{name}")
        self._load = load

    def load(self) -> Any:
        if isinstance(self._load, BaseException):
            raise self._load
        return self._load


def module(name: str, **hooks: Any) -> types.ModuleType:
    """A plugin module whose attributes are the given functions marked as hook implementations."""
    mod = types.ModuleType(name)
    for attr, fn in hooks.items():
        setattr(mod, attr, hookimpl(fn))
    return mod


def registers(spec: str, *components: tuple[str, str, int]):
    """An ``asp_register_specializers`` declaring ``spec`` and platform components."""
    def asp_register_specializers(register):
        if spec:
            register.specializer(name=spec, description=f"{spec} test", signature=None)
        for s, name, prio in components:
            register.component(specializer=s, phase="platform_selection", name=name,
                               obj=Platform(), priority=prio)
    return asp_register_specializers


def install(monkeypatch: Any, *eps: FakeEntryPoint) -> list[FakeEntryPoint]:
    """Make ``asp_core.plugins`` see exactly ``eps`` as the installed entry points."""
    current = list(eps)

    def fake_entry_points(group: str | None = None, **kw: Any) -> list[FakeEntryPoint]:
        assert group == plugins_mod.ENTRY_POINT_GROUP
        return list(current)

    monkeypatch.setattr(plugins_mod, "metadata",
                        types.SimpleNamespace(entry_points=fake_entry_points))
    for var in ("ASP_DISABLE_PLUGIN_AUTOLOAD", "ASP_BLOCK_PLUGINS", "ASP_LOAD_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    plugins_mod.reset()
    return current

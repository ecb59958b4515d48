"""Core test fixtures: an isolated cache per test session and the test specializer."""

from __future__ import annotations

import pytest

from asp_core import plugins


@pytest.fixture
def elementwise():
    """The element-wise test specializer, registered for one test."""
    from tests.specializers import elementwise as module

    name = plugins.register_plugin(module, name="test-elementwise")
    yield module
    plugins.unregister_plugin(name)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache and perf database for one test."""
    root = tmp_path / "asp-cache"
    monkeypatch.setenv("ASP_CACHE_DIR", str(root))
    return root


@pytest.fixture
def toml(tmp_path, monkeypatch):
    """``toml(content, name="asp.toml")`` writes an Asp config file (text, or bytes as they are)
    and points ``ASP_CONFIG`` at it; the settings a file could shadow are unset."""
    def write(content: str | bytes, name: str = "asp.toml"):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        monkeypatch.setenv("ASP_CONFIG", str(path))
        return path
    for var in ("ASP_MODE", "ASP_AUTOTUNE", "ASP_CACHE_DIR", "ASP_COMPILE_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    return write


@pytest.fixture
def plugin_state():
    """Plugins re-read from scratch before and after the test (entry points, environment)."""
    plugins.reset()
    yield plugins
    plugins.reset()


@pytest.fixture
def derived():
    """Register a specializer derived from the element-wise one: ``derived("name", ...)``."""
    from tests.specializers.derived import DerivedPlugin

    names = []

    def make(name, **kw):
        names.append(plugins.register_plugin(DerivedPlugin(name, **kw), name=f"test-{name}"))
        return name

    yield make
    for n in names:
        plugins.unregister_plugin(n)


@pytest.fixture
def entry_points(monkeypatch, plugin_state):
    """Install fake entry points: ``entry_points(ep, ep, ...)`` (adds to those installed)."""
    from tests.specializers.fake_plugins import install

    current = install(monkeypatch)

    def add(*new):
        current.extend(new)
        plugins.reset()

    return add

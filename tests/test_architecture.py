"""Plugins reach compiled code only through the core's public API (docs/architecture/core-api.md):
their sources must not touch the dispatcher's tuning internals or the core's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "plugins").glob("*/src/**/*.py"))

#: the core's tuning internals: ``Dispatcher.tuning``/``tuned``/``keys`` are the public way in
INTERNAL_NAMES = {"TuningCallable"}
#: attributes of core objects a plugin must not read: ``specializations`` holds the core's
#: stand-ins while tuning, ``_built``/``_table`` are what they and the dispatcher wrap. A
#: ``.tuner`` is public where the core documents one (``asp_core.collective.AgreedVariants``);
#: the stand-ins' can only be reached through the names banned here
INTERNAL_ATTRS = {"specializations", "_built", "_table"}
#: nor look up by name, as on a stand-in (``getattr(fn, "tuner")``)
LOOKED_UP = INTERNAL_ATTRS | {"tuner", "built"}


def violations(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, what)`` for each use of the core's internals in a plugin's module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in INTERNAL_NAMES:
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if node.attr in INTERNAL_NAMES or (node.attr in INTERNAL_ATTRS and not own):
                found.append((node.lineno, f".{node.attr}"))
            elif (node.attr.startswith("_") and not node.attr.startswith("__")
                  and isinstance(node.value, ast.Attribute | ast.Name)
                  and ast.unparse(node.value).startswith("asp_core")):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) >= 2 and \
                isinstance(node.args[1], ast.Constant) and node.args[1].value in LOOKED_UP:
            found.append((node.lineno, f"{node.func.id}(..., {node.args[1].value!r})"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asp_core"):
            for alias in node.names:
                if alias.name in INTERNAL_NAMES or (alias.name.startswith("_")
                                                    and not alias.name.startswith("__")):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
    return found


def test_plugin_sources_are_found() -> None:
    packages = {p.relative_to(ROOT / "plugins").parts[0] for p in SOURCES}
    assert {"asp-gmm", "asp-mpk", "asp-stencil"} <= packages


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT / "plugins")))
def test_plugin_uses_only_public_core_api(path: Path) -> None:
    bad = violations(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    assert not bad, f"{path.relative_to(ROOT)} reaches into the core's internals: " + ", ".join(
        f"line {line}: {what}" for line, what in bad)


@pytest.mark.parametrize("source", [
    "from asp_core.pipeline import TuningCallable",
    "d.specializations.get(key)",
    "d.specializations[key].tuner.exclude('a')",
    "getattr(fn, 'tuner', None)",
    "getattr(fn, 'built', None)",
    "from asp_core.hardware import _stream_source",
    "asp_core.hardware._stream_source()",
])
def test_checker_flags_internals(source: str) -> None:
    assert violations(ast.parse(source))


@pytest.mark.parametrize("source", [
    "self.tuner.next()",
    "d.tuning(key).exclude('a', 'why')",
    "d.tuned(key)",
    "d.tuning(key).built.values()",
    "from asp_core.autotune import Autotuner",
    "obj.__name__",
])
def test_checker_allows_public_api(source: str) -> None:
    assert not violations(ast.parse(source))

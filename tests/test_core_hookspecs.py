"""Every hook is public API: it has a real docstring and is documented under docs/."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from asp_core import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _hooks() -> dict[str, object]:
    return {name: fn for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, "asp_spec")}


def test_there_are_hooks():
    names = set(_hooks())
    assert {"asp_register_specializers", "asp_register_benchmarks",
            "asp_register_commands"} <= names


@pytest.mark.parametrize("name", sorted(_hooks()))
def test_hook_has_docstring(name):
    doc = inspect.getdoc(_hooks()[name])
    assert doc and len(doc.split()) >= 10, f"hook {name} needs a docstring saying what it is for"
    params = [p for p in inspect.signature(_hooks()[name]).parameters]
    for p in params:
        assert f":param {p}:" in doc, f"hook {name}: parameter {p!r} is not documented"


def _doc_texts() -> dict[Path, str]:
    texts = {}
    for path in DOCS.rglob("*"):
        if path.suffix in (".md", ".rst", ".txt") and not {"requests", "_build"} & set(path.parts):
            texts[path] = path.read_text(errors="replace")
    return texts


@pytest.mark.parametrize("name", sorted(_hooks()))
def test_hook_is_documented_in_docs(name):
    texts = _doc_texts()
    pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])")
    found = [p for p, t in texts.items() if pattern.search(t)]
    assert found, (f"hook {name!r} is not documented anywhere under docs/ (searched "
                   f"{len(texts)} files); add it to docs/reference/hooks.md")

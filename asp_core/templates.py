"""Mako templates shipped as package data (``<package>/templates/<name>``), for generated code
that is mostly fixed text; a missing template variable is an error, not empty code.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

__all__ = ["get_template", "render"]


@functools.lru_cache(maxsize=None)
def _lookup(package: str) -> Any:
    from mako.lookup import TemplateLookup

    directory = resources.files(package) / "templates"
    if not directory.is_dir():
        raise FileNotFoundError(f"package {package!r} has no templates/ directory")
    return TemplateLookup(directories=[str(directory)], strict_undefined=True,
                          input_encoding="utf-8")


def get_template(package: str, name: str) -> Any:
    """The compiled :class:`mako.template.Template` ``name`` of ``package``."""
    from mako.exceptions import TopLevelLookupException

    try:
        return _lookup(package).get_template(name)
    except TopLevelLookupException:
        raise FileNotFoundError(f"no template {name!r} in package {package!r}") from None


def render(package: str, name: str, **context: Any) -> str:
    """Render template ``name`` of ``package`` with ``context``."""
    return str(get_template(package, name).render(**context))

"""Lazy exports for a plugin package's ``__init__`` (PEP 562): the ``asp`` entry point imports
the package to reach its registration module, and an ``__init__`` importing its whole API made
every program's first call pay for it (asp-mpk's: 40 ms in each stencil or GMM program)."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str], public: list[str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``: ``exports`` maps each name to
    the submodule defining it, imported on the name's first use and then kept in the package
    (later lookups skip the hook); ``dir()`` lists ``public`` (the package's ``__all__``)
    before they are imported::

        __getattr__, __dir__ = lazy_exports(__name__, {"MyKernel": "kernel"}, __all__)
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__

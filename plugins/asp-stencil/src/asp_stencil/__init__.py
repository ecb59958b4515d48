"""asp-stencil: the Asp paper's structured-grid stencil specializer.

>>> from asp_stencil import StencilGrid, StencilKernel
"""

from __future__ import annotations

from typing import Any

__all__ = ["StencilGrid", "StencilKernel", "distance", "default_neighbor_definition"]
__version__ = "0.1.0"

_EXPORTS = {"StencilGrid": "grid", "default_neighbor_definition": "grid", "distance": "grid",
            "StencilKernel": "kernel"}


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): the `asp` entry point imports asp_stencil.plugin, which must not pull in
    # numpy and the whole specializer just so that `asp list` can show the components.
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

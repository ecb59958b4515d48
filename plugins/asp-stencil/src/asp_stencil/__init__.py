"""asp-stencil: the Asp paper's structured-grid stencil specializer.

>>> from asp_stencil import StencilGrid, StencilKernel
"""

from __future__ import annotations

from asp_core.exports import lazy_exports

__all__ = ["StencilGrid", "StencilKernel", "distance", "default_neighbor_definition"]
__version__ = "0.1.0"

# the `asp` entry point imports asp_stencil.plugin, which must not pull in numpy and the whole
# specializer just so that `asp list` can show the components
__getattr__, __dir__ = lazy_exports(__name__, {
    "StencilGrid": "grid", "default_neighbor_definition": "grid", "distance": "grid",
    "StencilKernel": "kernel"}, __all__)

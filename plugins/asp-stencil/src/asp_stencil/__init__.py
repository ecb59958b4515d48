"""asp-stencil: the Asp paper's structured-grid stencil specializer.

>>> from asp_stencil import StencilGrid, StencilKernel
"""

from .grid import StencilGrid, default_neighbor_definition, distance
from .kernel import StencilKernel

__all__ = ["StencilGrid", "StencilKernel", "distance", "default_neighbor_definition"]
__version__ = "0.1.0"

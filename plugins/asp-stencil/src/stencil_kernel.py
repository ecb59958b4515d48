"""Compatibility module for the Asp paper's examples (``from stencil_kernel import *``).

Provides ``StencilKernel``, ``StencilGrid``, ``distance`` and ``numpy``, as the original Asp's
``stencil_kernel`` module did, so the paper's Figure 2 runs verbatim.
"""

import numpy

from asp_stencil import StencilGrid, StencilKernel, distance

__all__ = ["StencilKernel", "StencilGrid", "distance", "numpy"]

"""asp-stencil-numpy: a NumPy platform for Asp's stencil specializer, shipped as a separate plugin.

It registers, for the specializer ``stencil`` defined by *asp-stencil* (whose code it does not
touch), three components:

* platform selection ``numpy``: lowers the optimised stencil DAST to a Python function of
  vectorised NumPy slicing (one whole-array expression per DAST statement);
* platform optimisation ``numpy-slabs``: variants that evaluate the same statements slab by slab
  along the first axis, so the temporaries stay in cache (autotuned like any variant);
* backend ``numpy``: compiles that Python AST with :func:`compile` and binds it.

Its priority (-10) puts it below the OpenMP platform (10) and above the pure-Python platform
(-100): it is used by itself only where C cannot run (no compiler, float32 grids), and on request
with ``ASP_PLATFORM_SELECTION=numpy`` or the kernel option ``{"platform_selection": "numpy"}``.
"""

from asp_stencil_numpy.backend import NumpyBackend
from asp_stencil_numpy.platform import PRIORITY, NumpyPlatform
from asp_stencil_numpy.variants import SlabVariants

__version__ = "0.1.0"
__all__ = ["__version__", "PRIORITY", "NumpyBackend", "NumpyPlatform", "SlabVariants"]

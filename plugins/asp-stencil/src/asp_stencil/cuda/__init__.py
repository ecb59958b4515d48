"""CUDA backend of the stencil specializer (issue 4).

:mod:`.lowering` turns the optimised DAST into CUDA C (``asp_core.cast``, ``print_cuda``) with
direct and shared-memory-tiled variants; :mod:`.platform` holds the ``cuda`` platform (selected
only with a GPU, or when forced) and its variant generator; :mod:`.backend` compiles with nvcc
through the core and binds the ``extern "C"`` launchers with ctypes; :mod:`.devmem` moves data
through pycuda, cuda-python or cupy; :mod:`.emulate` runs the generated CUDA on the CPU (tests).
"""

from .lowering import CudaVariant, default_variants, lower_cuda, unsupported_reason

__all__ = ["CudaVariant", "default_variants", "lower_cuda", "unsupported_reason"]

"""The platform AST for C, C++ and CUDA, and its printers."""

from asp_core.cast.nodes import *  # noqa: F401,F403
from asp_core.cast.nodes import __all__ as _nodes_all
from asp_core.cast.printer import CPrinter, CudaPrinter, format_float, print_c, print_cuda

__all__ = [*_nodes_all, "CPrinter", "CudaPrinter", "format_float", "print_c", "print_cuda"]

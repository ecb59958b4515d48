"""Phase 5, backend: source → compiled shared object → a bound Python callable.

``c`` prints the platform AST, compiles it through the core (``ctx.compile``: toolchain, code
cache, locking) and binds the plain-C-ABI function with ctypes. ``vectorize`` serves the
``python`` platform. Both validate their arguments before running anything.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Callable

from asp_core import Backend, SpecializationContext, Variant
from asp_core import cast as c

from {{ cookiecutter.package_name }}.api import python_map
from {{ cookiecutter.package_name }}.platforms import FUNCTION, RAISES
from {{ cookiecutter.package_name }}.signature import check_arrays

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CBackend", "PythonBackend"]


class CBackend(Backend):
    name = "c"
    platforms = ("openmp",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., np.ndarray]:
        import numpy as np

        nparams = variant.program.meta["nparams"]
        lib = ctx.compile(c.print_c(variant.program.ir), name=FUNCTION,
                          specialised_on={"nparams": nparams, "variant": variant.name})
        fn = getattr(lib.cdll, FUNCTION)
        fn.argtypes = [ctypes.c_void_p] * (nparams + 1) + [ctypes.c_long]
        fn.restype = ctypes.c_int

        def run(*arrays: np.ndarray) -> np.ndarray:
            check_arrays(arrays)
            if len(arrays) != nparams:
                raise TypeError(f"this kernel takes {nparams} arrays, got {len(arrays)}")
            out = np.empty_like(arrays[0])
            raised = fn(*[a.ctypes.data for a in arrays], out.ctypes.data, out.size)
            for bit, exc in RAISES.items():   # as Python raises on such an element
                if raised & bit:
                    raise type(exc)(*exc.args)
            return out

        run.__name__ = f"{FUNCTION}_{variant.name.replace('-', '_')}"
        return run


class PythonBackend(Backend):
    name = "vectorize"
    platforms = ("python",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., np.ndarray]:
        return python_map(variant.program.ir)

"""asp-mpk: communication-avoiding matrix powers (PA1) and s-step CG for Asp.

Public API (SciPy-compatible):

- :func:`matrix_powers` ``(A, x, k, basis="monomial"|"newton"|"chebyshev", shifts=None)``
- :class:`MatrixPowers` ``(A, k)`` with ``.powers(x)`` / ``__call__``
- :func:`cg` ``(A, b, x0=None, *, rtol=1e-5, atol=0.0, maxiter=None, M=None, callback=None,
  s=None) -> (x, info)``
- :func:`spmv` ``(A, x)``

The API is imported on first use (PEP 562): the plugin's registration imports this package, and
every stencil or GMM program's first call paid for asp-mpk's modules (about 40 ms). ``from
asp_mpk import cg`` loads them at once, as before; SciPy and the compiler are only touched on a
first call.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["matrix_powers", "MatrixPowers", "cg", "spmv", "__version__"]

_EXPORTS = {"cg": "cacg", "MatrixPowers": "powers", "matrix_powers": "powers", "spmv": "powers"}


def __getattr__(name: str) -> Any:
    # kept in the module once imported, so that later lookups skip this function
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # the names not imported yet too (help(), tab completion)
    return sorted(set(globals()) | set(__all__))

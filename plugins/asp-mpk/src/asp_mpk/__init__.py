"""asp-mpk: communication-avoiding matrix powers (PA1) and s-step CG for Asp.

Public API (SciPy-compatible):

- :func:`matrix_powers` ``(A, x, k, basis="monomial"|"newton"|"chebyshev", shifts=None)``
- :class:`MatrixPowers` ``(A, k)`` with ``.powers(x)`` / ``__call__``
- :func:`cg` ``(A, b, x0=None, *, rtol=1e-5, atol=0.0, maxiter=None, M=None, callback=None,
  s=None) -> (x, info)``
- :func:`spmv` ``(A, x)``

Importing this package is cheap: SciPy and the compiler are only touched on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["matrix_powers", "MatrixPowers", "cg", "spmv", "__version__"]


_EXPORTS = {"matrix_powers": "powers", "MatrixPowers": "powers", "spmv": "powers",
            "cg": "cacg"}


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562), then kept in the module: a call through ``asp_mpk.spmv`` must not pay
    # this function again (microseconds each time, right after a kernel: that is spmv's budget)
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

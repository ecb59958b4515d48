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


def __getattr__(name: str) -> Any:
    if name in ("matrix_powers", "MatrixPowers", "spmv"):
        from asp_mpk import powers

        return getattr(powers, name)
    if name == "cg":
        from asp_mpk.cacg import cg

        return cg
    raise AttributeError(f"module 'asp_mpk' has no attribute {name!r}")

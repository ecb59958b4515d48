"""asp-mpk: communication-avoiding matrix powers (PA1) and s-step CG for Asp.

Public API (SciPy-compatible):

- :func:`matrix_powers` ``(A, x, k, basis="monomial"|"newton"|"chebyshev", shifts=None)``
- :class:`MatrixPowers` ``(A, k)`` with ``.powers(x)`` / ``__call__``
- :func:`cg` ``(A, b, x0=None, *, rtol=1e-5, atol=0.0, maxiter=None, M=None, callback=None,
  s=None) -> (x, info)``
- :func:`spmv` ``(A, x)``

Importing this package loads asp_core and its own modules (tens of milliseconds, so that a
first call does not pay them); SciPy and the compiler are only touched on first use.
"""

from __future__ import annotations

from asp_mpk.cacg import cg
from asp_mpk.powers import MatrixPowers, matrix_powers, spmv

__version__ = "0.1.0"
__all__ = ["matrix_powers", "MatrixPowers", "cg", "spmv", "__version__"]

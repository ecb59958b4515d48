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

from asp_core.exports import lazy_exports

__version__ = "0.1.0"
__all__ = ["matrix_powers", "MatrixPowers", "cg", "spmv", "__version__"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "cg": "cacg", "MatrixPowers": "powers", "matrix_powers": "powers", "spmv": "powers"}, __all__)

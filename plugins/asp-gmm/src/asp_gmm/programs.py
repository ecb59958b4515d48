"""Phases 1-4 without data: the DAST of a problem and its variants for a named platform.

Both go through the core's public API, the ``gmm`` dispatcher's ``analyse`` and
``variants_for``, on placeholder arrays of the problem's shape, so the components the registry
chooses (an installed plugin replacing a phase included) are the ones used.  Naming the
platform skips its run-time check: that is how CUDA is compile-checked where there is no GPU
(the CUDA platform's ``check`` declines here, but its code can still be generated and given to
``nvcc -c``).  Used by tests and the benchmark to look at generated code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from asp_core import Variant
from asp_gmm.dast import EMProblem

__all__ = ["example_args", "problem", "variants_for"]


def example_args(op: str, M: int, D: int, cov: str, dtype: str = "float64",
                 n_samples: int = 1000) -> tuple:
    """Placeholder arguments of an ``op`` call (:mod:`asp_gmm.reference`'s signatures) with
    ``n_samples`` samples of ``D`` features and ``M`` components: what the frontend reads is
    their shapes, dtypes and covariance type; their values are never used."""
    X = np.zeros((n_samples, D), dtype=dtype)
    weights, means = np.full(M, 1.0 / M), np.zeros((M, D))
    if cov == "full":
        prec: Any = np.tile(np.eye(D), (M, 1, 1))
    else:
        prec = {"tied": np.eye(D), "diag": np.ones((M, D)), "spherical": np.ones(M)}.get(cov)
    if op == "em_step":
        return (X, weights, means, prec, cov, 0.0)
    if op == "log_prob":
        return (X, means, prec, cov)
    if op == "e_step":
        return (X, weights, means, prec, cov, "labels")
    if op == "m_step":
        return (X, np.zeros(n_samples, dtype=np.int64), M, cov, 0.0)
    if op == "kmeans_assign":
        return (X, means, cov, np.full((n_samples, 3), -1.0), np.zeros(M))
    if op == "kmeans_seed":
        from asp_gmm.lowering import kmeans_trials

        indices = np.full(M, -1, dtype=np.int64)
        indices[0] = 0
        uniforms = np.zeros((M - 1) * kmeans_trials(M))
        return (X, np.zeros(n_samples), indices, np.full(n_samples, np.inf), uniforms, M, cov)
    from asp_gmm.signature import OPS

    raise ValueError(f"unknown gmm op {op!r}; expected one of {', '.join(OPS)}")


def problem(op: str, M: int, D: int, cov: str, dtype: str = "float64",
            n_samples: int = 1000, options: dict | None = None) -> EMProblem:
    """The optimised DAST of a problem: phases 1-2 through the registry's frontend and
    domain optimiser."""
    from asp_gmm.engine import dispatcher

    return dispatcher(op, options).analyse(*example_args(op, M, D, cov, dtype, n_samples))[1]


def variants_for(platform: str, op: str, M: int, D: int, cov: str, dtype: str = "float64",
                 n_samples: int = 1000, options: dict | None = None) -> list[Variant]:
    """Every variant phases 1-4 make for the named ``platform`` ("openmp", "cuda",
    "numpy"), whether or not it can run here; default first, none built."""
    from asp_gmm.engine import dispatcher

    found = dispatcher(op, options).variants_for(
        platform, *example_args(op, M, D, cov, dtype, n_samples))
    return [found.variant(name) for name in found]

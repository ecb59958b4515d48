"""Fixtures of the asp-gmm tests: random problems with known-good parameters."""

from __future__ import annotations

import numpy as np
import pytest


def make_problem(N: int, D: int, M: int, cov: str, seed: int = 0, offset: float = 3.0):
    """(X, weights, means, precisions_cholesky) with well-conditioned random parameters."""
    from asp_gmm.linalg import precision_cholesky

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D)) * 1.5 + offset
    w = rng.random(M) + 0.2
    w /= w.sum()
    means = X[rng.choice(N, M, replace=False)].copy()
    if cov == "full":
        A = rng.normal(size=(M, D, D))
        covs = A @ A.transpose(0, 2, 1) / D + np.eye(D)
    elif cov == "diag":
        covs = rng.random((M, D)) + 0.5
    elif cov == "tied":
        A = rng.normal(size=(D, D))
        covs = A @ A.T / D + np.eye(D)
    else:
        covs = rng.random(M) + 0.5
    return X, w, means, precision_cholesky(covs, cov)


@pytest.fixture
def problem():
    return make_problem


@pytest.fixture
def compiled_fits(monkeypatch):
    """Fits run compiled from their first pass: the build of the fit's shape, which a short fit
    defers (``engine.BUILD_AFTER_S``) and runs its passes in NumPy meanwhile, is done before
    the fit starts (where a compiler is present)."""
    from asp_gmm import engine

    real = engine.prepare

    def prepare(*args, **kwargs):
        kwargs["defer"] = False
        thread = real(*args, **kwargs)
        for building in list(engine._PREPARING.values()):  # this shape's, or an earlier one
            building.join()
        return thread

    monkeypatch.setattr(engine, "prepare", prepare)

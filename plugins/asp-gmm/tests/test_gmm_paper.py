"""The paper-era interface: GMM(M, D, ...).train / eval on the same engine."""

from __future__ import annotations

import numpy as np
import pytest
from asp_gmm import GMM, reference


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0], [0.0, 6.0, 6.0]])
    labels = rng.integers(0, 3, 3000)
    return centers[labels] + rng.normal(size=(3000, 3)), labels, centers


def test_train_recovers_clusters_and_eval_is_consistent():
    X, labels, centers = _blobs()
    for cvtype in ("diag", "full"):
        g = GMM(3, 3, means=centers + 0.5, cvtype=cvtype)
        ll = g.train(X, min_em_iters=1, max_em_iters=50)
        log_probs, post = g.eval(X)
        assert ll == np.mean(log_probs)
        np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-12)
        order = np.argsort(g.means[:, 0] + 10 * g.means[:, 2])
        np.testing.assert_allclose(g.means[order], centers[[0, 1, 2]][np.argsort(
            centers[:, 0] + 10 * centers[:, 2])], atol=0.1)
        assert np.mean(post.argmax(1) == np.argmax(post, 1)) == 1.0


def test_train_steps_match_reference_em():
    X, _, centers = _blobs(1)
    g = GMM(3, 3, means=centers + 1.0, cvtype="full", tol=0.0)
    g.train(X, min_em_iters=3, max_em_iters=3)
    w, mu = np.full(3, 1 / 3), centers + 1.0
    pc = np.tile(np.eye(3), (3, 1, 1))
    from asp_gmm.linalg import precision_cholesky

    for _ in range(3):
        step = reference.em_step(X, w, mu, pc, "full", 1e-6)
        w, mu = step.weights, step.means
        pc = precision_cholesky(step.covariances, "full")
    np.testing.assert_allclose(g.means, mu, rtol=1e-10)
    np.testing.assert_allclose(g.weights, w, rtol=1e-10)


def test_min_em_iters_is_respected():
    X, _, centers = _blobs(2)
    g = GMM(3, 3, means=centers, cvtype="diag", tol=1e9)  # converged at once
    g.train(X, min_em_iters=4, max_em_iters=10)
    h = GMM(3, 3, means=centers, cvtype="diag", tol=0.0)
    h.train(X, min_em_iters=4, max_em_iters=4)
    np.testing.assert_allclose(g.means, h.means, rtol=1e-12)


@pytest.mark.parametrize("cvtype", ["full", "diag", "tied", "spherical"])
def test_assigned_parameters_take_effect(cvtype):
    """weights, means and covars assigned after construction are what eval and train use, as
    if given to the constructor (assigned covariances were ignored: eval and train used
    precision factors computed before)."""
    X, _, _ = _blobs(3)
    g = GMM(3, 3, cvtype=cvtype)
    g.train(X, max_em_iters=3)
    before = g.eval(X)[0]
    g.covars = g.covars * 4.0
    g.means = g.means + 0.5
    g.weights = g.weights[::-1] * 2.0  # normalised, as the constructor's
    fresh = GMM(3, 3, means=g.means, covars=g.covars, weights=g.weights, cvtype=cvtype)
    np.testing.assert_array_equal(g.eval(X)[0], fresh.eval(X)[0])
    assert not np.allclose(g.eval(X)[0], before)
    assert g.weights.sum() == pytest.approx(1.0)
    g.train(X, max_em_iters=2)
    fresh.train(X, max_em_iters=2)
    np.testing.assert_array_equal(g.covars, fresh.covars)


def test_parameters_change_by_assignment_only():
    """In place, a change would bypass the checks and the precision factors: the arrays are
    read-only. A rejected assignment leaves the model as it was."""
    g = GMM(2, 3, cvtype="full")
    g.train(_blobs(4)[0], max_em_iters=2)
    for name in ("weights", "means", "covars"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(g, name)[0] = 0.0
    covars = g.covars
    with pytest.raises(ValueError, match="'covars' should be symmetric, positive-definite"):
        g.covars = -covars
    assert g.covars is covars

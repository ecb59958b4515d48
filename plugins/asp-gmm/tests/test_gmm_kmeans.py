"""The k-means initialisation (``init_params="kmeans"`` and ``"k-means++"``) runs compiled and
still draws what scikit-learn draws: the same labels, the same seeds, the same use of the
random state (issue 12)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from asp_gmm import GaussianMixture
from asp_gmm.kmeans import kmeans_labels, kmeans_plusplus_indices
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

pytestmark = pytest.mark.compiler

SHAPES = [(2000, 2, 3), (3000, 16, 8), (4000, 64, 16), (1500, 5, 40), (300, 3, 7)]
NUMPY = {"platform_selection": "numpy"}


def _clusters(N: int, D: int, M: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(M, D)) + 10.0
    return centers[rng.integers(0, M, N)] + rng.normal(size=(N, D)) * rng.uniform(0.5, 2, D)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("N,D,M", SHAPES)
@pytest.mark.parametrize("cov", ["diag", "full"])  # their libraries' layouts pad M differently
def test_kmeans_labels_and_random_state_equal_sklearn(N, D, M, seed, cov):
    X = _clusters(N, D, M, seed)
    ours_rs, sk_rs = np.random.RandomState(seed), np.random.RandomState(seed)
    expected = KMeans(n_clusters=M, n_init=1, random_state=sk_rs).fit(X).labels_
    labels = kmeans_labels(X, M, ours_rs, cov)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, expected)
    # the state was advanced exactly as scikit-learn's KMeans advances it
    assert ours_rs.uniform() == sk_rs.uniform()


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("N,D,M", SHAPES)
def test_kmeans_plusplus_indices_equal_sklearn(N, D, M, seed):
    X = _clusters(N, D, M, seed)
    _, expected = kmeans_plusplus(X, M, random_state=np.random.RandomState(seed))
    got = kmeans_plusplus_indices(X, M, np.random.RandomState(seed), "full")
    np.testing.assert_array_equal(got, expected)


def test_kmeans_plusplus_finishes_compiled_what_numpy_began(monkeypatch):
    """The library finishing its build mid-seeding: the first steps ran in NumPy (one draw
    of the random state each), the rest in one compiled call (their draws at once); the
    centres and the state's use are scikit-learn's."""
    from asp_gmm import engine

    X = _clusters(3000, 16, 8, 2)
    answers = iter([False] * 4)
    monkeypatch.setattr(engine, "compiled", lambda *a, **k: next(answers, True))
    sk_rs, ours_rs = np.random.RandomState(5), np.random.RandomState(5)
    _, expected = kmeans_plusplus(X, 8, random_state=sk_rs)
    np.testing.assert_array_equal(kmeans_plusplus_indices(X, 8, ours_rs, "diag"), expected)
    assert next(answers, None) is None  # all four NumPy steps ran
    assert ours_rs.uniform() == sk_rs.uniform()


@pytest.mark.parametrize("options", [None, NUMPY], ids=["compiled", "numpy"])
def test_empty_clusters_are_relocated_as_sklearn(options):
    """Duplicated samples leave clusters empty: they take the farthest samples, and fewer
    distinct clusters than asked warn as scikit-learn's KMeans warns. (Integer points
    symmetric about 0: every distance is exact, so ties are true ties in both.)"""
    points = np.array([[3, 1], [5, -2], [0, 4], [7, 7]], dtype=np.float64)
    X = np.repeat(np.concatenate([points, -points]), 40, axis=0)
    for M in (10, 12):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            expected = KMeans(n_clusters=M, n_init=1, random_state=1).fit(X).labels_
        sk_msgs = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
        assert sk_msgs  # 8 distinct points, more clusters
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            labels = kmeans_labels(X, M, np.random.RandomState(1), "diag", options)
        np.testing.assert_array_equal(labels, expected)
        assert [str(w.message) for w in ours if issubclass(w.category, ConvergenceWarning)] \
            == sk_msgs


@pytest.mark.parametrize("N,D,M", SHAPES[:3])
def test_numpy_engine_kmeans_equals_sklearn(N, D, M):
    """Without a compiler the same loops run the NumPy reference passes."""
    X = _clusters(N, D, M, 7)
    expected = KMeans(n_clusters=M, n_init=1, random_state=7).fit(X).labels_
    np.testing.assert_array_equal(kmeans_labels(X, M, np.random.RandomState(7), "full", NUMPY),
                                  expected)


@pytest.mark.parametrize("cov", ["full", "diag"])
@pytest.mark.parametrize("n_init", [1, 3])
def test_fit_from_kmeans_equals_sklearn(cov, n_init):
    """A default fit (k-means initialisation, several inits drawing from one state) ends
    where scikit-learn's ends."""
    X = _clusters(3000, 6, 5, 11)
    ours = GaussianMixture(5, covariance_type=cov, n_init=n_init, random_state=4).fit(X)
    ref = SkGaussianMixture(5, covariance_type=cov, n_init=n_init, random_state=4).fit(X)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-6)
    if n_init == 1:
        np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6, atol=1e-9)
    else:
        # the three inits reach one optimum, its components in other orders, with lower
        # bounds 1e-15 apart: which is "best" is rounding (on an AMD Zen 5 machine it went
        # the other way than scikit-learn's), the mixture is the same
        order = [np.lexsort(m.T[::-1]) for m in (ours.means_, ref.means_)]
        np.testing.assert_allclose(ours.means_[order[0]], ref.means_[order[1]], rtol=1e-6,
                                   atol=1e-9)


@pytest.mark.parametrize("N,D,M", [(3003, 16, 32), (517, 5, 40), (64, 64, 3)])
@pytest.mark.parametrize("chosen", [1, 3])
def test_kmeans_seed_equals_reference(N, D, M, chosen):
    """The compiled seeding (one pass per step, samples in blocks with a ragged last one, the
    draws searched block by block) picks NumPy's centres, from the first centre or from a
    seeding that NumPy began (as when the library finishes compiling mid-seeding)."""
    from asp_gmm import engine, reference
    from asp_gmm.lowering import kmeans_trials

    X = _clusters(N, D, M, 0)
    xx = np.einsum("ij,ij->i", X, X)
    rng = np.random.default_rng(1)
    indices = np.full(M, -1, dtype=np.int64)
    indices[:chosen] = rng.choice(N, chosen, replace=False)
    closest = np.full(N, np.inf)
    if chosen > 1:  # the distances to all but the last, as NumPy's steps leave them
        closest = ((X[:, None, :] - X[indices[:chosen - 1]]) ** 2).sum(axis=2).min(axis=1)
    uniforms = rng.uniform(size=(M - chosen) * kmeans_trials(M))
    got = engine.kmeans_seed(X, xx, indices, closest, uniforms, M, "diag")
    ref = reference.kmeans_seed(X, xx, indices, closest, uniforms, M, "diag")
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_array_equal(got.indices[:chosen], indices[:chosen])
    assert len(set(got.indices.tolist())) == M  # distinct data: a centre is never drawn twice
    np.testing.assert_allclose(got.closest, ref.closest, rtol=1e-9, atol=1e-9 * xx.max())
    assert np.all(got.closest <= closest)
    assert (indices[chosen:] == -1).all()  # the caller's arrays are left as they were


def _integer_data(name: str) -> np.ndarray:
    if name == "digits":  # pixel values 0..16, many samples equidistant from two centres
        from sklearn.datasets import load_digits

        return load_digits().data
    return np.random.default_rng(7).integers(0, 10, size=(500, 4)).astype(float)


@pytest.mark.parametrize("data,M,seed", [("digits", 10, 3), ("digits", 10, 0),
                                         ("ints", 5, 2), ("ints", 5, 0)])
@pytest.mark.parametrize("cov", ["full", "diag"])
def test_kmeans_on_integer_data_does_not_depend_on_the_build(data, M, seed, cov, monkeypatch):
    """On integer-valued data many samples are tied between two centres in exact arithmetic,
    so their labels rest on rounding: the compiled Lloyd passes (FMA dot products, other
    sums) gave other labels than the NumPy passes a fit runs while its library compiles,
    and a loop of identical fits changed its model once the build was done. (The seeds
    of these cases agree; the compiled seeding can differ on others: see asp_gmm.kmeans.)"""
    from asp_gmm import engine

    X = _integer_data(data)
    Xc = X - X.mean(axis=0)
    engine.prepare(X.shape[1], M, cov, X.dtype)
    engine.finish_preparing()
    compiled = kmeans_labels(X, M, np.random.RandomState(seed), cov)
    seeds = kmeans_plusplus_indices(Xc, M, np.random.RandomState(seed), cov)
    assert engine.dispatcher("kmeans_assign").last_context is not None  # it ran compiled
    monkeypatch.setattr(engine, "compiled", lambda *a, **k: False)
    np.testing.assert_array_equal(kmeans_labels(X, M, np.random.RandomState(seed), cov),
                                  compiled)
    np.testing.assert_array_equal(
        kmeans_plusplus_indices(Xc, M, np.random.RandomState(seed), cov), seeds)


def test_lloyd_bounds_skip_only_samples_whose_label_cannot_change():
    """Passes that keep Hamerly's bounds between them (samples skipped where the bounds
    prove the label) give the labels and sums of passes computing every distance; a NumPy
    pass in between (the library built mid-k-means) marks the bounds unknown."""
    from asp_gmm import engine, reference

    X = _clusters(4000, 8, 6, 3)
    rng = np.random.default_rng(0)
    centers = X[rng.choice(4000, 6, replace=False)].copy()
    bounds, moved = np.full((4000, 3), -1.0), np.zeros(6)
    for it in range(6):
        got = engine.kmeans_assign(X, centers, "diag", bounds, moved)
        fresh = engine.kmeans_assign(X, centers, "diag", np.full((4000, 3), -1.0), moved)
        np.testing.assert_array_equal(got.labels, fresh.labels)
        np.testing.assert_allclose(got.sums, fresh.sums, rtol=1e-12)
        new = got.sums / np.maximum(got.counts, 1.0)[:, None]
        moved = np.sqrt(((new - centers) ** 2).sum(axis=1))
        centers = new
        if it == 3:
            reference.kmeans_assign(X, centers, "diag", bounds, moved)
            assert (bounds[:, 2] == -1).all()
    assert (bounds[:, 2] >= 0).all()


def test_kmeans_seed_rejects_bad_arguments():
    from asp_gmm import engine

    X = np.zeros((10, 2))
    xx = np.zeros(10)
    first = np.array([0, -1], dtype=np.int64)
    with pytest.raises(ValueError, match="indices must be the chosen centres"):
        engine.kmeans_seed(X, xx, np.array([10, -1]), np.zeros(10), np.zeros(2), 2, "diag")
    with pytest.raises(ValueError, match="indices must be the chosen centres"):
        engine.kmeans_seed(X, xx, np.array([-1, 0]), np.zeros(10), np.zeros(2), 2, "diag")
    with pytest.raises(ValueError, match="closest must be float64"):
        engine.kmeans_seed(X, xx, first, np.zeros(9), np.zeros(2), 2, "diag")
    with pytest.raises(ValueError, match="uniforms must be float64 of shape \\(2,\\)"):
        engine.kmeans_seed(X, xx, first, np.zeros(10), np.zeros(3), 2, "diag")
    with pytest.raises(ValueError, match="centers must be float64"):
        engine.kmeans_assign(X, np.zeros((3, 5)), "diag", np.zeros((10, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="bounds must be a writeable"):
        engine.kmeans_assign(X, np.zeros((3, 2)), "diag", np.zeros((3, 10)).T, np.zeros(3))


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_fit_while_compiling_runs_numpy_and_equals_sklearn(cov, monkeypatch):
    """While the shape's library is still compiling, the k-means passes, the initial M-step
    and the EM iterations run the NumPy reference (no wait for gcc) and end where
    scikit-learn's fit ends."""
    from asp_gmm import engine

    calls = []
    engine.finish_preparing()   # an earlier test's background build would call the dispatcher
    monkeypatch.setattr(engine, "compiled", lambda *a, **k: False)
    monkeypatch.setattr(engine, "prepare", lambda *a, **k: None)
    monkeypatch.setattr(engine, "dispatcher", lambda *a, **k: calls.append(a) or 1 / 0)
    X = _clusters(2000, 4, 3, 5)
    ours = GaussianMixture(3, covariance_type=cov, random_state=2).fit(X)
    ref = SkGaussianMixture(3, covariance_type=cov, random_state=2).fit(X)
    assert calls == []
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-6)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6, atol=1e-9)


def test_winner_names_the_chosen_variant():
    from asp_gmm import engine

    X = _clusters(5000, 3, 4, 1)
    gm = GaussianMixture(4, covariance_type="diag", max_iter=20, tol=0.0, random_state=0)
    gm.fit(X)
    for _ in range(10):  # the fit's iterations may have run while gcc worked
        engine.em_step(X, gm.weights_, gm.means_, gm.precisions_cholesky_, "diag", 1e-6)
        if not engine.tuning():
            break
    assert engine.winner() in {f"fused-b{b}" for b in (32, 64, 128, 256, 512)}

"""asp_gmm depends on scikit-learn's public API only (issue 12): no private imports, no
override of scikit-learn's private methods, and fit's initialisation follows scikit-learn for
every ``init_params`` with the same ``random_state``."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest
from asp_gmm import GaussianMixture, engine
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

SOURCES = sorted((Path(__file__).parents[1] / "src" / "asp_gmm").glob("*.py"))


def _private_sklearn_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sklearn"):
            parts = node.module.split(".")
            names = [a.name for a in node.names]
            if any(p.startswith("_") for p in parts) or any(n.startswith("_") for n in names):
                found.append(f"{path.name}:{node.lineno} from {node.module} import "
                             f"{', '.join(names)}")
        elif isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names
                      if a.name.startswith("sklearn") and "._" in a.name]
    return found


def test_no_private_sklearn_imports():
    assert SOURCES
    assert [hit for path in SOURCES for hit in _private_sklearn_imports(path)] == []


def test_no_private_sklearn_method_is_overridden():
    """Our private helpers never shadow scikit-learn's (whose signatures change between
    minor releases); the public methods are ours."""
    ours = {n for n, v in vars(GaussianMixture).items()
            if n.startswith("_") and not n.startswith("__") and callable(v)}
    assert not {n for n in ours if hasattr(SkGaussianMixture, n)}
    for public in ("fit", "fit_predict", "predict", "predict_proba", "score_samples", "score"):
        assert public in vars(GaussianMixture)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("cov", ["full", "diag", "tied", "spherical"])
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_initialisation_equals_sklearn(init_params, cov):
    """max_iter=0 leaves the initial parameters: the compiled initial M-step from the same
    draws equals scikit-learn's, and so does a whole fit from them."""
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(size=(400, 3)) * (1 + i) + 5 * i for i in range(4)])
    kw = dict(n_components=4, covariance_type=cov, init_params=init_params, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GaussianMixture(max_iter=0, **kw).fit(X)
        ref = SkGaussianMixture(max_iter=0, **kw).fit(X)
    for name in ("weights_", "means_"):
        assert _rel(getattr(ours, name), getattr(ref, name)) < 1e-9, name
    # a component of one sample has variance reg_covar: scikit-learn's diag formula
    # E[x^2] - mu^2 leaves cancellation noise ~eps * x^2 there, ours (about the mean) does not
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.precisions_cholesky_, ref.precisions_cholesky_, rtol=1e-6)
    ours = GaussianMixture(max_iter=20, **kw).fit(X)
    ref = SkGaussianMixture(max_iter=20, **kw).fit(X)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-6)
    assert _rel(ours.means_, ref.means_) < 1e-6


def test_partial_initial_parameters_follow_sklearn():
    """Given means only: weights and covariances still come from the k-means M-step."""
    rng = np.random.default_rng(6)
    X = np.concatenate([rng.normal(size=(300, 2)) + 4 * i for i in range(3)])
    kw = dict(n_components=3, covariance_type="full", random_state=0, max_iter=0,
              means_init=np.array([[0.0, 0.0], [4.0, 4.0], [8.0, 8.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GaussianMixture(**kw).fit(X)
        ref = SkGaussianMixture(**kw).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_"):
        assert _rel(getattr(ours, name), getattr(ref, name)) < 1e-9, name


@pytest.mark.parametrize("cov", ["full", "diag", "tied", "spherical"])
def test_max_iter_0_with_precisions_init_has_covariances(cov):
    """Given precisions_init and max_iter=0, covariances_ are the precisions' inverses
    (they were None, and sample() raised TypeError)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    D = 2
    eye = np.array([[2.0, 0.5], [0.5, 1.0]])
    precisions = {"full": np.stack([eye, 3 * eye]), "tied": eye,
                  "diag": np.array([[2.0, 1.0], [4.0, 0.5]]), "spherical": np.array([2.0, 4.0])}
    P = precisions[cov]
    gm = GaussianMixture(2, covariance_type=cov, precisions_init=P, max_iter=0,
                         random_state=0).fit(X)
    expected = np.linalg.inv(P) if cov in ("full", "tied") else 1.0 / P
    np.testing.assert_allclose(gm.covariances_, expected, rtol=1e-12)
    np.testing.assert_allclose(gm.precisions_, P, rtol=1e-12)
    samples, labels = gm.sample(5)
    assert samples.shape == (5, D) and labels.shape == (5,)


@pytest.mark.parametrize("cov", ["full", "diag", "tied", "spherical"])
def test_output_dtypes_follow_sklearn(cov):
    """predict_proba and score_samples return scikit-learn's dtype: float32 only for float32
    X under a float32 fit (float32 X under a float64 fit gave float32)."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    for fit_dtype in (np.float64, np.float32):
        ours = GaussianMixture(2, covariance_type=cov, random_state=0).fit(X.astype(fit_dtype))
        ref = SkGaussianMixture(2, covariance_type=cov, random_state=0).fit(X.astype(fit_dtype))
        for dtype in (np.float32, np.float64, np.int64, np.longdouble):
            Xp = X.astype(dtype)   # long double: score_samples float64, predict_proba not
            assert ours.predict_proba(Xp).dtype == ref.predict_proba(Xp).dtype
            assert ours.score_samples(Xp).dtype == ref.score_samples(Xp).dtype


def test_fit_runs_compiled_end_to_end(tmp_path, monkeypatch):
    """Once compiled, the k-means passes, the initial M-step, the EM iterations and predict's
    E-step all run on the OpenMP platform, from one shared object. (A fit that starts while
    the library compiles runs those steps in NumPy meanwhile.)"""
    from pytest_asp import has_compiler

    if not has_compiler("c"):
        pytest.skip("no C compiler (install gcc)")
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    engine.reset()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 5))
    GaussianMixture(4, covariance_type="diag", random_state=0).fit(X)
    engine.finish_preparing()
    gm = GaussianMixture(4, covariance_type="diag", random_state=0).fit(X)
    gm.predict(X)
    for op in ("kmeans_seed", "kmeans_assign", "m_step", "em_step", "e_step"):
        ctx = engine.dispatcher(op).last_context
        chosen = [d.choice for d in ctx.decisions if d.what == "platform_selection"]
        assert chosen == ["openmp"], op
    engine.reset()


def test_verbose_messages(capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    GaussianMixture(2, verbose=2, verbose_interval=1, random_state=0).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 1\t time lapse" in out
    assert "lower bound" in out


@pytest.mark.parametrize("param, value", [
    *(("random_state", v) for v in (np.random.default_rng(0), -1, 2**32, 1.5, "0",
                                    np.float64(2.0))),
    *(("verbose", v) for v in (-1, 1.5, "1"))])
def test_bad_hyperparameters_are_rejected_as_sklearn(param, value):
    """random_state is checked with the other hyper-parameters, with scikit-learn's message
    (a numpy Generator gave numpy's "cannot be used to seed a RandomState", after fit had
    validated X and registered the shape's library build); verbose's names the bools
    scikit-learn also takes (it left them out)."""
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError) as ours:
        GaussianMixture(2, **{param: value}).fit(X)
    with pytest.raises(ValueError) as ref:
        SkGaussianMixture(2, **{param: value}).fit(X)
    assert str(ours.value) == str(ref.value)


@pytest.mark.parametrize("first, second", [(np.float64, np.float32), (np.float32, np.float64),
                                           (np.float32, np.float32)])
def test_a_warm_start_on_data_of_another_dtype_keeps_sklearns_dtypes(first, second):
    """A float64 fit refitted warm on float32 data became float32 (scikit-learn's stays
    float64: its arithmetic promotes the data with the parameters it goes on from)."""
    X = np.random.default_rng(0).normal(size=(300, 3))
    out = []
    for cls in (GaussianMixture, SkGaussianMixture):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = cls(3, warm_start=True, random_state=0, max_iter=5).fit(X.astype(first))
            est.fit(X.astype(second))
        # (scikit-learn's covariances and precisions are then float32 beside float64 means:
        # ours are float64 like the means, every attribute the promoted dtype)
        out.append((est.weights_.dtype, est.means_.dtype, np.asarray(est.lower_bound_).dtype,
                    est.predict_proba(X[:2].astype(second)).dtype,
                    est.score_samples(X[:2].astype(second)).dtype))
    assert out[0] == out[1]


def test_warm_start_with_max_iter_0_keeps_no_lower_bound():
    """A warm start of no iteration computes no lower bound: lower_bound_ is -inf as
    scikit-learn's (it kept the previous fit's, next to an empty lower_bounds_)."""
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    ours = GaussianMixture(2, random_state=0).fit(X)
    ref = SkGaussianMixture(2, random_state=0).fit(X)
    for est in (ours, ref):
        est.set_params(warm_start=True, max_iter=0).fit(X)
    assert ref.lower_bound_ == -np.inf
    assert ours.lower_bound_ == ref.lower_bound_
    assert (ours.n_iter_, ours.converged_, ours.lower_bounds_) == (0, False, [])
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-9)

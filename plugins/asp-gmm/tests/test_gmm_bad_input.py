"""Bad input raises what scikit-learn raises (type and text), before any native code runs."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from asp_gmm import GMM, GaussianMixture, engine
from asp_gmm.linalg import ILL_DEFINED
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from .conftest import make_problem


def _same_error(make_call):
    """Both estimators raise the same message, ours an instance of every builtin exception
    scikit-learn's derives from (its ``InvalidParameterError`` is both a ValueError and a
    TypeError: code written for scikit-learn may catch either)."""
    with pytest.raises(Exception) as ref:
        make_call(SkGaussianMixture)
    with pytest.raises(Exception, match=re.escape(str(ref.value))) as ours:
        make_call(GaussianMixture)
    expected = {t for t in type(ref.value).__mro__ if t.__module__ == "builtins"}
    got = {t for t in type(ours.value).__mro__ if t.__module__ == "builtins"}
    assert got == expected, (type(ours.value).__mro__, type(ref.value).__mro__)


X_OK = np.random.default_rng(0).normal(size=(50, 3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X(bad):
    X = X_OK.copy()
    X[3, 1] = bad
    _same_error(lambda cls: cls(2).fit(X))


def test_fewer_samples_than_components():
    _same_error(lambda cls: cls(5).fit(X_OK[:4]))


def test_wrong_number_of_features_at_predict():
    def call(cls):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = cls(2, random_state=0).fit(X_OK)
        return model.predict(X_OK[:, :2])

    _same_error(call)


def test_non_numeric_input():
    X = np.array([["a", "b"], ["c", "d"], ["e", "f"]], dtype=object)
    _same_error(lambda cls: cls(1).fit(X))


@pytest.mark.parametrize("n", [0, -1])
def test_n_components_below_one(n):
    _same_error(lambda cls: cls(n).fit(X_OK))


def test_bad_init_shapes():
    _same_error(lambda cls: cls(2, means_init=np.zeros((3, 3))).fit(X_OK))
    _same_error(lambda cls: cls(2, weights_init=np.array([0.2, 0.2])).fit(X_OK))


def test_collapsed_component_behaves_as_sklearn():
    """Components collapsed on single points, no regularisation: scikit-learn's ill-defined
    covariance error, from the Python side (never a crash in native code)."""
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    for cov in ("full", "diag"):
        _same_error(lambda cls: cls(2, covariance_type=cov, reg_covar=0.0,
                                    init_params="random_from_data", random_state=0).fit(X))
    assert "ill-defined" in ILL_DEFINED


def test_identical_samples_diag_matches_sklearn():
    """All samples equal: scikit-learn's diag variances are 10·eps/nk-sized, not an error;
    ours are the same numbers."""
    X = np.ones((20, 2))
    kw = dict(n_components=2, covariance_type="diag", reg_covar=0.0,
              init_params="random_from_data", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GaussianMixture(**kw).fit(X)
        ref = SkGaussianMixture(**kw).fit(X)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-6)


def test_degenerate_component_with_regularisation_matches_sklearn():
    """A component that loses all its samples is regularised, as in scikit-learn."""
    X, w, means, pc = make_problem(300, 2, 3, "diag", seed=2)
    means[2] = 1e3  # far from every sample: its responsibilities underflow to zero
    precisions = pc**2
    kw = dict(n_components=3, covariance_type="diag", max_iter=3, tol=0.0, weights_init=w,
              means_init=means, precisions_init=precisions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GaussianMixture(**kw).fit(X)
        ref = SkGaussianMixture(**kw).fit(X)
    np.testing.assert_allclose(ours.weights_, ref.weights_, rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-6)
    assert np.all(np.isfinite(ours.means_))


def test_engine_validates_before_native_code():
    X, w, means, pc = make_problem(100, 3, 2, "full")
    with pytest.raises(ValueError, match="precisions_cholesky has shape"):
        engine.em_step(X, w, means, pc[:, :2, :2], "full", 1e-6)
    with pytest.raises(ValueError, match="weights has shape"):
        engine.em_step(X, w[:1], means, pc, "full", 1e-6)
    with pytest.raises(TypeError, match="float64 or float32"):
        engine.em_step(X.astype(np.int64), w, means, pc, "full", 1e-6)
    with pytest.raises(ValueError, match="2-D"):
        engine.em_step(X[0], w, means, pc, "full", 1e-6)
    with pytest.raises(ValueError, match="covariance_type"):
        engine.em_step(X, w, means, pc, "banana", 1e-6)


def test_paper_interface_rejects_bad_input():
    with pytest.raises(ValueError, match="'M' parameter of GMM"):
        GMM(0, 3)
    with pytest.raises(ValueError, match="cvtype"):
        GMM(2, 3, cvtype="banana")
    g = GMM(2, 3)
    with pytest.raises(ValueError, match="NaN or infinity"):
        g.train(np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match=r"shape \(n_samples, 3\)"):
        g.train(np.zeros((10, 4)))
    with pytest.raises(TypeError, match="numeric"):
        g.train(np.array([["a"] * 3] * 4, dtype=object))
    with pytest.raises(ValueError, match="no parameters yet"):
        g.eval(np.zeros((4, 3)))


_A = np.array([[1.0, 0.9, 0.0], [-0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])  # not symmetric


@pytest.mark.parametrize("kwargs,message", [
    (dict(weights=[0.0, 0.0]), "'weights' should be non-negative with a positive"),
    (dict(weights=[np.nan, 1.0]), "'weights' contains NaN"),
    (dict(weights=[-0.5, 1.5]), "'weights' should be non-negative"),
    (dict(means=[[np.inf, 0, 0], [0, 0, 0]]), "'means' contains NaN or infinity"),
    (dict(means=[["a", "b", "c"]] * 2), "'means' cannot be converted"),
    (dict(covars=np.stack([_A, _A]), cvtype="full"),
     "'covars' should be symmetric, positive-definite"),
    (dict(covars=[[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]), "'covars' should be positive"),
    (dict(covars=np.ones(3)), r"'covars' should have the shape of \(2, 3\)"),
    (dict(options="numpy"), "'options' parameter of GMM must be an instance of 'dict'"),
    (dict(M=2.7), "'M' parameter of GMM must be an int"),
    (dict(M="2"), "'M' parameter of GMM must be an int"),
    (dict(M=True), "'M' parameter of GMM must be an int"),
    (dict(D=np.bool_(True)), "'D' parameter of GMM must be an int"),
    (dict(reg_covar=-1.0), "'reg_covar' parameter of GMM"),
    (dict(tol=np.nan), "'tol' parameter of GMM"),
])
def test_paper_interface_checks_its_arguments(kwargs, message):
    """Each argument of GMM is checked as the estimator's are, the error naming it (zero or
    nan weights became nan, infinite means an overflow error in train, a non-symmetric
    covariance was read by its lower triangle, M=2.7 truncated)."""
    with pytest.raises(ValueError, match=message):
        GMM(**{"M": 2, "D": 3, **kwargs})


def test_paper_interface_checks_assigned_parameters():
    g = GMM(2, 3)
    with pytest.raises(ValueError, match="'weights' contains NaN"):
        g.weights = [np.nan, 1.0]
    with pytest.raises(ValueError, match="'means' should have the shape"):
        g.means = np.zeros((3, 3))
    assert g.weights is None and g.means is None


@pytest.mark.parametrize("param,value", [("max_iter", True), ("max_iter", False),
                                         ("n_init", True), ("tol", True), ("tol", False),
                                         ("reg_covar", True), ("verbose_interval", True)])
def test_bool_hyperparameters_fit_as_in_sklearn(param, value):
    """scikit-learn's Interval(Integral/Real, ...) takes a bool (an Integral): both fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SkGaussianMixture(2, random_state=0, **{param: value}).fit(X_OK)
        ours = GaussianMixture(2, random_state=0, **{param: value}).fit(X_OK)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-6)


@pytest.mark.parametrize("param,value", [("tol", -1.0), ("reg_covar", -1e-6), ("max_iter", -1),
                                         ("n_init", 0), ("verbose_interval", 0),
                                         ("tol", np.inf), ("reg_covar", np.inf),
                                         ("n_init", False), ("max_iter", np.True_),
                                         ("tol", np.True_)])
def test_bad_hyperparameters(param, value):
    """Our own checks (scikit-learn's validation is private) give scikit-learn's text."""
    _same_error(lambda cls: cls(2, **{param: value}).fit(X_OK))


@pytest.mark.parametrize("param", ["covariance_type", "init_params"])
def test_bad_string_options(param):
    """scikit-learn lists the options of a set (its order varies between processes); ours
    lists them sorted, with the same sentence around them."""
    with pytest.raises(ValueError, match=rf"^The '{param}' parameter of GaussianMixture must "
                                         r"be a str among \{'.*'\}\. Got 'banana' instead\.$"):
        GaussianMixture(2, **{param: "banana"}).fit(X_OK)


@pytest.mark.parametrize("param", ["weights_init", "means_init", "precisions_init"])
@pytest.mark.parametrize("value", [0.5, "abc"])
def test_initial_parameters_must_be_array_like(param, value):
    """A number or a string as an initial parameter is scikit-learn's "array-like" error
    naming the parameter (it was a TypeError about dimensions, or "could not convert string
    to float", naming none)."""
    with pytest.raises(ValueError, match=rf"^The '{param}' parameter of GaussianMixture must "
                                         rf"be an array-like or None\. Got {value!r} "
                                         r"instead\.$"):
        GaussianMixture(2, **{param: value}).fit(X_OK)


def test_warm_start_must_be_a_bool():
    with pytest.raises(ValueError, match=r"^The 'warm_start' parameter of GaussianMixture must "
                                         r"be an instance of 'bool'.* Got 'yes' instead\.$"):
        GaussianMixture(2, warm_start="yes").fit(X_OK)


def test_verbose_accepts_a_bool():
    GaussianMixture(2, verbose=False, random_state=0).fit(X_OK)


@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
def test_covariances_that_overflow_are_an_error(cov):
    """Data whose spread overflows float64: scikit-learn returns a model of nan for diag and
    spherical (and an unclear error for full); here each is an error that says why."""
    X = np.random.default_rng(0).normal(size=(50, 3)) * 1e300
    with pytest.raises(ValueError, match="not finite .*Scale the input data"):
        GaussianMixture(2, covariance_type=cov, random_state=0).fit(X)


@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
def test_float32_covariances_that_underflow_are_an_error(cov):
    """float32 data of spread 1e-25: variances of 1e-50, below float32's smallest number, were
    cast to 0 while their factors stayed finite (a fitted model of zero covariances whose
    sample() repeated one point); scikit-learn fails there. An error that says why."""
    X = (np.random.default_rng(0).normal(size=(50, 2)) * 1e-25).astype(np.float32)
    with pytest.raises(ValueError, match="covariances do not fit float32 .*smallest"):
        GaussianMixture(1, covariance_type=cov, reg_covar=0.0, random_state=0).fit(X)


@pytest.mark.parametrize("cov", ["full", "diag", "spherical"])
def test_a_collapsed_float32_fit_suggests_float64_as_sklearn_does(cov):
    """scikit-learn's message for an ill-defined covariance of float32 data ends with its hint
    to pass float64 data; the float64 arithmetic here had lost it."""
    X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5], [3.0, 3.0]], dtype=np.float32)
    messages = []
    for cls in (GaussianMixture, SkGaussianMixture):
        with pytest.raises(ValueError) as info:
            cls(4, covariance_type=cov, reg_covar=0.0, random_state=0).fit(X)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert messages[0].endswith("passing float64 data instead of float32.")


@pytest.mark.parametrize("cov", ["full", "diag"])
@pytest.mark.parametrize("compiled", [False, True])
def test_samples_no_component_can_explain_score_minus_inf(cov, compiled):
    """Points so far away that every component's log-density is -inf: a log-likelihood of
    -inf, as scikit-learn's (the compiled E-step gave nan from -inf - -inf)."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-3, 1, (100, 3)), rng.normal(3, 1, (100, 3))])
    if compiled:
        GaussianMixture(2, covariance_type=cov, random_state=0).fit(X)
        engine.finish_preparing()
    ours = GaussianMixture(2, covariance_type=cov, random_state=0).fit(X)
    theirs = SkGaussianMixture(2, covariance_type=cov, random_state=0).fit(X)
    far = X[:3] * 1e160
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(ours.score_samples(far), theirs.score_samples(far))
        assert ours.score(far) == theirs.score(far) == -np.inf
        assert ours.predict(far).tolist() == theirs.predict(far).tolist()


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_a_misspelt_disabled_pass_is_named_by_a_fit_too_small_to_specialise(
        monkeypatch, tmp_path, covariance_type):
    """``ASP_DISABLE_PASSES=fuse-emm`` (a typo of ``fuse-em``) is an error naming the known
    passes at any specialisation; a fit so small that it ended in NumPy before its library was
    built never reported it, so the typo went unnoticed until a larger fit."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ASP_DISABLE_PASSES", "fuse-emm")
    X = np.random.default_rng(0).standard_normal((60, 2))
    with pytest.raises(ValueError, match=r"unknown pass name 'fuse-emm'.*fuse-em"):
        GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    monkeypatch.setenv("ASP_DISABLE_PASSES", "fuse-em")   # a real one: the fit runs
    GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)


def test_a_disabled_pass_qualified_by_gmm_must_be_a_gmm_pass(monkeypatch, tmp_path):
    """``gmm:constant-folding`` names asp-stencil's pass: it disabled nothing, silently."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ASP_DISABLE_PASSES", "gmm:constant-folding")
    X = np.random.default_rng(0).standard_normal((60, 2))
    with pytest.raises(ValueError, match=r"'gmm:constant-folding', but 'gmm' has no pass of "
                                         r"that name \(its passes: fold-constants, fuse-em"):
        GaussianMixture(2, random_state=0).fit(X)
    monkeypatch.setenv("ASP_DISABLE_PASSES", "gmm:fold-constants")
    GaussianMixture(2, random_state=0).fit(X)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_a_component_setting_naming_none_installed_is_reported_by_a_small_fit(
        monkeypatch, tmp_path, covariance_type):
    """``asp_options={"platform_selection": "no-such"}`` (or ``backend``) raises in strict
    mode and warns otherwise, as at any specialisation; a fit so small that it ended in NumPy
    before its library was built said nothing (tied and spherical fits did)."""
    from asp_core import PluginError, SpecializationWarning

    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    X = np.random.default_rng(0).standard_normal((60, 2))
    for setting in ({"platform_selection": "no-such"}, {"backend": "bogus"}):
        gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0,
                             asp_options=setting)
        monkeypatch.setenv("ASP_MODE", "strict")
        with pytest.raises(PluginError, match="of specializer 'gmm', but the installed ones"):
            gm.fit(X)
        monkeypatch.setenv("ASP_MODE", "auto")
        with pytest.warns(SpecializationWarning, match="run in pure Python: kernel option asks"):
            gm.fit(X)

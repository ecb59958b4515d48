"""Every OpenMP variant against the NumPy reference, over awkward sizes and both dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from asp_gmm import reference
from asp_gmm.backends import OpenMPBackend, openmp_source
from asp_gmm.programs import variants_for

from asp_core import SpecializationContext
from asp_core.testing import has_compiler

pytestmark = [pytest.mark.compiler,
              pytest.mark.skipif(not has_compiler("c"), reason="no C compiler (install gcc)")]

SIZES = [(1, 1, 2), (300, 1, 1), (1000, 16, 5), (700, 9, 11)]


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("cov", ["full", "diag"])
@pytest.mark.parametrize("N,D,M", SIZES)
def test_every_em_variant_matches_reference(cov, N, D, M, problem):
    X, w, means, pc = problem(max(N, M), D, M, cov, seed=N + D + M)
    ref = reference.em_step(X, w, means, pc, cov, 1e-6)
    ctx = SpecializationContext("gmm", None)
    names = []
    for variant in variants_for("openmp", "em_step", M, D, cov, n_samples=X.shape[0]):
        fn = OpenMPBackend().build(variant, ctx)
        got = fn(X, w, means, pc, cov, 1e-6)
        names.append(variant.name)
        assert got.log_prob_norm == pytest.approx(ref.log_prob_norm, rel=1e-12, abs=1e-12)
        assert _rel(got.weights, ref.weights) < 1e-10, variant.name
        assert _rel(got.means, ref.means) < 1e-10, variant.name
        assert _rel(got.covariances, ref.covariances) < 1e-9, variant.name
    assert {"samples", "components", "dims"} <= set(names)
    assert any(n.startswith("fused") for n in names)


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_log_prob_and_float32(cov, problem):
    X, w, means, pc = problem(513, 7, 6, cov, seed=3)
    ctx = SpecializationContext("gmm", None)
    for dtype in ("float64", "float32"):
        Xd = X.astype(dtype)
        (variant,) = variants_for("openmp", "log_prob", 6, 7, cov, dtype=dtype)
        got = OpenMPBackend().build(variant, ctx)(Xd, means, pc, cov)
        want = reference.log_prob(Xd.astype(np.float64), means, pc, cov)
        assert _rel(got, want) < 1e-12
        step = [v for v in variants_for("openmp", "em_step", 6, 7, cov, dtype=dtype)][0]
        got = OpenMPBackend().build(step, ctx)(Xd, w, means, pc, cov, 1e-6)
        want = reference.em_step(Xd.astype(np.float64), w, means, pc, cov, 1e-6)
        # float32 input: scikit-learn adds 10 * eps(float32) to the counts, hence the looser bound
        assert _rel(got.means, want.means) < (1e-10 if dtype == "float64" else 1e-5)


def test_generated_source_is_specialised():
    """Loops over D are compile-time constants; the entry point has C linkage."""
    variant = variants_for("openmp", "em_step", 32, 16, "full")[0]
    src = openmp_source(variant)
    assert "#define D 16" in src and "#define M 32" in src and "#define BLOCK 256" in src
    assert "int asp_gmm_em_step(" in src and "int asp_gmm_log_prob(" in src
    # predict's kernel is the same translation unit as the default EM variant
    lp_variant = variants_for("openmp", "log_prob", 32, 16, "full")[0]
    assert openmp_source(lp_variant) == src


def test_far_offset_data_keeps_covariance_accuracy(problem):
    """Shifted moments: data 1e6 from the origin still give accurate covariances."""
    X, w, means, pc = problem(2000, 4, 3, "full", seed=5, offset=1e6)
    ref = reference.em_step(X, w, means, pc, "full", 1e-6)
    ctx = SpecializationContext("gmm", None)
    fn = OpenMPBackend().build(variants_for("openmp", "em_step", 3, 4, "full")[0], ctx)
    got = fn(X, w, means, pc, "full", 1e-6)
    assert _rel(got.covariances, ref.covariances) < 1e-6


def test_concurrent_calls_from_threads(problem):
    """The ctypes call releases the GIL: two threads on one bound variant stay correct."""
    from concurrent.futures import ThreadPoolExecutor

    X, w, means, pc = problem(4000, 5, 4, "full", seed=8)
    ref = reference.em_step(X, w, means, pc, "full", 1e-6)
    ctx = SpecializationContext("gmm", None)
    samples = [v for v in variants_for("openmp", "em_step", 4, 5, "full") if v.name == "samples"]
    fn = OpenMPBackend().build(samples[0], ctx)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: fn(X, w, means, pc, "full", 1e-6), range(8)))
    for got in results:
        assert _rel(got.means, ref.means) < 1e-10

"""Every OpenMP variant against the NumPy reference, over awkward sizes and both dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from asp_gmm import reference
from asp_gmm.backends import OpenMPBackend, openmp_source
from asp_gmm.programs import variants_for

from asp_core import SpecializationContext
from pytest_asp import has_compiler

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
    for variant in variants_for("openmp", "em_step", M, D, cov, n_samples=X.shape[0],
                                options={"variants": "all"}):
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


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_float32_reference_equals_compiled(cov, problem):
    """float32 X: the NumPy reference computes as the kernels do, in double with 10 eps of
    float32 added to the counts, so which engine runs a step changes nothing but rounding
    (the reference squared X in float32 and added 10 eps of float64)."""
    X, w, means, pc = problem(513, 7, 6, cov, seed=4, offset=100.0)
    X32 = X.astype(np.float32)
    labels = np.arange(513, dtype=np.int64) % 6
    ctx = SpecializationContext("gmm", None)
    em, m = (OpenMPBackend().build(variants_for("openmp", op, 6, 7, cov, dtype="float32")[0],
                                   ctx) for op in ("em_step", "m_step"))
    for got, want in ((em(X32, w, means, pc, cov, 1e-6),
                       reference.em_step(X32, w, means, pc, cov, 1e-6)),
                      (m(X32, labels, 6, cov, 1e-6), reference.m_step(X32, labels, 6, cov, 1e-6))):
        for name in ("weights", "means", "covariances"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-9,
                                       err_msg=name)


def test_generated_source_is_specialised():
    """Loops over D are compile-time constants; the entry point has C linkage."""
    variant = variants_for("openmp", "em_step", 32, 16, "full")[0]
    src = openmp_source(variant)
    assert "#define D 16" in src and "#define M 32" in src
    assert f"#define BLOCK {variant.params['block']}" in src
    for op in ("em_step", "log_prob", "e_step", "m_step"):
        assert f"int asp_gmm_{op}(" in src
    # predict's E-step and the initial M-step are the same translation unit as the default
    # EM variant
    for op in ("log_prob", "e_step", "m_step"):
        assert openmp_source(variants_for("openmp", op, 32, 16, "full")[0]) == src


def test_far_offset_data_keeps_covariance_accuracy(problem):
    """Shifted moments: data 1e6 from the origin still give accurate covariances."""
    X, w, means, pc = problem(2000, 4, 3, "full", seed=5, offset=1e6)
    ref = reference.em_step(X, w, means, pc, "full", 1e-6)
    ctx = SpecializationContext("gmm", None)
    fn = OpenMPBackend().build(variants_for("openmp", "em_step", 3, 4, "full")[0], ctx)
    got = fn(X, w, means, pc, "full", 1e-6)
    assert _rel(got.covariances, ref.covariances) < 1e-6



def _scatter(X, resp, reg):
    """scikit-learn's diagonal covariances, sum(r x^2) / nk - mean^2 with nk = sum(r) + 10 eps,
    computed without its cancellation: two passes, moments about each component's own mean
    (the 10 eps leave mean^2 10 eps / nk on top)."""
    tiny = 10 * np.finfo(np.float64).eps
    nk = resp.sum(axis=0) + tiny
    means = resp.T @ X / nk[:, None]
    return np.array([resp[:, k] @ (X - means[k]) ** 2 / nk[k] for k in range(len(nk))]) + \
        means**2 * (tiny / nk)[:, None] + reg


def test_diag_components_far_apart_keep_their_variances():
    """A tight diagonal cluster beside one a million of its widths away: about one point shared
    by both (the weighted mean of the means) the tight one's second moment cancelled, 3.5x off
    at 1e5 apart and "ill-defined empirical covariance" at 1e6, in every variant and in the
    initial M-step, where scikit-learn's formula fits it."""
    rng = np.random.default_rng(0)
    n, D = 1500, 3
    X = np.r_[rng.normal(0.0, 0.01, (n, D)), rng.normal(1e6, 1.0, (n, D)),
              rng.normal(-3e5, 10.0, (n, D))]
    labels = np.repeat(np.arange(3), n)
    means = np.array([X[labels == k].mean(axis=0) for k in range(3)])
    pc = 1.0 / np.array([X[labels == k].std(axis=0) for k in range(3)])
    w = np.full(3, 1.0 / 3)
    resp = reference.e_step(X, w, means, pc, "diag", "proba")
    ctx = SpecializationContext("gmm", None)
    for variant in variants_for("openmp", "em_step", 3, D, "diag", n_samples=X.shape[0],
                                options={"variants": "all"}):
        got = OpenMPBackend().build(variant, ctx)(X, w, means, pc, "diag", 1e-9)
        np.testing.assert_allclose(got.covariances, _scatter(X, resp, 1e-9), rtol=1e-7,
                                   err_msg=variant.name)
    m_step = OpenMPBackend().build(variants_for("openmp", "m_step", 3, D, "diag")[0], ctx)
    hard = np.eye(3)[labels]
    for given in (labels, hard):
        got = m_step(X, given, 3, "diag", 1e-9)
        np.testing.assert_allclose(got.covariances, _scatter(X, hard, 1e-9), rtol=1e-7)


def test_concurrent_calls_from_threads(problem):
    """The ctypes call releases the GIL: two threads on one bound variant stay correct."""
    from concurrent.futures import ThreadPoolExecutor

    X, w, means, pc = problem(4000, 5, 4, "full", seed=8)
    ref = reference.em_step(X, w, means, pc, "full", 1e-6)
    ctx = SpecializationContext("gmm", None)
    samples = [v for v in variants_for("openmp", "em_step", 4, 5, "full",
                                       options={"variants": "all"}) if v.name == "samples"]
    fn = OpenMPBackend().build(samples[0], ctx)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: fn(X, w, means, pc, "full", 1e-6), range(8)))
    for got in results:
        assert _rel(got.means, ref.means) < 1e-10


def test_layout_follows_the_simd_registers_of_the_target():
    """AVX-512 code on an AVX2 machine spilled and ran 10x slower: vectors and register tiles
    are sized from the hardware query's ISA flags."""
    from asp_gmm.lowering import simd_shape
    from asp_gmm.layout import layout_for

    assert simd_shape(("sse4_2", "avx", "avx2", "fma")) == (4, 16)
    assert simd_shape(("avx2", "avx512f")) == (8, 32)
    assert simd_shape(("neon", "asimd")) == (2, 32)
    assert simd_shape(()) == (2, 16)
    for M, D in ((32, 16), (16, 64), (5, 3)):
        for width, regs in ((8, 32), (4, 16), (2, 16)):
            lay = layout_for(M, D, "full", vector_doubles=width, registers=regs)
            assert lay.VW <= width and lay.DP % lay.VW == 0 and lay.DP >= D
            assert lay.unroll * lay.NV <= max(regs // 2, lay.NV)
            assert lay.rows * lay.NV <= max(regs // 2, lay.NV)
            diag = layout_for(M, D, "diag", vector_doubles=width, registers=regs)
            assert diag.VK <= width and diag.MP % diag.VK == 0


def test_covariance_row_tiles_divide_the_vectors():
    """The full M-step walks each vector's VW covariance rows in tiles of ``rows``; a tile
    that does not divide VW (3 of 8 at 33-40 features on AVX-512) counted rows twice and
    wrote a row past the component's block."""
    from asp_gmm.layout import layout_for

    for D in range(1, 130):
        for width, regs in ((8, 32), (4, 16), (2, 16), (8, 16)):
            lay = layout_for(3, D, "full", vector_doubles=width, registers=regs)
            assert lay.VW % lay.rows == 0, (D, width, regs, lay.rows)


def test_full_covariance_at_36_features_matches_reference(problem):
    """At 33-40 features the AVX-512 layout has 5 vectors per row: every variant of the host's
    layout, against the reference."""
    X, w, means, pc = problem(500, 36, 3, "full", seed=36)
    ref = reference.em_step(X, w, means, pc, "full", 1e-6)
    ctx = SpecializationContext("gmm", None)
    for variant in variants_for("openmp", "em_step", 3, 36, "full", n_samples=X.shape[0],
                                options={"variants": "all"}):
        got = OpenMPBackend().build(variant, ctx)(X, w, means, pc, "full", 1e-6)
        assert got.log_prob_norm == pytest.approx(ref.log_prob_norm, rel=1e-12)
        assert _rel(got.means, ref.means) < 1e-10, variant.name
        assert _rel(got.covariances, ref.covariances) < 1e-9, variant.name


def test_openmp_plan_uses_the_host_isa():
    from asp_core.hardware import query
    from asp_gmm.lowering import simd_shape

    width, _ = simd_shape(tuple(query().isa))
    variant = variants_for("openmp", "em_step", 32, 16, "full")[0]
    assert variant.program.meta["plan"].layout.VW == min(width, 16)
    assert f"#define VW {min(width, 16)}" in openmp_source(variant)


@pytest.mark.parametrize("isa,flag", [(("avx512f",), "-mavx512f"), (("avx2", "avx"), "-mavx2"),
                                      (("sse4_2",), "-msse4.2")])
def test_sources_for_other_x86_targets_compile(isa, flag, tmp_path):
    """Each CI machine runs its own shape; the others are checked to be valid C for theirs."""
    from asp_core import PlatformProgram
    from pytest_asp import assert_valid_c_for_target
    from asp_gmm.lowering import plan_for, program_module
    from asp_gmm.programs import problem as make_problem
    from asp_gmm.variants import CPUVariants

    plan = plan_for(make_problem("em_step", 32, 16, "full", "float64", 1000, None), isa)
    program = PlatformProgram("openmp", program_module(plan, 256), {"plan": plan})
    ctx = SpecializationContext("gmm", None)
    src = openmp_source(CPUVariants().variants(program, ctx)[0])
    assert_valid_c_for_target(src, flag, tmp_path)


@pytest.mark.parametrize("cov", ["full", "diag"])
@pytest.mark.parametrize("N,D,M", SIZES)
def test_e_step_and_m_step_match_reference(cov, N, D, M, problem):
    """The compiled E-step (every output) and the initial M-step (labels with unassigned
    samples, and dense responsibilities) equal the NumPy reference."""
    X, w, means, pc = problem(max(N, M), D, M, cov, seed=N + 2 * D + M)
    ctx = SpecializationContext("gmm", None)
    (e_variant,) = variants_for("openmp", "e_step", M, D, cov)
    e_step = OpenMPBackend().build(e_variant, ctx)
    for output in ("labels", "proba", "score_samples", "score"):
        got = e_step(X, w, means, pc, cov, output)
        want = reference.e_step(X, w, means, pc, cov, output)
        if output == "labels":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    (m_variant,) = variants_for("openmp", "m_step", M, D, cov)
    m_step = OpenMPBackend().build(m_variant, ctx)
    rng = np.random.default_rng(N)
    labels = rng.integers(-1, M, X.shape[0])
    resp = rng.random((X.shape[0], M))
    resp /= resp.sum(axis=1, keepdims=True)
    for r in (labels, resp):
        got = m_step(X, r, M, cov, 1e-6)
        want = reference.m_step(X, r, M, cov, 1e-6)
        for name in ("weights", "means", "covariances"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-9,
                                       atol=1e-12, err_msg=name)


def test_m_step_rejects_labels_out_of_range(problem):
    X, w, means, pc = problem(50, 3, 2, "diag")
    ctx = SpecializationContext("gmm", None)
    m_step = OpenMPBackend().build(variants_for("openmp", "m_step", 2, 3, "diag")[0], ctx)
    with pytest.raises(ValueError, match="labels must be < n_components"):
        m_step(X, np.full(50, 2, dtype=np.int64), 2, "diag", 1e-6)
    with pytest.raises(ValueError, match="labels must be int64"):
        m_step(X, np.zeros(50, dtype=np.int32), 2, "diag", 1e-6)

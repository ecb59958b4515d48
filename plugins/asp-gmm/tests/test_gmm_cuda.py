"""CUDA variants: generated and compiled with nvcc here; run only where a GPU exists."""

from __future__ import annotations

import numpy as np
import pytest
from asp_gmm import reference
from asp_gmm.backends import CudaBackend, cuda_source
from asp_gmm.programs import variants_for

from asp_core import SpecializationContext
from pytest_asp import has_gpu, has_nvcc

CASES = [("full", "em_step", "float64"), ("full", "log_prob", "float64"),
         ("diag", "em_step", "float64"), ("diag", "log_prob", "float64"),
         ("full", "em_step", "float32"), ("diag", "em_step", "float32")]


@pytest.mark.parametrize("cov,op,dtype", CASES)
@pytest.mark.nvcc
@pytest.mark.skipif(not has_nvcc(), reason="nvcc not found (no CUDA toolkit)")
def test_cuda_variants_compile_with_nvcc(cov, op, dtype):
    from asp_core.toolchain import find_toolchain

    tc = find_toolchain("cuda")
    variants = variants_for("cuda", op, 5, 3, cov, dtype=dtype)
    if op == "em_step":
        assert len(variants) >= 4
    if dtype == "float32":  # the dtype only changes the load of X: one variant suffices
        variants = variants[:1]
    for variant in variants:
        src = cuda_source(variant)
        assert f'extern "C" int asp_gmm_{op}(' in src
        result = tc.check(src)
        assert "error" not in result.log.lower(), result.log


def test_shared_tiles_fit_a_blocks_shared_memory():
    """Many components: the statistics kernel staged SB (D + MP) + threads doubles, past 48
    KiB once SB was clamped to 1 (M = 6000: ptxas refused the unit).  A thread count whose
    tiles do not fit is not proposed; where none fits, the CUDA platform declines."""
    from asp_gmm.layout import CUDA_SHARED_DOUBLES
    from asp_gmm.platforms import CudaPlatform
    from asp_gmm.programs import problem

    variants = variants_for("cuda", "em_step", 6000, 8, "full")
    assert "fused-t128" in [v.name for v in variants]
    assert "fused-t256" not in [v.name for v in variants]
    for v in variants:
        lay, threads = v.program.meta["plan"].layout, v.params["block"]
        sb = lay.cuda_samples_per_block(threads)
        assert sb >= 1 and sb * (lay.D + lay.MP) + threads <= CUDA_SHARED_DOUBLES
        assert f"#define SB {sb}\n" in cuda_source(v)
    reason = CudaPlatform().check(problem("em_step", 7000, 8, "diag", n_samples=8), None)
    assert reason is not None and "48 KiB of shared memory" in reason


@pytest.mark.nvcc
@pytest.mark.skipif(not has_nvcc(), reason="nvcc not found (no CUDA toolkit)")
def test_many_components_compile_with_nvcc():
    from asp_core.toolchain import find_toolchain

    for variant in variants_for("cuda", "em_step", 6000, 8, "full"):
        result = find_toolchain("cuda").check(cuda_source(variant))
        assert "error" not in result.log.lower(), result.log


@pytest.mark.parametrize("cov", ["full", "diag"])
@pytest.mark.gpu
@pytest.mark.skipif(not (has_gpu() and has_nvcc()), reason="needs a CUDA GPU and nvcc")
def test_cuda_variants_match_reference_on_gpu(cov, problem):
    X, w, means, pc = problem(5000, 6, 4, cov, seed=9)
    ref = reference.em_step(X, w, means, pc, cov, 1e-6)
    ctx = SpecializationContext("gmm", None)
    for variant in variants_for("cuda", "em_step", 4, 6, cov):
        got = CudaBackend().build(variant, ctx)(X, w, means, pc, cov, 1e-6)
        assert got.log_prob_norm == pytest.approx(ref.log_prob_norm, rel=1e-10)
        np.testing.assert_allclose(got.means, ref.means, rtol=1e-9)
        np.testing.assert_allclose(got.covariances, ref.covariances, rtol=1e-8, atol=1e-12)
    (lp,) = variants_for("cuda", "log_prob", 4, 6, cov)
    got = CudaBackend().build(lp, ctx)(X, means, pc, cov)
    np.testing.assert_allclose(got, reference.log_prob(X, means, pc, cov), rtol=1e-10)



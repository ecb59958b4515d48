"""CUDA platform selection, binding and (where a GPU exists) real runs.

Without a GPU the ``cuda`` platform must step aside with a reason (so OpenMP runs the kernel),
unless the user forces it; forced, the pipeline generates CUDA, compiles it with nvcc through
the core's cache and fails with a clear error only when it needs device memory. The GPU tests
run the kernels on the device and compare with Python (bitwise for ``+ - * /``; CUDA's libm may
differ from glibc's in the last bit, so kernels with transcendental calls get a tolerance).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_asp import has_gpu, requires_compiler, requires_gpu, requires_nvcc
from asp_stencil import StencilKernel
from asp_stencil.bench import Heat, Laplacian
from asp_stencil.cuda.backend import gpu_arch_flags
from asp_stencil.cuda.devmem import CudaUnavailable, get_device_memory
from asp_stencil.cuda.platform import MIN_GPU_POINTS, CudaPlatform, forced
from asp_stencil.testing import assert_bitwise, clone_grids, make_grids


class _Ctx:
    """The part of a SpecializationContext the platform reads."""

    def __init__(self, options=None, gpus=()):
        from types import SimpleNamespace

        self.specializer = "stencil"
        self.options = options or {}
        self.hardware = SimpleNamespace(has_gpu=bool(gpus), gpus=list(gpus))


def _prog(cls=Laplacian, shape=(9, 10, 11)):
    return cls().kernel.analyse(*make_grids(shape, 1))[1]


@requires_nvcc
def test_check_refuses_without_gpu_and_accepts_when_forced(monkeypatch):
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    plat = CudaPlatform()
    reason = plat.check(_prog(), _Ctx())
    assert reason is not None and "no CUDA GPU" in reason
    assert plat.check(_prog(), _Ctx(options={"platform_selection": "cuda"})) is None
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "cuda")
    assert forced(_Ctx()) and plat.check(_prog(), _Ctx()) is None


@requires_nvcc
def test_check_with_gpu_wants_a_big_enough_grid(monkeypatch):
    from asp_core.hardware import GPU

    import asp_stencil.cuda.devmem as dm

    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    monkeypatch.setattr(dm, "_chosen", dm.DeviceMemory())  # a binding that works
    gpu = [GPU("Test GPU", 80 << 30, "9.0")]
    small = CudaPlatform().check(_prog(), _Ctx(gpus=gpu))
    assert small is not None and "too small" in small
    assert CudaPlatform().check(_prog(shape=(70, 70, 70)), _Ctx(gpus=gpu)) is None
    assert 70 ** 3 >= MIN_GPU_POINTS


def test_gauss_seidel_never_goes_to_the_gpu():
    class GS(StencilKernel):
        def kernel(self, rhs, out):
            for x in out.interior_points():
                s = rhs[x]
                for y in out.neighbors(x, 1):
                    s = s + out[y]
                out[x] = s * 0.25

    reason = CudaPlatform().check(_prog(GS, (8, 9)), _Ctx(options={"platform_selection": "cuda"}))
    assert reason and "Gauss-Seidel" in reason


def test_arch_flags_follow_the_device():
    from types import SimpleNamespace

    from asp_core.hardware import GPU

    assert gpu_arch_flags(SimpleNamespace(gpus=[GPU("H100", 80 << 30, "9.0")])) == ("-arch=sm_90",)
    assert gpu_arch_flags(SimpleNamespace(gpus=[])) == ()


@pytest.mark.skipif(has_gpu(), reason="checks the behaviour without a GPU")
def test_device_memory_error_names_every_binding(monkeypatch):
    import asp_stencil.cuda.devmem as dm

    monkeypatch.setattr(dm, "_chosen", None)
    monkeypatch.delenv("ASP_CUDA_MEMORY", raising=False)
    with pytest.raises(CudaUnavailable) as err:
        get_device_memory()
    for name in ("pycuda", "cuda-python", "cupy"):
        assert name in str(err.value)
    monkeypatch.setenv("ASP_CUDA_MEMORY", "nonsense")
    with pytest.raises(ValueError, match="ASP_CUDA_MEMORY"):
        get_device_memory()


def _no_bindings(monkeypatch):
    """Simulate a machine where pycuda, cuda-python and cupy are not installed."""
    import asp_stencil.cuda.devmem as dm

    def missing(name):
        def binding():
            raise ImportError(f"No module named {name!r}")
        return binding

    monkeypatch.setattr(dm, "_chosen", None)
    monkeypatch.setattr(dm, "_BINDINGS", {n: missing(n) for n in dm._BINDINGS})
    monkeypatch.delenv("ASP_CUDA_MEMORY", raising=False)


def _runs_like_python(shape):
    """A Laplacian called on ``shape``, checked bitwise against Python; returns the kernel."""
    k = Laplacian()
    grids = make_grids(shape, 1, seed=3)
    ref = clone_grids(grids)
    k.pure_python(*ref)
    k.kernel(*grids)
    assert_bitwise(ref[-1].data, grids[-1].data)
    return k


@requires_nvcc
def test_check_declines_a_gpu_without_a_device_memory_binding(monkeypatch):
    from asp_core.hardware import GPU

    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    _no_bindings(monkeypatch)
    gpu = [GPU("Test GPU", 80 << 30, "9.0")]
    reason = CudaPlatform().check(_prog(shape=(70, 70, 70)), _Ctx(gpus=gpu))
    assert reason is not None and "no usable CUDA binding" in reason
    for name in ("pycuda", "cuda-python", "cupy"):
        assert name in reason


@requires_nvcc
@requires_compiler
def test_a_gpu_without_bindings_runs_the_kernel_on_openmp(monkeypatch):
    """The first call must not raise CudaUnavailable: selection falls through to OpenMP."""
    import dataclasses

    import asp_core.hardware as hw
    from asp_core.hardware import GPU

    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    _no_bindings(monkeypatch)
    with_gpu = dataclasses.replace(hw.query(), gpus=[GPU("Test GPU", 80 << 30, "9.0")])
    monkeypatch.setattr(hw, "query", lambda: with_gpu)
    k = _runs_like_python((66, 66, 66))
    chosen = k.kernel.last_context.decision("platform_selection")
    assert chosen is not None and chosen.choice == "openmp"
    assert any(n == "cuda" and "no usable CUDA binding" in r for n, r in chosen.params["rejected"])


@requires_compiler
def test_without_gpu_the_openmp_platform_runs_the_kernel(monkeypatch):
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    if has_gpu():
        pytest.skip("a GPU is present")
    _runs_like_python((9, 10, 11))


@requires_nvcc
@requires_compiler
@pytest.mark.skipif(has_gpu(), reason="checks the behaviour without a GPU")
def test_forced_cuda_compiles_then_falls_back_clearly_without_device(monkeypatch):
    """Forced, the CUDA code is generated and compiled; without a device-memory binding the
    kernel then runs in Python with the reason (each call raised CudaUnavailable, a
    RuntimeError, where the docs promise a fallback), and under strict mode raises it."""
    from asp_core import SpecializationWarning, Unspecializable

    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "cuda")
    grids = make_grids((9, 10, 11), 1, seed=2)
    monkeypatch.setenv("ASP_MODE", "strict")
    with pytest.raises(Unspecializable, match="no usable CUDA binding"):
        Laplacian().kernel(*clone_grids(grids))
    monkeypatch.setenv("ASP_MODE", "auto")
    k = Laplacian()
    ref = clone_grids(grids)
    k.pure_python(*ref)
    with pytest.warns(SpecializationWarning, match="no usable CUDA binding"):
        k.kernel(*grids)
    assert_bitwise(ref[-1].data, grids[-1].data)
    ctx = k.kernel.last_context
    platform = ctx.decision("platform_selection")
    assert platform is not None and platform.choice == "python"   # where it ran
    assert platform.params["failed"] == "cuda" and platform.source == "fallback"
    compiled = [c.library for c in ctx.compiles]
    assert compiled and all(lib.source_path.suffix == ".cu" for lib in compiled)
    assert '__global__' in compiled[0].source_path.read_text()
    assert "nvcc" in compiled[0].command[0]


# -- on a GPU --------------------------------------------------------------------------------

class Transcendental(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = math.exp(-abs(u[x])) + math.sin(u[x]) * 0.5
            for y in u.neighbors(x, 1):
                out[x] += math.sqrt(abs(u[y])) * 0.125


@requires_gpu
@requires_nvcc
@pytest.mark.parametrize("cls,shape,exact", [(Laplacian, (33, 40, 71), True),
                                              (Heat, (300, 301), True),
                                              (Transcendental, (65, 66, 67), False)])
def test_gpu_matches_python(monkeypatch, cls, shape, exact):
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "cuda")
    k = cls()
    if cls is Heat and len(shape) == 2:
        k.centre = -4.0
    grids = make_grids(shape, 1, seed=4)
    ref = clone_grids(grids)
    k.pure_python(*ref)
    for _ in range(8):  # every variant is timed on a call: all must be right
        test = clone_grids(grids)
        k.kernel(*test)
        if exact:
            assert_bitwise(ref[-1].data, test[-1].data)
        else:
            np.testing.assert_allclose(test[-1].data, ref[-1].data, rtol=1e-14, atol=1e-15)


@requires_gpu
@requires_nvcc
def test_gpu_iterate_on_device(monkeypatch):
    from asp_core import cast as C
    from asp_core.build import compile_library
    from asp_stencil.cuda.backend import bind_cuda
    from asp_stencil.cuda.lowering import default_variants, lower_cuda

    k = Heat()
    k.centre = -4.0
    grids = make_grids((130, 257), 1, seed=8)
    prog = k.kernel.analyse(*grids)[1]
    vs = default_variants(prog)
    lib = compile_library(C.print_cuda(lower_cuda(prog, vs)), lang="cuda", openmp=False,
                          name="gpu_iterate_test")
    for steps in (1, 2, 3, 7, 64):
        ref = clone_grids(grids)
        gs = list(ref)
        for _ in range(steps):
            k.pure_python(*gs)
            gs[-1], gs[-2] = gs[-2], gs[-1]
        for v in vs:
            test = clone_grids(grids)
            bind_cuda(lib.cdll, prog, v).iterate(tuple(test), steps)
            for r, t in zip(ref, test):
                assert_bitwise(r.data, t.data, what=f"T={steps} {v.label}")

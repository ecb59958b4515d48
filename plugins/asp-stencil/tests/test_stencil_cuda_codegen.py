"""CUDA backend: the generated code compiles with nvcc and computes what Python computes.

There is no GPU in CI, so correctness is checked two ways: every kernel of the differential
corpus (the OpenMP backend's, ``test_stencil_corpus.py``) and random kernels of the DSL are
compiled by ``nvcc`` (all variants of a kernel share one translation unit), and the *same*
generated CUDA is run on the CPU through :mod:`asp_stencil.cuda.emulate` (same index arithmetic,
shared-memory staging, barriers and launch geometry) and compared bit for bit with the
pure-Python kernel, for single calls and for the device-side ``iterate`` with T = 1, 2, 3, 7, 64.
"""

from __future__ import annotations

import ctypes
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings

from asp_core import cast as C
from asp_core.ir import walk
from asp_core.errors import Unspecializable
from pytest_asp import requires_compiler, requires_nvcc
from asp_core.toolchain import find_toolchain
from asp_stencil import StencilKernel
from asp_stencil.bench import Heat, Laplacian
from asp_stencil.cuda.emulate import (HostMemory, emulated_library, emulation_source,
                                      iterate_emulated, run_emulated)
from asp_stencil.cuda.lowering import (CudaVariant, default_variants, iterate_name,
                                       launcher_name, lower_cuda, unsupported_reason)
from asp_stencil.grid import default_neighbor_definition
from asp_stencil.testing import (assert_bitwise, clone_grids, kernel_sources, load_kernel,
                                 make_grids)

#: NumPy's warning when a complex value is stored into a float array (Python went complex)
_COMPLEX_WARNING = getattr(getattr(np, "exceptions", np), "ComplexWarning")


def _corpus() -> list[tuple]:
    """The OpenMP backend's differential corpus (``CASES`` of ``test_stencil_corpus.py``)."""
    path = Path(__file__).with_name("test_stencil_corpus.py")
    spec = importlib.util.spec_from_file_location("_asp_stencil_corpus_for_cuda", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return list(mod.CASES)


CASES = _corpus()
IDS = [c[0] for c in CASES]


def _program(cls, grids):
    return cls().kernel.analyse(*grids)[1]


def _cuda(prog, variants=None) -> tuple[str, list[CudaVariant]]:
    module, vs = _module(prog, variants)
    return C.print_cuda(module), vs


def _module(prog, variants=None) -> tuple[C.Module, list[CudaVariant]]:
    vs = variants or default_variants(prog)
    return lower_cuda(prog, vs), vs


# -- structure (no compiler) -------------------------------------------------------------------

def test_variants_and_launchers_structure():
    grids = make_grids((9, 10, 11), 1)
    prog = _program(Laplacian, grids)
    vs = default_variants(prog)
    assert [v.strategy for v in vs].count("shared") == 2
    assert all(len(v.block) == 3 and v.block[0] % 32 == 0 for v in vs)
    src, _ = _cuda(prog, vs)
    for v in vs:
        assert f'extern "C" int {launcher_name(prog, v)}(' in src
        assert f'extern "C" int {iterate_name(prog, v)}(' in src
    assert src.count("__syncthreads();") == 2  # one barrier per shared variant
    assert "__shared__ double sh_u[" in src
    assert "cudaErrorInvalidValue" in src  # launchers check the sizes they are given


def test_point_reads_only_kernel_gets_no_shared_variant():
    class Scale(StencilKernel):
        def kernel(self, a, out):
            for x in out.interior_points():
                out[x] = a[x] * 2.0

    prog = _program(Scale, make_grids((40, 50), 1))
    assert {v.strategy for v in default_variants(prog)} == {"direct"}


def test_gauss_seidel_is_refused_with_reason():
    name, cls, shape, n_in, ghost, nd = next(c for c in CASES if c[0] == "gauss-seidel-2d")
    prog = _program(cls, make_grids(shape, n_in, ghost_depth=ghost, neighbor_definition=nd))
    reason = unsupported_reason(prog)
    assert reason and "Gauss-Seidel" in reason
    with pytest.raises(ValueError, match="Gauss-Seidel"):
        lower_cuda(prog)


def test_emulation_rewrites_every_launch():
    prog = _program(Heat, make_grids((30, 40), 1))
    module, _ = _module(prog)
    emu = emulation_source(module)
    launches = [n for n in walk(module) if isinstance(n, C.CudaLaunch)]
    assert launches and "<<<" not in emu and "cuda_runtime.h" not in emu
    assert emu.count("asp_emu_launch(") == len(launches) + 1  # and its definition
    with pytest.raises(ValueError):
        emulation_source(C.Module([C.Include("math.h")]))


class WideStar(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            s = u[x] * -6.0
            for y in u.neighbors(x, 1):
                s = s + u[y] * 0.1
            out[x] = s


def _star(radius: int, dim: int) -> list:
    return [[(0,) * dim], [tuple(sgn * r if a == d else 0 for a in range(dim))
                           for r in range(1, radius + 1) for d in range(dim) for sgn in (-1, 1)]]


def test_shared_tiles_beyond_static_shared_memory_are_not_proposed():
    """A 3-D radius-4 star in float64 staged a 51,200-byte tile with 32x8x2 blocks: ptxas
    refused it (48 KiB of static shared memory), and with it the whole translation unit."""
    from asp_stencil.cuda.lowering import MAX_STATIC_SHARED, _CudaLowering

    prog = _program(WideStar, make_grids((20, 21, 70), 1, ghost_depth=4,
                                         neighbor_definition=_star(4, 3)))
    vs = default_variants(prog)
    shared = [v for v in vs if v.strategy == "shared"]
    assert [v.label for v in shared] == ["shared_32x4x4"]
    assert _CudaLowering(prog).shared_bytes((32, 8, 2)) > MAX_STATIC_SHARED
    assert all(_CudaLowering(prog).shared_bytes(v.block) <= MAX_STATIC_SHARED for v in shared)


@pytest.mark.parametrize("shape", [(131074, 34), (524290, 10), (70000, 8, 40)])
def test_tall_grids_launch_in_chunks_within_cudas_grid_limits(shape):
    """gridDim.y and z are at most 65535: a taller grid runs as several launches, each told
    its chunk's block offset (such a launch failed with cudaErrorInvalidConfiguration)."""
    from asp_stencil.cuda.lowering import MAX_GRID_YZ

    prog = _program(Heat if len(shape) == 2 else Laplacian, make_grids(shape, 1))
    module, vs = _module(prog)
    assert len(vs) >= 3
    chunked = 0
    for launch in (n for n in walk(module) if isinstance(n, C.CudaLaunch)):
        for g in launch.grid[1:]:
            if isinstance(g, C.Ternary):   # min(blocks left, MAX_GRID_YZ)
                assert g.orelse == C.Constant(MAX_GRID_YZ)
                chunked += 1
            else:
                assert isinstance(g, C.Constant) and g.value <= MAX_GRID_YZ
    assert chunked


@requires_nvcc
def test_wide_stars_and_tall_grids_compile_with_nvcc():
    for prog in (_program(WideStar, make_grids((20, 21, 70), 1, ghost_depth=4,
                                               neighbor_definition=_star(4, 3))),
                 _program(Laplacian, make_grids((70000, 8, 40), 1))):
        result = find_toolchain("cuda").check(_cuda(prog)[0])
        assert "error" not in result.log.lower()


@requires_compiler
@pytest.mark.parametrize("shape", [(13, 40), (9, 20, 13)])
def test_chunked_launches_emulated_bitwise(monkeypatch, shape):
    """The chunks' block offsets reach every point once: with a limit of 2 blocks per launch
    along y and z, every variant still equals Python bit for bit (sweeps and device loop)."""
    from asp_stencil.cuda import lowering

    monkeypatch.setattr(lowering, "MAX_GRID_YZ", 2)
    k = Heat() if len(shape) == 2 else Laplacian()
    grids = make_grids(shape, 1, seed=3)
    prog = k.kernel.analyse(*grids)[1]
    module, vs = _module(prog)
    src = C.print_cuda(module)
    assert "bo1 += 2" in src and ("bo2 += 2" in src) == (len(shape) == 3)
    lib = emulated_library(module, name="cuda_chunked")
    ref = clone_grids(grids)
    k.pure_python(*ref)
    for v in vs:
        test = clone_grids(grids)
        assert run_emulated(lib, prog, v, test) == 0
        assert_bitwise(ref[-1].data, test[-1].data, what=f"[{v.label}]")
        test, ref3 = clone_grids(grids), clone_grids(grids)
        assert iterate_emulated(lib, prog, v, test, 3) == 0
        _reference_iterate(k, ref3, 3)
        for r, t in zip(ref3, test):
            assert_bitwise(r.data, t.data, what=f"T=3 [{v.label}]")


# -- nvcc compiles every generated kernel ------------------------------------------------------

@requires_nvcc
@pytest.mark.parametrize("name,cls,shape,n_inputs,ghost,nd", CASES, ids=IDS)
def test_corpus_compiles_with_nvcc(name, cls, shape, n_inputs, ghost, nd):
    prog = _program(cls, make_grids(shape, n_inputs, ghost_depth=ghost, neighbor_definition=nd))
    if unsupported_reason(prog):
        pytest.skip(f"not a CUDA kernel: {unsupported_reason(prog)}")
    src, vs = _cuda(prog)
    result = find_toolchain("cuda").check(src)  # raises CompileError with nvcc's log
    assert "error" not in result.log.lower()


@requires_nvcc
def test_named_cuda_platform_through_the_pipeline_compiles_with_nvcc():
    """Without a GPU the CUDA platform declines every kernel, but the core lowers for it by
    name (phases 1-4 through the registry's components) and the code compiles."""
    from asp_core.decisions import PLATFORM
    from asp_stencil.cuda.backend import cuda_source

    variants = Laplacian().kernel.variants_for("cuda", *make_grids((9, 10, 11), 1))
    decision = variants.context.decision(PLATFORM)
    assert decision is not None and (decision.choice, decision.source) == ("cuda", "named")
    program = variants.variant(next(iter(variants))).program
    assert program.platform == "cuda"
    result = find_toolchain("cuda").check(cuda_source(program))
    assert "error" not in result.log.lower()


# -- the generated CUDA, emulated on the CPU, equals Python bit for bit ------------------------

@requires_compiler
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name,cls,shape,n_inputs,ghost,nd",
                         [c for c in CASES if "large" not in c[0]],
                         ids=[c[0] for c in CASES if "large" not in c[0]])
def test_corpus_emulated_bitwise(name, cls, shape, n_inputs, ghost, nd):
    grids = make_grids(shape, n_inputs, ghost_depth=ghost, neighbor_definition=nd, seed=7,
                       special=True)
    k = cls()
    prog = _program(cls, grids)
    if unsupported_reason(prog):
        pytest.skip(f"not a CUDA kernel: {unsupported_reason(prog)}")
    module, vs = _module(prog)
    lib = emulated_library(module)
    ref = clone_grids(grids)
    with np.errstate(all="ignore"):
        k.pure_python(*ref)
    for v in vs:
        test = clone_grids(grids)
        assert run_emulated(lib, prog, v, test) == 0
        assert_bitwise(ref[-1].data, test[-1].data, what=f"{name} [{v.label}]")
        for a, b in zip(ref[:-1], test[:-1]):
            assert_bitwise(a.data, b.data, what="an input grid was modified")


class TwoOutputs(StencilKernel):
    def kernel(self, u, grad, out):
        for x in out.interior_points():
            grad[x] = u[x] * 2.0
            s = u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = s


@requires_compiler
def test_bound_sweep_brings_back_every_output_grid(monkeypatch):
    """The bound CUDA sweep downloaded only the last grid: a kernel writing two kept the
    other's old values on the host."""
    import asp_stencil.cuda.devmem as dm
    from asp_stencil.cuda.backend import bind_cuda

    monkeypatch.setattr(dm, "_chosen", HostMemory())
    grids = make_grids((20, 40), 2, seed=1)
    prog = _program(TwoOutputs, grids)
    assert [g.name for g in prog.outputs] == ["grad", "out"]
    module, vs = _module(prog)
    lib = emulated_library(module)
    ref = clone_grids(grids)
    TwoOutputs().pure_python(*ref)
    for v in vs:
        test = clone_grids(grids)
        bind_cuda(lib, prog, v)(*test)
        for r, t in zip(ref, test):
            assert_bitwise(r.data, t.data, what=f"[{v.label}]")


def test_launcher_rejects_wrong_sizes():
    pytest.importorskip("numpy")
    grids = make_grids((9, 10, 11), 1)
    prog = _program(Laplacian, grids)
    module, vs = _module(prog)
    lib = emulated_library(module)

    fn = getattr(lib, launcher_name(prog, vs[0]))
    fn.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_long] * 3
    fn.restype = ctypes.c_int
    before = grids[-1].data.copy()
    assert fn(grids[0].data.ctypes.data, grids[1].data.ctypes.data, 9, 10, 12) == 1
    assert np.array_equal(before, grids[-1].data)


def _reference_iterate(k, grids, steps):
    gs = list(grids)
    with np.errstate(all="ignore"):
        for _ in range(steps):
            k.pure_python(*gs)
            gs[-1], gs[-2] = gs[-2], gs[-1]


class Heat1D(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] + 0.25 * (u[x] * -2.0)
            for y in u.neighbors(x, 1):
                out[x] = out[x] + 0.25 * u[y]


class VariableCoefficient(StencilKernel):
    """A constant coefficient field (first input) and the state (second input)."""

    def kernel(self, kappa, u, out):
        for x in out.interior_points():
            s = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = u[x] + kappa[x] * 0.2 * s
        for x in out.border_points():
            out[x] = u[x] * 0.5


ITER_CASES = [
    ("heat-1d", Heat1D, (37,), 1),
    ("heat-2d", Heat, (19, 23), 1),
    ("laplacian-3d", Laplacian, (9, 10, 13), 1),
    ("varcoef-2d", VariableCoefficient, (21, 18), 2),
]


@requires_compiler
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name,cls,shape,n_inputs", ITER_CASES, ids=[c[0] for c in ITER_CASES])
def test_device_iterate_emulated(name, cls, shape, n_inputs):
    k = cls()
    if cls is Laplacian:
        k.inv_h2 = 0.1
    if cls is Heat:
        k.centre = -4.0
    grids = make_grids(shape, n_inputs, seed=11)
    prog = k.kernel.analyse(*grids)[1]
    module, vs = _module(prog)
    lib = emulated_library(module)
    for steps in (1, 2, 3, 7, 64):
        ref = clone_grids(grids)
        _reference_iterate(k, ref, steps)
        for v in (vs[0], vs[-1]):
            test = clone_grids(grids)
            assert iterate_emulated(lib, prog, v, test, steps) == 0
            for r, t in zip(ref, test):
                assert_bitwise(r.data, t.data, what=f"{name} T={steps} [{v.label}]")


# -- random kernels of the DSL (the OpenMP backend's hypothesis strategy) ----------------------

def _random_case(case, compile_with_nvcc: bool) -> None:
    source, dim, n_inputs, ghost, custom = case
    cls = load_kernel(source)
    shape = [3 + 2 * ghost + (i % 2) for i in range(dim)]
    nd = default_neighbor_definition(dim) + [custom]
    grids = make_grids(shape, n_inputs, ghost_depth=ghost, neighbor_definition=nd,
                       seed=len(source))
    k = cls()
    ref = clone_grids(grids)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("error", _COMPLEX_WARNING)
            k.pure_python(*ref)
    except (ArithmeticError, ValueError, TypeError, _COMPLEX_WARNING):
        reject()  # Python raised, or went complex (x ** 0.5 of a negative float), where C gives NaN
    try:
        prog = k.kernel.analyse(*grids)[1]
    except Unspecializable:  # e.g. a constant sub-expression with a complex value
        reject()
    if unsupported_reason(prog):
        assert any(loop.sequential for loop in prog.body if hasattr(loop, "sequential")), \
            unsupported_reason(prog)
        return
    module, vs = _module(prog)
    if compile_with_nvcc:
        find_toolchain("cuda").check(C.print_cuda(module))
    lib = emulated_library(module)
    for v in vs:
        test = clone_grids(grids)
        assert run_emulated(lib, prog, v, test) == 0
        assert_bitwise(ref[-1].data, test[-1].data, what=f"[{v.label}] kernel\n{source}")


@requires_compiler
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(kernel_sources(max_depth=2))
def test_random_kernels_emulated(case):
    _random_case(case, compile_with_nvcc=False)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@requires_nvcc
@requires_compiler
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(kernel_sources())
def test_random_kernels_nvcc_and_emulated_200(case):
    _random_case(case, compile_with_nvcc=True)


class Square(StencilKernel):
    def kernel(self, u, out):
        for x in out.border_points():
            out[x] = -(u[x] ** 2)
        for x in out.interior_points():
            out[x] = u[x] ** 2 * 0.5


@requires_compiler
def test_emulated_pow_is_libm_pow_like_python():
    """``x ** 2`` in Python is libm's ``pow`` (not always ``x * x``): the emulation keeps it."""
    x = 2.7054028525535854
    assert x ** 2 != x * x
    k = Square()
    grids = make_grids((5, 6), 1, seed=0)
    grids[0].data[...] = x
    prog = k.kernel.analyse(*grids)[1]
    module, vs = _module(prog)
    lib = emulated_library(module)
    ref = clone_grids(grids)
    k.pure_python(*ref)
    for v in vs:
        test = clone_grids(grids)
        assert run_emulated(lib, prog, v, test) == 0
        assert_bitwise(ref[-1].data, test[-1].data, what=v.label)

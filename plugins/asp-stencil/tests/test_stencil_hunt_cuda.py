"""Bugs found hunting in the CUDA platform (regression tests; no GPU needed).

Each test names the symptom it guards against. The generated CUDA is run on the CPU through
:mod:`asp_stencil.cuda.emulate` where a run is needed, and compiled with ``nvcc`` where the
test is about what nvcc accepts (skipped without nvcc).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from asp_core import cast as C
from asp_core.context import SpecializationContext
from asp_core.hardware import GPU
from asp_core.toolchain import find_toolchain
from pytest_asp import requires_compiler, requires_nvcc
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.cuda.emulate import HostMemory, emulated_library, run_emulated
from asp_stencil.cuda.lowering import (default_variants, kernel_symbol, lower_cuda,
                                       unsupported_reason)
from asp_stencil import dast as D
from asp_stencil.testing import assert_bitwise, clone_grids, make_grids, run_both


def _program(k, grids):
    return k.kernel.analyse(*grids)[1]


class _Ctx:
    """What CudaPlatform.lower/check and CudaBackend.build read of a SpecializationContext;
    ``compile`` returns the CPU emulation of the CUDA module instead of running nvcc."""

    shared = SpecializationContext.shared

    def __init__(self, options=None, gpus=()):
        self.specializer = "stencil"
        self.options = options or {}
        self.hardware = SimpleNamespace(has_gpu=bool(gpus), gpus=list(gpus))
        self.module = None
        self.built_state = {}

    def compile(self, source, **kw):
        return SimpleNamespace(cdll=emulated_library(self.module, name="hunt_cuda_pool"))


class Lap2D(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            s = u[x] * -4.0
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = s


# -- 1. a kernel class with a non-ASCII name -----------------------------------------------------

class Wärme(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            s = u[x] * 0.5
            for y in u.neighbors(x, 1):
                s = s + u[y] * 0.125
            out[x] = s


def test_kernel_symbol_is_ascii_for_a_non_ascii_class_name():
    """``re.sub(r"\\W", ...)`` kept the ``ä`` of ``Wärme``; nvcc refuses a universal character
    in a ``__global__`` function's name, so the whole translation unit failed to compile (and
    the kernel ran in Python with "a bug; please report it")."""
    prog = _program(Wärme(), make_grids((10, 40), 1))
    sym = kernel_symbol(prog)
    assert sym.isascii() and sym.replace("_", "").isalnum(), sym
    assert sym != kernel_symbol(_program(Lap2D(), make_grids((10, 40), 1)))


@requires_nvcc
def test_non_ascii_kernel_name_compiles_with_nvcc():
    prog = _program(Wärme(), make_grids((10, 40), 1))
    result = find_toolchain("cuda").check(C.print_cuda(lower_cuda(prog)))
    assert "error" not in result.log.lower()


# -- 2. a GPU older than every architecture nvcc builds for ------------------------------------

def _nvcc_codes() -> list[int]:
    """The real architectures ``nvcc --list-gpu-code`` names, asked here (not through the code
    under test)."""
    out = subprocess.run([find_toolchain("cuda").executable, "--list-gpu-code"],
                         capture_output=True, text=True)
    return sorted({int(m) for m in re.findall(r"\bsm_(\d+)\b", out.stdout)})


def _with_gpu(monkeypatch, cc: str) -> list[GPU]:
    import asp_core.hardware as hw
    import asp_stencil.cuda.devmem as dm

    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    monkeypatch.setattr(dm, "_chosen", dm.DeviceMemory())  # a binding that works
    gpus = [GPU("Test GPU", 32 << 30, cc)]
    with_gpu = dataclasses.replace(hw.query(), gpus=gpus)
    monkeypatch.setattr(hw, "query", lambda: with_gpu)
    return gpus


@requires_nvcc
def test_gpu_too_old_for_nvcc_is_declined_with_reason(monkeypatch):
    """CUDA 13's nvcc builds for sm_75 and newer: ``-arch=sm_70`` (a V100) is a fatal error.
    The check accepted the GPU, the compile failed, and the kernel ran in pure Python with
    "generated code failed to compile (a bug ...)" instead of on OpenMP."""
    from asp_stencil.cuda.platform import CudaPlatform

    codes = _nvcc_codes()
    if not codes or codes[0] <= 30:
        pytest.skip(f"nvcc lists no architecture below which to test: {codes}")
    old = codes[0] - 5
    gpus = _with_gpu(monkeypatch, f"{old // 10}.{old % 10}")
    prog = _program(Lap2D(), make_grids((600, 600), 1))
    reason = CudaPlatform().check(prog, _Ctx(gpus=gpus))
    assert reason is not None and f"sm_{old}" in reason and "older" in reason
    forced = CudaPlatform().check(prog, _Ctx(options={"platform_selection": "cuda"}, gpus=gpus))
    assert forced == reason


@requires_nvcc
@requires_compiler
def test_gpu_too_old_for_nvcc_runs_the_kernel_on_openmp(monkeypatch):
    _with_gpu(monkeypatch, "3.0")   # Kepler: no nvcc of this decade builds for it
    k = Lap2D()
    grids = make_grids((520, 520), 1, seed=5)   # above MIN_GPU_POINTS
    ref = clone_grids(grids)
    k.pure_python(*ref)
    k.kernel(*grids)
    assert_bitwise(ref[-1].data, grids[-1].data)
    chosen = k.kernel.last_context.decision("platform_selection")
    assert chosen is not None and chosen.choice == "openmp"
    assert any(n == "cuda" and "sm_30" in r for n, r in chosen.params["rejected"])


@requires_nvcc
def test_arch_flags_compile_for_gpus_nvcc_lists_or_not():
    """A GPU newer than nvcc knows gets PTX of the newest architecture below it (``-arch=sm_130``
    was fatal); one nvcc lists gets its own ``-arch=sm_XY``."""
    from asp_stencil.cuda.backend import gpu_arch_flags

    codes = _nvcc_codes()
    if not codes:
        pytest.skip("nvcc --list-gpu-code answers nothing")
    newest = codes[-1]
    beyond = newest + 10
    flags = gpu_arch_flags(SimpleNamespace(gpus=[GPU("Future", 1, f"{beyond // 10}.{beyond % 10}")]))
    assert flags == (f"-arch=compute_{newest}",)
    listed = gpu_arch_flags(SimpleNamespace(gpus=[GPU("Known", 1, f"{newest // 10}.{newest % 10}")]))
    assert listed == (f"-arch=sm_{newest}",)
    src = C.print_cuda(lower_cuda(_program(Lap2D(), make_grids((10, 40), 1))))
    find_toolchain("cuda").check(src, flags=flags)  # raises CompileError with nvcc's log


# -- 3. every variant of a specialisation allocated its own device copy of the grids -----------

@requires_compiler
def test_variants_of_one_kernel_share_device_buffers(monkeypatch):
    """Each bound variant kept its own device buffers: timing the five variants of a 3-D
    kernel held five copies of the grids on the GPU (a grid that fits twice ran out of memory
    during tuning). The variants of one specialisation now share one pool, and each still
    computes what Python computes."""
    import asp_stencil.cuda.devmem as dm
    from asp_stencil.cuda.backend import CudaBackend
    from asp_stencil.cuda.platform import CudaPlatform, CudaVariants

    mem = HostMemory()
    monkeypatch.setattr(dm, "_chosen", mem)
    k = Lap2D()
    grids = make_grids((13, 70), 1, seed=9)
    prog = _program(k, grids)
    ctx = _Ctx()
    program = CudaPlatform().lower(prog, ctx)
    ctx.module = program.ir
    variants = CudaVariants().variants(program, ctx)
    assert len(variants) >= 3
    ref = clone_grids(grids)
    k.pure_python(*ref)
    built = [CudaBackend().build(v, ctx) for v in variants]
    for v, fn in zip(variants, built):
        test = clone_grids(grids)
        fn(*test)
        assert_bitwise(ref[-1].data, test[-1].data, what=v.name)
    assert mem.live_bytes == sum(g.data.nbytes for g in grids)


@requires_nvcc
@requires_compiler
def test_objects_of_one_class_keep_device_buffers_of_their_own(monkeypatch):
    """The pool was made in phase 3, which the objects of a class share: every object bound
    to one pool (calls from their threads took turns with it), and the grids stayed on the
    device after the objects were gone, as long as the class. Each object's variants share a
    pool of the object's, freed with it."""
    import gc

    import asp_stencil.cuda.backend as cb
    import asp_stencil.cuda.devmem as dm

    mem = HostMemory()
    monkeypatch.setattr(dm, "_chosen", mem)
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "stencil:cuda")
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    printed = []

    def source(program):
        printed.append(program.ir)
        return "/* emulated */"

    real = SpecializationContext.compile

    def compile(self, text, **kw):
        if kw.get("lang") != "cuda":
            return real(self, text, **kw)
        return SimpleNamespace(cdll=emulated_library(printed[-1], name="hunt_cuda_objects"))

    monkeypatch.setattr(cb, "cuda_source", source)
    monkeypatch.setattr(SpecializationContext, "compile", compile)

    class Lap(Lap2D):
        pass

    grids = make_grids((12, 16), 1, seed=4)
    ref = clone_grids(grids)
    Lap().pure_python(*ref)
    a, b = Lap(), Lap()
    for k in (a, b):
        test = clone_grids(grids)
        k.kernel(*test)
        assert k.kernel.last_context.decision("platform_selection").choice == "cuda"
        assert_bitwise(ref[-1].data, test[-1].data)
    assert mem.live_bytes == 2 * sum(g.data.nbytes for g in grids)
    del a, b, k
    gc.collect()
    assert mem.live_bytes == 0


# -- 4. periodic ghosts filled after the arrays were checked -----------------------------------

class RebindingGrid(StencilGrid):
    """A periodic grid whose ``fill_ghosts`` hands out a new array (a Python hook may)."""

    def fill_ghosts(self) -> None:
        self.data = self.data.copy()
        super().fill_ghosts()


@requires_compiler
def test_periodic_ghosts_are_filled_before_the_arrays_are_read(monkeypatch):
    """The CUDA sweep read each ``.data`` and only then ran ``fill_ghosts``: a grid whose hook
    rebinds ``.data`` had its stale ghosts uploaded (the OpenMP binding runs the hooks first;
    docs/guarantees: "each grid's .data is read once, after the last Python hook")."""
    import asp_stencil.cuda.devmem as dm
    from asp_stencil.cuda.backend import bind_cuda

    monkeypatch.setattr(dm, "_chosen", HostMemory())
    base = make_grids((12, 40), 1, seed=4, periodic=True)
    u = RebindingGrid((12, 40), periodic=True)
    u.data[...] = base[0].data   # ghosts hold random values, not the wrap-around ones
    grids = [u, base[1]]
    k = Lap2D()
    prog = _program(k, clone_grids(grids))
    module = lower_cuda(prog)
    lib = emulated_library(module, name="hunt_cuda_periodic")
    ref = clone_grids(grids)
    k.pure_python(*ref)
    for v in default_variants(prog):
        test = [RebindingGrid((12, 40), periodic=True), clone_grids([base[1]])[0]]
        test[0].data[...] = base[0].data
        bind_cuda(lib, prog, v)(*test)
        assert_bitwise(ref[-1].data, test[-1].data, what=v.label)


# -- 5. a border loop reading its own border through nearest_interior --------------------------

class OwnBorder(StencilKernel):
    def kernel(self, u, out):
        for x in u.border_points():
            out[x] = out[out.nearest_interior(x)] * 0.5 + u[x]


def _own_border_grids():
    u = StencilGrid((12, 40), ghost_depth=2)
    u.data[...] = np.random.default_rng(0).standard_normal(u.shape)
    out = StencilGrid((12, 40), ghost_depth=1)
    out.data[...] = np.random.default_rng(1).standard_normal(out.shape)
    return [u, out]


def test_border_loop_reading_its_own_border_is_declined():
    """Looping over ``u``'s border (ghost depth 2), ``out[out.nearest_interior(x)]`` (depth 1)
    is a point of the same border loop: Python reads it before or after writing it depending
    on the point order, while GPU threads race (the emulation differed from Python)."""
    from asp_stencil.cuda.platform import CudaPlatform

    prog = _program(OwnBorder(), _own_border_grids())
    reason = unsupported_reason(prog)
    assert reason and "border" in reason and "order" in reason
    assert CudaPlatform().check(prog, _Ctx(options={"platform_selection": "cuda"})) == reason
    with pytest.raises(ValueError, match="order"):
        lower_cuda(prog)


@requires_compiler
def test_border_loop_reading_its_own_border_runs_in_order_on_openmp():
    """The same loop is sequential for every platform (``D.PointLoop.sequential``): OpenMP
    matched Python only because its static row chunks kept the rows that depend on each other
    on one thread."""
    prog = _program(OwnBorder(), _own_border_grids())
    (loop,) = [s for s in prog.body if isinstance(s, D.PointLoop)]
    assert loop.region == "border" and loop.sequential
    k = OwnBorder()
    ref, out = run_both(k, _own_border_grids())
    assert_bitwise(ref, out)


@requires_compiler
def test_border_loop_reading_deeper_interior_still_runs_on_cuda():
    """The decline is narrow: a clamped read at or beyond the loop grid's depth is interior,
    never written by the border loop, and stays a CUDA kernel equal to Python."""

    class DeeperInterior(StencilKernel):
        def kernel(self, u, out):
            for x in out.border_points():
                out[x] = out[u.nearest_interior(x)] * 0.5 + u[x]

    k = DeeperInterior()
    grids = _own_border_grids()
    prog = _program(k, grids)
    assert unsupported_reason(prog) is None
    module = lower_cuda(prog)
    lib = emulated_library(module, name="hunt_cuda_border")
    ref = clone_grids(grids)
    k.pure_python(*ref)
    for v in default_variants(prog):
        test = clone_grids(grids)
        assert run_emulated(lib, prog, v, test) == 0
        assert_bitwise(ref[-1].data, test[-1].data, what=v.label)


# -- 6. a misspelt ASP_CUDA_MEMORY on a GPU machine ----------------------------------------------

@requires_nvcc
def test_unknown_cuda_memory_binding_is_a_decline_reason(monkeypatch):
    """``ASP_CUDA_MEMORY=nonsense`` made ``check`` raise ValueError: the core then reported the
    whole stencil-cuda plugin broken (``asp list``, ``asp doctor``, a PluginWarning) for a
    setting. It is now the reason the platform declines, and OpenMP runs the kernel."""
    import asp_stencil.cuda.devmem as dm
    from asp_stencil.cuda.platform import CudaPlatform

    gpus = _with_gpu(monkeypatch, "9.0")
    monkeypatch.setattr(dm, "_chosen", None)
    monkeypatch.setenv("ASP_CUDA_MEMORY", "nonsense")
    reason = CudaPlatform().check(_program(Lap2D(), make_grids((600, 600), 1)), _Ctx(gpus=gpus))
    assert reason is not None and "ASP_CUDA_MEMORY='nonsense'" in reason


# -- 7. two threads calling one CUDA kernel at once --------------------------------------------

class _MeetingMemory(HostMemory):
    """Host memory whose first upload in each of two threads waits for the other thread's:
    without a lock around a call's uploads, launch and downloads, both first grids then
    land in the one shared buffer before either launch."""

    def __init__(self) -> None:
        super().__init__()
        self.meet = threading.Barrier(2, timeout=0.5)
        self.met = threading.local()

    def htod(self, ptr: int, host: np.ndarray) -> None:
        super().htod(ptr, host)
        if not getattr(self.met, "done", False):
            self.met.done = True
            try:
                self.meet.wait()
            except threading.BrokenBarrierError:   # the other thread waits for the lock
                pass


@requires_compiler
@pytest.mark.parametrize("call", ["sweep", "iterate"])
def test_concurrent_calls_do_not_share_device_grids_mid_call(monkeypatch, call):
    """The variants' shared device buffers were shared by concurrent calls too: two threads
    calling one kernel uploaded into the same buffers, and a thread's launch read the other
    thread's grid (its download returned the other's result). A call now holds the pool from
    its first upload to its last download."""
    import asp_stencil.cuda.devmem as dm
    from asp_stencil.cuda.backend import bind_cuda

    monkeypatch.setattr(dm, "_chosen", _MeetingMemory())
    k = Lap2D()
    inputs = [make_grids((12, 40), 1, seed=s) for s in (1, 2)]
    prog = _program(k, clone_grids(inputs[0]))
    lib = emulated_library(lower_cuda(prog), name="hunt_cuda_threads")
    fn = bind_cuda(lib, prog, default_variants(prog)[0])
    refs = [clone_grids(g) for g in inputs]
    tests = [clone_grids(g) for g in inputs]
    for ref in refs:
        if call == "sweep":
            k.pure_python(*ref)
        else:
            for _ in range(3):
                k.pure_python(*ref)
                ref[0].data, ref[1].data = ref[1].data, ref[0].data
            ref[0].data, ref[1].data = ref[1].data, ref[0].data

    def run(grids):
        fn(*grids) if call == "sweep" else fn.iterate(tuple(grids), 3)

    threads = [threading.Thread(target=run, args=(g,)) for g in tests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ref, test in zip(refs, tests):
        assert_bitwise(ref[-1].data, test[-1].data, what=call)


# -- 8. a machine with GPUs of different architectures -----------------------------------------

def _gpus(*ccs: str) -> SimpleNamespace:
    return SimpleNamespace(gpus=[GPU(f"GPU {i}", 1, cc) for i, cc in enumerate(ccs)])


@requires_nvcc
def test_every_gpu_architecture_is_built_for(monkeypatch):
    """The library was built for the first GPU ``nvidia-smi`` lists only: the CUDA runtime's
    device 0 is the fastest (or the one ``CUDA_VISIBLE_DEVICES`` names), and on a machine
    with two kinds of GPU a kernel run there failed with cudaErrorNoKernelImageForDevice.
    Every GPU's architecture is now in the library, and a GPU too old for nvcc next to a
    newer one no longer keeps the kernel off the newer one."""
    from asp_stencil.cuda.backend import gpu_arch_flags, gpu_arch_unsupported_reason

    codes = _nvcc_codes()
    if len(codes) < 2:
        pytest.skip(f"nvcc lists fewer than two architectures: {codes}")
    a, b = codes[-2], codes[-1]
    hw = _gpus(f"{b // 10}.{b % 10}", f"{a // 10}.{a % 10}", f"{b // 10}.{b % 10}")
    flags = gpu_arch_flags(hw)
    assert flags == (f"-gencode=arch=compute_{a},code=sm_{a}",
                     f"-gencode=arch=compute_{b},code=sm_{b}")
    src = C.print_cuda(lower_cuda(_program(Lap2D(), make_grids((10, 40), 1))))
    find_toolchain("cuda").check(src, flags=flags)   # raises CompileError with nvcc's log
    old = codes[0] - 5
    mixed = _gpus(f"{old // 10}.{old % 10}", f"{a // 10}.{a % 10}")
    assert gpu_arch_unsupported_reason(mixed) is None
    assert gpu_arch_flags(mixed) == (f"-arch=sm_{a}",)
    both_old = _gpus(f"{old // 10}.{old % 10}", "3.0")
    reason = gpu_arch_unsupported_reason(both_old)
    assert reason is not None and f"sm_{old}" in reason and "sm_30" in reason


def test_a_machine_without_a_gpu_does_not_ask_nvcc(monkeypatch):
    """The platform check asked ``nvcc --list-gpu-code`` (a subprocess, 12 ms) in every
    process's first call on a machine with nvcc and no GPU, where no architecture is needed."""
    import asp_stencil.cuda.backend as cb

    def asked(nvcc):
        raise AssertionError("nvcc was asked for its architectures")

    monkeypatch.setattr(cb, "_nvcc_gpu_codes", asked)
    assert cb.gpu_arch_unsupported_reason(_gpus()) is None
    assert cb.gpu_arch_flags(_gpus()) == ()

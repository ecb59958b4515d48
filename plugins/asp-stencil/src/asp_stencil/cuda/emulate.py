"""Run generated CUDA on the CPU: a test harness for machines without a GPU.

The CUDA source is compiled as C++ with OpenMP after two mechanical substitutions: the runtime
header becomes a small shim (``dim3``, thread-local ``threadIdx``/``blockIdx``, ``__ldg``,
``__shared__`` as a function-static array shared by the team, ``__syncthreads`` as an OpenMP
barrier), and each ``kernel<<<grid, block>>>(args)`` becomes a call that runs the grid block by
block, each block as an OpenMP team of exactly ``block.x·block.y·block.z`` threads. So the
emulation executes the *same* index arithmetic, predicates, shared-memory staging, barriers and
launch geometry as the GPU, and uses the host libm: results must equal the pure-Python kernel
bit for bit. It is slow (hundreds of OS threads per block) and meant for small grids in tests;
device pointers are plain host pointers.
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

import numpy as np

from asp_core.build import compile_library

from .. import dast as D
from .lowering import CudaVariant, iterate_name, launcher_name

__all__ = ["emulation_source", "emulated_library", "run_emulated", "iterate_emulated"]

SHIM = r"""
/* --- CUDA-on-CPU shim (asp_stencil.cuda.emulate) --- */
#include <omp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
static thread_local dim3 threadIdx(0, 0, 0), blockIdx(0, 0, 0);
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
static inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
template <typename T> static inline T __ldg(const T *p) { return *p; }
#define __global__
#define __device__
#define __shared__ static
#define __syncthreads() _Pragma("omp barrier")
template <typename K, typename... A>
static void asp_emu_launch(K kernel, dim3 g, dim3 b, A... args) {
    const int nt = (int)(b.x * b.y * b.z);
    omp_set_dynamic(0);
    for (unsigned bz = 0; bz < g.z; ++bz)
        for (unsigned by = 0; by < g.y; ++by)
            for (unsigned bx = 0; bx < g.x; ++bx) {
#pragma omp parallel num_threads(nt)
                {
                    if (omp_get_num_threads() != nt) {
                        fprintf(stderr, "asp emulate: got %d threads for a block of %d\n",
                                omp_get_num_threads(), nt);
                        abort();
                    }
                    const unsigned t = (unsigned)omp_get_thread_num();
                    threadIdx = dim3(t % b.x, (t / b.x) % b.y, t / (b.x * b.y));
                    blockIdx = dim3(bx, by, bz);
                    kernel(args...);
                }
            }
}
/* --- end of shim --- */
"""

_LAUNCH = re.compile(r"(\w+)<<<(dim3\([^)]*\)), (dim3\([^)]*\))>>>\(([^;]*)\);")


def emulation_source(cuda_source: str) -> str:
    """The C++/OpenMP translation of a generated CUDA translation unit."""
    if "#include <cuda_runtime.h>" not in cuda_source:
        raise ValueError("not a generated CUDA translation unit (no cuda_runtime.h include)")
    src = cuda_source.replace("#include <cuda_runtime.h>", SHIM)
    src, n = _LAUNCH.subn(r"asp_emu_launch(\1, \2, \3, \4);", src)
    if "<<<" in src:
        raise ValueError("a kernel launch the emulator does not understand")
    return src


def emulated_library(cuda_source: str, name: str = "cuda_emulated") -> ctypes.CDLL:
    """Compile the emulation of ``cuda_source`` (through the core's cache) and load it."""
    # -fno-builtin-pow: keep pow(x, 2.0) a libm call, as Python's x ** 2 is (g++ would
    # otherwise fold it into x*x, which can differ from libm's pow in the last bit)
    return compile_library(emulation_source(cuda_source), lang="c++", openmp=True, name=name,
                           flags=("-fno-builtin-pow",),
                           specialised_on={"emulated": "cuda"}).cdll


def _check(prog: D.StencilProgram, grids: Any) -> list[np.ndarray]:
    data = [np.ascontiguousarray(g.data) if hasattr(g, "data") else g for g in grids]
    for d, g in zip(data, prog.grids):
        if d.shape != prog.output.shape or d.dtype.str != g.dtype or not d.flags.c_contiguous:
            raise ValueError("emulation needs C-contiguous arrays of the compiled shape and "
                             "dtypes")
    return data


def run_emulated(lib: ctypes.CDLL, prog: D.StencilProgram, v: CudaVariant, grids: Any) -> int:
    """One call of variant ``v`` on the grids' host data; returns the launcher's status."""
    data = _check(prog, grids)
    fn = getattr(lib, launcher_name(prog, v))
    fn.argtypes = [ctypes.c_void_p] * len(data) + [ctypes.c_long] * prog.dim
    fn.restype = ctypes.c_int
    return int(fn(*[d.ctypes.data for d in data], *prog.output.shape))


def iterate_emulated(lib: ctypes.CDLL, prog: D.StencilProgram, v: CudaVariant, grids: Any,
                     steps: int) -> int:
    """``steps`` sweeps through the device-side iterate launcher of variant ``v``."""
    data = _check(prog, grids)
    fn = getattr(lib, iterate_name(prog, v))
    fn.argtypes = [ctypes.c_void_p] * len(data) + [ctypes.c_long] * (1 + prog.dim)
    fn.restype = ctypes.c_int
    return int(fn(*[d.ctypes.data for d in data], int(steps), *prog.output.shape))

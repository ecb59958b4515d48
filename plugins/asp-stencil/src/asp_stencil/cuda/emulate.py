"""Run generated CUDA on the CPU: a test harness for machines without a GPU.

The CUDA module (platform AST) is printed for C++ with OpenMP by :class:`EmulationPrinter`: the
same code as :func:`~asp_core.cast.print_cuda` prints, except that the CUDA runtime header is
left out and each kernel launch becomes ``asp_emu_launch(kernel, grid, block, args...)``. The
template ``templates/emulate.cpp.mako`` puts the runtime's names in front of it (``dim3``,
thread-local ``threadIdx``/``blockIdx``, ``__ldg``, ``__shared__`` as a function-static array
shared by the team, ``__syncthreads`` as an OpenMP barrier) and ``asp_emu_launch``, which runs
the grid block by block, each block as an OpenMP team of exactly ``block.x·block.y·block.z``
threads. So the emulation executes the *same* index arithmetic, predicates, shared-memory
staging, barriers and launch geometry as the GPU, and uses the host libm: results must equal
the pure-Python kernel bit for bit. It is slow (hundreds of OS threads per block) and meant for
small grids in tests; device pointers are plain host pointers.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from asp_core import cast as C
from asp_core.build import compile_library
from asp_core.templates import render

from .. import dast as D
from ..backend import RUN_TIME_ROUNDING
from .lowering import CudaVariant, iterate_name, launcher_name

__all__ = ["EmulationPrinter", "HostMemory", "emulation_source", "emulated_library",
           "run_emulated",
           "iterate_emulated"]

_RUNTIME = "cuda_runtime.h"


class HostMemory:
    """Device memory that is host memory (the interface of :mod:`asp_stencil.cuda.devmem`'s
    bindings): emulated kernels take host pointers, so the real binding's uploads, launches and
    downloads run on the CPU. ``live_bytes``: what is allocated now."""

    name = "host"

    def __init__(self) -> None:
        self.blocks: dict[int, np.ndarray] = {}

    @property
    def live_bytes(self) -> int:
        return sum(b.nbytes for b in self.blocks.values())

    def alloc(self, nbytes: int) -> int:
        block = np.zeros(max(1, nbytes), np.uint8)
        self.blocks[block.ctypes.data] = block
        return block.ctypes.data

    def free(self, ptr: int) -> None:
        self.blocks.pop(ptr, None)

    def htod(self, ptr: int, host: np.ndarray) -> None:
        ctypes.memmove(ptr, np.ascontiguousarray(host).ctypes.data, host.nbytes)

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        ctypes.memmove(host.ctypes.data, ptr, host.nbytes)

    def synchronize(self) -> None:
        pass


class EmulationPrinter(C.CudaPrinter):
    """CUDA printed for the CPU emulation: no runtime header (the template provides its
    names), launches as calls of ``asp_emu_launch``."""

    def _s_Include(self, s: C.Include) -> list[str]:
        return [] if s.header == _RUNTIME else super()._s_Include(s)

    def _s_CudaLaunch(self, s: C.CudaLaunch) -> list[str]:
        if s.shared is not None or s.stream is not None:
            raise ValueError("the emulation runs launches without dynamic shared memory or "
                             "streams")

        def dim3(parts: list[C.Expr]) -> str:
            if not 1 <= len(parts) <= 3:
                raise ValueError("a CUDA grid or block has 1 to 3 dimensions")
            return f"dim3({', '.join(self.expr(p) for p in parts)})"

        args = [s.kernel, dim3(s.grid), dim3(s.block), *(self.expr(a) for a in s.args)]
        return [self._pad(f"asp_emu_launch({', '.join(args)});")]


def emulation_source(module: C.Module) -> str:
    """The C++/OpenMP translation unit emulating the CUDA ``module`` (from
    :func:`~asp_stencil.cuda.lowering.lower_cuda`)."""
    if not isinstance(module, C.Module) or not any(
            isinstance(n, C.Include) and n.header == _RUNTIME for n in module.body):
        raise ValueError("not a generated CUDA module (a cast Module including cuda_runtime.h)")
    return render("asp_stencil.cuda", "emulate.cpp.mako", body=EmulationPrinter().print(module))


def emulated_library(module: C.Module, name: str = "cuda_emulated") -> ctypes.CDLL:
    """Compile the emulation of the CUDA ``module`` (through the core's cache) and load it."""
    from asp_core.toolchain import find_toolchain

    # -fno-builtin-pow: keep pow(x, 2.0) a libm call, as Python's x ** 2 is (g++ would
    # otherwise fold it into x*x, which can differ from libm's pow in the last bit);
    # and the flags that keep GCC's vectorized code exact (see
    # asp_stencil.backend.exactness_flags): a test harness, so always
    slp = ("-fno-tree-slp-vectorize", "--param", "max-completely-peel-times=1") \
        if find_toolchain("c++").family == "gcc" else ()
    return compile_library(emulation_source(module), lang="c++", openmp=True, name=name,
                           flags=("-fno-builtin-pow", *RUN_TIME_ROUNDING, *slp),
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

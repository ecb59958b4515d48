"""Phase 5 component ``cuda``: print with ``print_cuda``, compile with nvcc, bind with ctypes.

The shared object exports plain C launchers taking device pointers and sizes (see
:mod:`.lowering`). The bound callable takes the kernel's own arguments (host ``StencilGrid``s):
it validates them, copies every grid to the device (the output too: points the kernel does not
write, and reads of the output, must see its current values), launches, waits, and copies the
output back. It is a :class:`DeviceSweep`, whose :meth:`~DeviceSweep.iterate` keeps the grids on
the device for all ``steps`` Jacobi sweeps and copies both ping-pong grids back once (what
``StencilKernel.iterate`` uses on this platform). Device buffers are kept between calls.
"""

from __future__ import annotations

import ctypes
import functools
import re
import subprocess
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from asp_core import cast as C
from asp_core.components import Backend, Variant

from .. import dast as D
from ..backend import compiled_for
from ..grid import fill_periodic_ghosts
from .devmem import CudaUnavailable, DeviceBuffer, DeviceGrids, get_device_memory
from .lowering import CudaVariant, iterate_name, kernel_symbol, launcher_name

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["CudaBackend", "DeviceSweep", "bind_cuda", "gpu_arch_flags",
           "gpu_arch_unsupported_reason", "cuda_source"]

_CUDA_ERRORS = {1: "cudaErrorInvalidValue (grid sizes differ from the compiled ones)",
                2: "cudaErrorMemoryAllocation", 3: "cudaErrorInitializationError",
                35: "cudaErrorInsufficientDriver", 100: "cudaErrorNoDevice",
                209: "cudaErrorNoKernelImageForDevice"}


@functools.lru_cache(maxsize=4)
def _nvcc_gpu_codes(nvcc: str) -> tuple[int, ...] | None:
    """The real architectures ``nvcc --list-gpu-code`` names (``sm_75`` → 75), or None where
    that cannot be asked (an nvcc older than CUDA 11)."""
    from asp_core.spawn import run_tool

    try:
        out = run_tool([nvcc, "--list-gpu-code"], timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    codes = sorted({int(m) for m in re.findall(r"\bsm_(\d+)\b", out.stdout)})
    return tuple(codes) if out.returncode == 0 and codes else None


def _gpu_codes() -> tuple[int, ...] | None:
    from asp_core.errors import ToolchainError
    from asp_core.toolchain import find_toolchain

    try:
        return _nvcc_gpu_codes(find_toolchain("cuda").executable)
    except ToolchainError:
        return None


def _gpu_archs(hardware: Any) -> list[int]:
    """The distinct compute capabilities of the machine's GPUs as nvcc numbers them (``"9.0"``
    → 90), in ascending order; GPUs whose capability is unknown are left out. Every GPU
    counts: the one a kernel runs on is the CUDA runtime's device 0, which need not be the
    first GPU ``nvidia-smi`` lists (CUDA orders them fastest first, and
    ``CUDA_VISIBLE_DEVICES`` picks among them)."""
    archs = set()
    for gpu in getattr(hardware, "gpus", []) or []:
        digits = (gpu.compute_capability or "").replace(".", "")
        if digits.isdigit():
            archs.add(int(digits))
    return sorted(archs)


def gpu_arch_unsupported_reason(hardware: Any) -> str | None:
    """Why this nvcc cannot build code for any of the GPUs (each is older than every
    architecture nvcc knows: CUDA 13 dropped Maxwell, Pascal and Volta, so ``-arch=sm_70``
    is a fatal error), or None."""
    archs = _gpu_archs(hardware)
    if not archs:   # asked nvcc (a subprocess, 12 ms) in every process without a GPU
        return None
    codes = _gpu_codes()
    if codes is None or archs[-1] >= codes[0]:
        return None
    named = ", ".join(f"{a // 10}.{a % 10} (sm_{a})" for a in archs)
    return (f"the GPU's compute capability {named} is older than every architecture this "
            f"nvcc builds for (sm_{codes[0]} to sm_{codes[-1]}); install a CUDA toolkit that "
            "supports it")


def _arch_targets(arch: int, codes: tuple[int, ...] | None) -> tuple[int, str] | None:
    """What to build for a GPU of architecture ``arch``: its own code (``"sm"``) where nvcc
    lists it or cannot be asked; for one newer than nvcc knows, PTX of the newest architecture
    below it (``"compute"``), which the driver compiles for the GPU; None for one older than
    every architecture nvcc builds for."""
    if codes is None or arch in codes:
        return arch, "sm"
    below = [c for c in codes if c < arch]
    return (below[-1], "compute") if below else None


def gpu_arch_flags(hardware: Any) -> tuple[str, ...]:
    """nvcc's architecture flags for the machine's GPUs: with one architecture,
    ``-arch=sm_XY`` (or ``-arch=compute_XY`` for a GPU newer than nvcc knows, see
    :func:`_arch_targets`); with several, one ``-gencode`` per architecture, so the one
    library runs on whichever GPU the runtime uses; with none known, nothing (nvcc's default
    embeds PTX that the driver compiles for any newer GPU). ``-arch=sm_XY`` that nvcc does not
    know is a fatal error, which failed the whole translation unit."""
    archs = _gpu_archs(hardware)
    codes = _gpu_codes() if archs else None
    targets = sorted({t for a in archs if (t := _arch_targets(a, codes))})
    if len(targets) == 1:
        arch, kind = targets[0]
        return (f"-arch={kind}_{arch}",)
    return tuple(f"-gencode=arch=compute_{arch},code={kind}_{arch}" for arch, kind in targets)


def cuda_source(program: Any) -> str:
    return C.print_cuda(program.ir)


def _raise(rc: int, what: str) -> None:
    if rc:
        raise RuntimeError(f"CUDA launch of {what} failed: error {rc} "
                           f"{_CUDA_ERRORS.get(rc, '')}".rstrip())


class DeviceSweep:
    """The bound CUDA sweep: calling it runs one sweep on the kernel's own arguments;
    :meth:`iterate` runs ``steps`` sweeps on the device with one upload and one download."""

    def __init__(self, sweep: Callable[..., None], iterate: Callable[[tuple, int], None],
                 name: str) -> None:
        self._sweep, self._iterate, self.__name__ = sweep, iterate, name

    def __call__(self, *grids: Any) -> None:
        self._sweep(*grids)

    def iterate(self, grids: tuple, steps: int) -> None:
        """``steps`` sweeps on the device; afterwards both ping-pong grids hold what the plain
        host loop leaves in them. Raises ``TypeError`` where the device loop cannot run the
        kernel (periodic grids, state and output not interchangeable)."""
        self._iterate(grids, steps)


def bind_cuda(lib: Any, prog: D.StencilProgram, v: CudaVariant,
              grids: DeviceGrids | None = None) -> DeviceSweep:
    """The Python callable for variant ``v`` of ``prog`` in the loaded library ``lib``.

    ``grids`` is the device memory the callable allocates on its first call and keeps: the
    variants of one specialisation share one :class:`~.devmem.DeviceGrids`
    (:meth:`CudaBackend.build` asks the context for it), so
    timing five variants holds one copy of the grids on the device, not five (a grid that
    fits the GPU twice failed with an out-of-memory error while the variants were timed).
    Sharing is safe: every call uploads every grid before it launches, under the pool's lock."""
    ngrids = len(prog.grids)
    dim = prog.dim
    shape = prog.output.shape
    launch = getattr(lib, launcher_name(prog, v))
    launch.argtypes = [ctypes.c_void_p] * ngrids + [ctypes.c_long] * dim
    launch.restype = ctypes.c_int
    it = getattr(lib, iterate_name(prog, v), None) if ngrids >= 2 else None
    if it is not None:
        it.argtypes = [ctypes.c_void_p] * ngrids + [ctypes.c_long] * (1 + dim)
        it.restype = ctypes.c_int
    pool = DeviceGrids() if grids is None else grids
    swappable = False
    if ngrids >= 2:
        state, out = prog.grids[-2], prog.grids[-1]
        swappable = (state.shape, state.dtype, state.ghost_depth, state.neighbors) == \
            (out.shape, out.dtype, out.ghost_depth, out.neighbors)

    validate = compiled_for(prog)

    def upload(data: list[np.ndarray]) -> list[DeviceBuffer]:
        """Every grid copied to its device buffer (call with the pool's lock held)."""
        bufs = [pool.buffer(i, d) for i, d in enumerate(data)]
        for b, d in zip(bufs, data):
            b.upload(d)
        return bufs

    def run(*grids: Any) -> None:
        # Python hooks first, then each .data is read once (as the OpenMP binding does): a
        # grid's fill_ghosts may rebind .data, and the arrays checked are the ones uploaded
        fill_periodic_ghosts(grids)
        data = validate(grids)
        with pool.lock:
            bufs = upload(data)
            _raise(launch(*[b.ptr for b in bufs], *shape), launcher_name(prog, v))
            bufs[0].mem.synchronize()
            for g in prog.outputs:   # every grid the kernel writes, not only the last
                bufs[g.index].download(data[g.index])

    def iterate(grids: tuple, steps: int) -> None:
        """``steps`` sweeps on the device; afterwards both ping-pong grids hold what the plain
        host loop leaves in them (the swap is of roles, not of the arrays)."""
        if prog.periodic:
            raise TypeError(f"{prog.name}: periodic grids refill their ghosts before each sweep, "
                            "which the device loop does not do; iterate on the host instead")
        if it is None or not swappable:
            raise TypeError(f"{prog.name}: the last input and the output grid are not "
                            "interchangeable (or there is no input), so the device loop cannot "
                            "swap them; iterate on the host instead")
        data = validate(tuple(grids))
        if not data[-2].flags.writeable:
            raise ValueError("iterate writes the last input grid too, but its .data is read-only")
        with pool.lock:
            bufs = upload(data)
            _raise(it(*[b.ptr for b in bufs], int(steps), *shape), iterate_name(prog, v))
            bufs[0].mem.synchronize()
            bufs[-2].download(data[-2])
            bufs[-1].download(data[-1])

    return DeviceSweep(run, iterate, f"{prog.name}_cuda_{v.label}")


class CudaBackend(Backend):
    """Phase 5 component ``cuda`` for the ``cuda`` platform."""

    name = "cuda"
    platforms = ("cuda",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> DeviceSweep:
        program = variant.program
        prog: D.StencilProgram = program.meta["dast"]
        v: CudaVariant = program.meta["variant"]
        lib = ctx.compile(cuda_source(program), lang="cuda", openmp=False,
                          flags=gpu_arch_flags(ctx.hardware), name=kernel_symbol(prog),
                          specialised_on={"shape": prog.output.shape,
                                          "dtype": [g.dtype for g in prog.grids]})
        try:   # the platform was forced (its check passes then): compiled, but can it run?
            get_device_memory()
        except CudaUnavailable as exc:   # a fallback with its reason, not a RuntimeError per call
            raise ctx.unsupported(None, "a CUDA run on this machine",
                                  f"{exc}; the CUDA code was generated and compiled because "
                                  "the cuda platform was requested by name") from None
        # one pool of device buffers for the variants of this object's specialisation
        return bind_cuda(lib.cdll, prog, v, ctx.shared("device_grids", DeviceGrids))

"""Device memory behind one small interface, from whichever CUDA binding is installed.

The generated launchers take raw device pointers, so all Asp needs from Python is: allocate,
copy host→device and device→host, free, synchronise. Three bindings can do that; the first that
imports and finds a device is used (``ASP_CUDA_MEMORY=pycuda|cuda-python|cupy`` picks one):

* **pycuda** (the ``asp-stencil[cuda]`` extra) through ``pycuda.autoprimaryctx``, i.e. the
  device's *primary* context, the one the CUDA runtime inside the generated library uses, so
  pointers are valid on both sides;
* **cuda-python** (``cuda.bindings.runtime`` or the older ``cuda.cudart``): the runtime API;
* **cupy** (``cupy.cuda.runtime``): the runtime API as well.

All three are imported only when a CUDA kernel actually runs.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

__all__ = ["DeviceMemory", "get_device_memory", "DeviceBuffer", "DeviceGrids", "CudaUnavailable"]


class CudaUnavailable(RuntimeError):
    """No CUDA binding or no device: the message lists what was tried."""


class DeviceMemory:
    """Allocate/copy/free through one binding (subclasses implement the five primitives)."""

    name = ""

    def alloc(self, nbytes: int) -> int:
        raise NotImplementedError

    def free(self, ptr: int) -> None:
        raise NotImplementedError

    def htod(self, ptr: int, host: np.ndarray) -> None:
        raise NotImplementedError

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError


class _PyCuda(DeviceMemory):
    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoprimaryctx  # noqa: F401 - retains the primary context
        import pycuda.driver as drv

        self.drv = drv
        self._allocs: dict[int, Any] = {}

    def alloc(self, nbytes: int) -> int:
        a = self.drv.mem_alloc(max(1, nbytes))
        self._allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        a = self._allocs.pop(ptr, None)
        if a is not None:
            a.free()

    def htod(self, ptr: int, host: np.ndarray) -> None:
        self.drv.memcpy_htod(ptr, np.ascontiguousarray(host))

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        self.drv.memcpy_dtoh(host, ptr)

    def synchronize(self) -> None:
        self.drv.Context.synchronize()


class _CudaPython(DeviceMemory):
    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt  # older cuda-python
        self.rt = rt
        n = self._ok(rt.cudaGetDeviceCount())
        if not n:
            raise CudaUnavailable("cuda-python sees no CUDA device")

    def _ok(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA runtime error {int(err)} ({err})")
        return rest[0] if len(rest) == 1 else rest

    def alloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(max(1, nbytes))))

    def free(self, ptr: int) -> None:
        self._ok(self.rt.cudaFree(ptr))

    def htod(self, ptr: int, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        self._ok(self.rt.cudaMemcpy(ptr, host.ctypes.data, host.nbytes,
                                    self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice))

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        self._ok(self.rt.cudaMemcpy(host.ctypes.data, ptr, host.nbytes,
                                    self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost))

    def synchronize(self) -> None:
        self._ok(self.rt.cudaDeviceSynchronize())


class _CuPy(DeviceMemory):
    name = "cupy"

    def __init__(self) -> None:
        import cupy

        self.rt = cupy.cuda.runtime
        if self.rt.getDeviceCount() < 1:
            raise CudaUnavailable("cupy sees no CUDA device")

    def alloc(self, nbytes: int) -> int:
        return int(self.rt.malloc(max(1, nbytes)))

    def free(self, ptr: int) -> None:
        self.rt.free(ptr)

    def htod(self, ptr: int, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        self.rt.memcpy(ptr, host.ctypes.data, host.nbytes, self.rt.memcpyHostToDevice)

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        self.rt.memcpy(host.ctypes.data, ptr, host.nbytes, self.rt.memcpyDeviceToHost)

    def synchronize(self) -> None:
        self.rt.deviceSynchronize()


_BINDINGS = {"pycuda": _PyCuda, "cuda-python": _CudaPython, "cupy": _CuPy}
_chosen: DeviceMemory | None = None


def wanted_binding() -> str:
    """The binding ``ASP_CUDA_MEMORY`` names (``""``: the first that works); another value is a
    ``ValueError`` naming the choices."""
    wanted = os.environ.get("ASP_CUDA_MEMORY", "").strip()
    if wanted and wanted not in _BINDINGS:
        raise ValueError(f"ASP_CUDA_MEMORY={wanted!r}; expected one of {', '.join(_BINDINGS)}")
    return wanted


def get_device_memory() -> DeviceMemory:
    """The first working binding (cached); :class:`CudaUnavailable` says why none works."""
    global _chosen
    if _chosen is not None:
        return _chosen
    wanted = wanted_binding()
    order = [wanted] if wanted else list(_BINDINGS)
    errors = []
    for name in order:
        try:
            _chosen = _BINDINGS[name]()
            return _chosen
        except Exception as exc:  # noqa: BLE001 - try the next binding, report all at the end
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    raise CudaUnavailable("no usable CUDA binding for device memory (pip install "
                          "'asp-stencil[cuda]' for pycuda, or install cuda-python or cupy): "
                          + "; ".join(errors))


class DeviceBuffer:
    """A device allocation shaped like a host array (freed when collected)."""

    def __init__(self, mem: DeviceMemory, like: np.ndarray) -> None:
        self.mem = mem
        self.nbytes = int(like.nbytes)
        self.shape = like.shape
        self.dtype = like.dtype
        self.ptr = mem.alloc(self.nbytes)

    def upload(self, host: np.ndarray) -> None:
        if host.nbytes != self.nbytes:
            raise ValueError("host array size differs from the device buffer")
        self.mem.htod(self.ptr, host)

    def download(self, host: np.ndarray) -> None:
        if host.nbytes != self.nbytes or not host.flags.c_contiguous:
            raise ValueError("download needs a C-contiguous host array of the buffer's size")
        self.mem.dtoh(host, self.ptr)

    def __del__(self) -> None:
        try:
            self.mem.free(self.ptr)
        except Exception:  # noqa: BLE001 - interpreter shutdown or a dead context
            pass


class DeviceGrids:
    """The device copies of one specialisation's grids (grid index → :class:`DeviceBuffer`),
    shared by all its variants, and the lock a call holds from its first upload to its last
    download: two threads calling the kernel at once uploaded into the same buffers, so each
    launch could read the other's grids and each download return the other's result."""

    def __init__(self) -> None:
        self.buffers: dict[int, DeviceBuffer] = {}
        self.lock = threading.Lock()

    def buffer(self, i: int, host: np.ndarray) -> DeviceBuffer:
        """Grid ``i``'s buffer, allocated like ``host`` on first use (call with the lock held)."""
        buf = self.buffers.get(i)
        if buf is None:
            buf = self.buffers[i] = DeviceBuffer(get_device_memory(), host)
        return buf

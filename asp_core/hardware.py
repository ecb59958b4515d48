"""What the machine offers: cores, caches, ISA extensions, memory, GPUs, STREAM bandwidth.

One :class:`HardwareInfo` object feeds platform selection (is there a GPU? how big is the
last-level cache?) and the benchmarks (the STREAM copy roofline). Static facts are read from
``/proc`` and ``/sys``; the bandwidth is measured once with a compiled OpenMP copy kernel and
stored in the cache directory.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["HardwareInfo", "GPU", "query", "has_gpu", "default_threads", "simd_shape",
           "measure_stream_copy", "stream_copy_kernel"]

_ISA = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "neon", "asimd", "sve")


@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int
    compute_capability: str = ""


@dataclass
class HardwareInfo:
    """Static facts about this machine; ``stream_copy_gbs()`` measures (and caches) bandwidth."""

    cpu_model: str
    physical_cores: int
    logical_cpus: int
    caches: dict[str, int]
    isa: tuple[str, ...]
    memory_bytes: int
    gpus: list[GPU] = field(default_factory=list)
    machine: str = platform.machine()

    @property
    def last_level_cache(self) -> int:
        """Size in bytes of the largest cache (L3 usually), 8 MiB if unknown."""
        return max(self.caches.values(), default=8 << 20)

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    def stream_copy_gbs(self, refresh: bool = False) -> float:
        """STREAM copy bandwidth in GB/s (counting read + write), measured once and cached."""
        from asp_core.config import cache_dir

        path = cache_dir() / "hardware.json"
        ident = f"{self.cpu_model}|{self.logical_cpus}|{os.environ.get('OMP_NUM_THREADS', '')}"
        if not refresh:
            try:
                data = json.loads(path.read_text())
                if data.get("ident") == ident:
                    return float(data["stream_copy_gbs"])
            except (OSError, ValueError, KeyError):
                pass
        gbs = measure_stream_copy(max(4 * self.last_level_cache, 64 << 20))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"ident": ident, "stream_copy_gbs": gbs,
                                   "measured": time.time()}))
        os.replace(tmp, path)
        return gbs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text.rstrip("KMG")
    return int(digits) * mult if digits.isdigit() else 0


def _caches() -> dict[str, int]:
    out: dict[str, int] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    if base.exists():
        for idx in sorted(base.glob("index*")):
            level = _read(str(idx / "level")).strip()
            kind = _read(str(idx / "type")).strip()
            size = _size(_read(str(idx / "size")))
            if not level or not size or kind == "Instruction":
                continue
            name = f"L{level}{'d' if kind == 'Data' else ''}"
            out[name] = size
    return out


def _gpus() -> list[GPU]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        proc = subprocess.run([smi, "--query-gpu=name,memory.total,compute_cap",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in proc.stdout.strip().splitlines() if proc.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[1].isdigit():
            gpus.append(GPU(parts[0], int(parts[1]) << 20, parts[2] if len(parts) > 2 else ""))
    return gpus


@functools.lru_cache(maxsize=1)
def query() -> HardwareInfo:
    """The machine's :class:`HardwareInfo` (static parts cached for the process)."""
    cpuinfo = _read("/proc/cpuinfo")
    model, flags, cores = platform.processor() or "unknown", set(), set()
    phys = core = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name":
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "physical id":
            phys = value.strip()
        elif key == "core id":
            core = value.strip()
            cores.add((phys, core))
    logical = os.cpu_count() or 1
    meminfo = _read("/proc/meminfo")
    mem = 0
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    return HardwareInfo(cpu_model=model, physical_cores=len(cores) or logical,
                        logical_cpus=logical, caches=_caches(),
                        isa=tuple(f for f in _ISA if f in flags), memory_bytes=mem, gpus=_gpus())


def has_gpu() -> bool:
    """Whether this machine has a CUDA GPU (``nvidia-smi`` lists one; asked once per process)."""
    return query().has_gpu


def simd_shape(isa: tuple[str, ...]) -> tuple[int, int]:
    """``(doubles per SIMD register, SIMD registers)`` of a CPU with these ISA flags
    (:attr:`HardwareInfo.isa`): what generated code sizes its vectors and register tiles by."""
    if "avx512f" in isa:
        return 8, 32
    if "avx" in isa or "avx2" in isa:
        return 4, 16
    if "neon" in isa or "asimd" in isa or "sve" in isa:
        return 2, 32
    return 2, 16


def default_threads() -> int:
    """Threads a generated kernel should use when nothing else is chosen: ``OMP_NUM_THREADS``
    (its first value) when set, else every logical CPU.

    Kernels that pass ``num_threads(n)`` explicitly must start from this, not from
    ``os.cpu_count()``: MPI launchers set ``OMP_NUM_THREADS=1`` per rank, and ignoring it puts
    ranks x cores spinning OpenMP threads on the cores (measured: 2 ranks ran 3x slower).
    """
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1


def stream_copy_kernel(a: Any, b: Any) -> Callable[[], None]:
    """A callable doing the STREAM copy ``b[:] = a`` with a compiled OpenMP loop.

    Benchmarks put it in the same :meth:`asp_core.bench.BenchContext.compare` as the kernels they
    measure, so the roofline is taken in the same run, under the same noise. Falls back to
    ``numpy.copyto`` when no C compiler exists.
    """
    import ctypes

    import numpy as np

    if a.dtype != np.float64 or b.dtype != np.float64 or a.shape != b.shape or \
            not (a.flags.c_contiguous and b.flags.c_contiguous):
        raise ValueError("stream_copy_kernel needs two C-contiguous float64 arrays of one shape")
    try:
        from asp_core.build import compile_library

        fn = compile_library(_stream_source(), name="stream_copy").cdll.asp_stream_copy
    except Exception:  # noqa: BLE001 - no compiler: NumPy still gives a usable figure
        return lambda: np.copyto(b, a)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    fn.restype = None
    pa, pb, n = a.ctypes.data, b.ctypes.data, a.size

    def copy(_keep: tuple = (a, b)) -> None:  # holds the arrays: the pointers stay valid
        fn(pa, pb, n)

    return copy


def measure_stream_copy(nbytes: int, repeats: int = 8) -> float:
    """Best-of-``repeats`` STREAM copy (``b[i] = a[i]``) in GB/s, counting 16 bytes per element."""
    import numpy as np

    n = nbytes // 8
    a = np.random.default_rng(0).random(n)
    b = np.empty_like(a)
    copy = stream_copy_kernel(a, b)
    copy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        copy()
        best = min(best, time.perf_counter() - t0)
    if not np.array_equal(a[:: max(1, n // 1000)], b[:: max(1, n // 1000)]):
        raise RuntimeError("STREAM copy kernel produced wrong data")
    return 16 * n / best / 1e9


def _stream_source() -> str:
    from asp_core.cast import (DOUBLE, LONG, Assign, Block, Clause, Constant, For, FunctionDef,
                               Index, Module, Name, Param, Pragma, print_c)

    i = Name("i")
    body = Block([For("i", Constant(0), Name("n"),
                      Block([Assign(Index(Name("b"), i), Index(Name("a"), i))]),
                      pragmas=[Pragma("omp", "parallel for simd",
                                      [Clause("schedule", ("static",))])])])
    fn = FunctionDef("asp_stream_copy", [Param(DOUBLE.as_const().ptr(restrict=True), "a"),
                                         Param(DOUBLE.ptr(restrict=True), "b"),
                                         Param(LONG, "n")], body)
    return print_c(Module([fn]))


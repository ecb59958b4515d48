"""What the machine offers: cores, caches, ISA extensions, memory, GPUs (one
:class:`HardwareInfo` for platform selection and the benchmarks), and the CPUs this process may
use."""

from __future__ import annotations

import functools
import math
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["HardwareInfo", "GPU", "query", "has_gpu", "default_threads", "omp_num_threads",
           "available_cpus", "cuda_unavailable_reason", "nvcc_unavailable_reason"]

_ISA = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "neon", "asimd", "sve")


@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int
    compute_capability: str = ""


@dataclass
class HardwareInfo:
    """Static facts about this machine."""

    cpu_model: str
    physical_cores: int
    logical_cpus: int
    caches: dict[str, int]
    isa: tuple[str, ...]
    memory_bytes: int
    gpus: list[GPU] = field(default_factory=list)
    machine: str = platform.machine()
    #: CPUs sharing each of :attr:`caches`, and whether this is a virtual machine: a cache may
    #: not be this process's to count on (``asp doctor`` says when)
    cache_sharing: dict[str, int] = field(default_factory=dict)
    hypervisor: bool = False

    @property
    def last_level_cache(self) -> int:
        """Size in bytes of the largest cache (L3 usually), 8 MiB if unknown."""
        return max(self.caches.values(), default=8 << 20)

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)


def _read(path: str) -> str:
    """The file's text, "" if unreadable. ``surrogateescape``: a cgroup's name is any bytes, and
    one that is not UTF-8 in ``/proc/self/cgroup`` raised from every kernel call; escaped, it
    still names the right directory."""
    try:
        return Path(path).read_text(errors="surrogateescape", encoding="utf-8")
    except OSError:
        return ""


def _size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text.rstrip("KMG")
    return int(digits) * mult if digits.isdigit() else 0


def _cpu_list_len(text: str) -> int:
    """How many CPUs a sysfs list such as ``0-3,8`` names."""
    count = 0
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        if lo.strip().isdigit():
            count += int(hi) - int(lo) + 1 if hi.strip().isdigit() else 1
    return count


def _caches(base: Path = Path("/sys/devices/system/cpu/cpu0/cache")
            ) -> tuple[dict[str, int], dict[str, int]]:
    """``({name: bytes}, {name: CPUs sharing it})`` for cpu0's data and unified caches."""
    out: dict[str, int] = {}
    sharing: dict[str, int] = {}
    if base.exists():
        for idx in sorted(base.glob("index*")):
            level = _read(str(idx / "level")).strip()
            kind = _read(str(idx / "type")).strip()
            size = _size(_read(str(idx / "size")))
            if not level or not size or kind == "Instruction":
                continue
            name = f"L{level}{'d' if kind == 'Data' else ''}"
            out[name] = size
            sharing[name] = _cpu_list_len(_read(str(idx / "shared_cpu_list")))
    return out, sharing


def _gpus() -> list[GPU]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        proc = subprocess.run([smi, "--query-gpu=name,memory.total,compute_cap",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              errors="replace", timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in proc.stdout.strip().splitlines() if proc.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[1].isdigit():
            gpus.append(GPU(parts[0], int(parts[1]) << 20, parts[2] if len(parts) > 2 else ""))
    return gpus


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name, "" if unknown (part of a toolchain's ABI identity)."""
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor()  # runs `uname -p`: only without a model name


@functools.lru_cache(maxsize=1)
def cpu_features() -> str:
    """A short digest of the instruction-set extensions the kernel lists for the CPU (x86
    ``flags``, Arm ``Features``), "" if unknown: part of a toolchain's ABI identity, since
    ``-march=native`` code uses them.  The model name alone does not tell two CPUs apart:
    one model runs with AVX-512 switched off in firmware or masked by a hypervisor, and Arm's
    ``/proc/cpuinfo`` names no model, so a library built on one node of a shared cache was
    loaded on another and died with SIGILL in its first call."""
    import hashlib

    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return hashlib.sha256(" ".join(sorted(value.split())).encode()).hexdigest()[:16]
    return ""


@functools.lru_cache(maxsize=1)
def query() -> HardwareInfo:
    """The machine's :class:`HardwareInfo` (static parts cached for the process)."""
    flags, cores = set(), set()
    phys = None
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "physical id":
            phys = value.strip()
        elif key == "core id":
            cores.add((phys, value.strip()))
    logical = os.cpu_count() or 1
    mem = next((int(line.split()[1]) * 1024 for line in _read("/proc/meminfo").splitlines()
                if line.startswith("MemTotal:")), 0)
    caches, sharing = _caches()
    return HardwareInfo(cpu_model=cpu_model() or "unknown", physical_cores=len(cores) or logical,
                        logical_cpus=logical, caches=caches,
                        isa=tuple(f for f in _ISA if f in flags), memory_bytes=mem, gpus=_gpus(),
                        cache_sharing=sharing, hypervisor="hypervisor" in flags)


@functools.lru_cache(maxsize=1)
def cuda_unavailable_reason() -> str | None:
    """Why no CUDA kernel can run here (no GPU, no nvcc), or None. The GPU is checked first:
    without ``nvidia-smi`` that runs no subprocess, so ``asp list`` stays fast on CPU machines."""
    if not query().has_gpu:
        return "no CUDA GPU on this machine"
    return "nvcc not found (CUDA toolkit not installed)" if nvcc_unavailable_reason() else None


@functools.lru_cache(maxsize=1)
def nvcc_unavailable_reason() -> str | None:
    """Why CUDA code cannot be compiled here (no working ``nvcc``), or None; probed once per
    process."""
    from asp_core.errors import ToolchainError
    from asp_core.toolchain import find_toolchain

    try:
        find_toolchain("cuda")
    except ToolchainError as exc:
        return f"no nvcc: {exc}"
    return None


def has_gpu() -> bool:
    """Whether this machine has a CUDA GPU (``nvidia-smi`` lists one; asked once per process)."""
    return query().has_gpu


def default_threads() -> int:
    """Threads a kernel uses when nothing else is chosen: ``OMP_NUM_THREADS`` (first value),
    else :func:`available_cpus`. Never ``os.cpu_count()``: MPI launchers, SLURM and containers
    restrict ranks to fewer CPUs, and oversubscribing them made 2 ranks run 3x slower."""
    return omp_num_threads() or available_cpus()


def omp_num_threads() -> int | None:
    """``OMP_NUM_THREADS`` (its first value) when it names a positive count, else None: read
    as libgomp reads it (``+4`` is 4; ``str.isdigit`` took the Arabic-Indic digit ``٣`` for 3,
    which libgomp rejects)."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip().removeprefix("+")
    return int(env) if env.isascii() and env.isdigit() and int(env) > 0 else None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask (``taskset``, ``mpiexec`` binding, SLURM),
    capped by a cgroup CPU quota (containers: ``docker --cpus=1.5`` gives 2)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows: no affinity API
        cpus = os.cpu_count() or 1
    quota = process_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


@functools.cache
def process_cpu_quota() -> float | None:
    """:func:`cgroup_cpu_quota` of this process, read once: its four file reads (about 0.13 ms)
    ran on every call of a ``MatrixPowers`` made per step, and with every new tuner."""
    return cgroup_cpu_quota()


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"),
                     membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota (in CPUs) of this process's cgroup and its ancestors (v2 ``cpu.max`` or
    v1 ``cpu.cfs_quota_us``), None if unlimited."""
    limits: list[float] = []
    for line in _read(str(membership)).splitlines():
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        rel = Path(path.lstrip("/"))
        if controllers and "cpu" not in controllers.split(","):  # "": v2 unified hierarchy
            continue
        base = root if controllers == "" else next(
            (root / n for n in (controllers, "cpu", "cpu,cpuacct") if (root / n).is_dir()), None)
        if base is None:
            continue
        for d in [rel, *rel.parents]:  # every ancestor's limit applies
            if controllers == "":
                quota, _, period = _read(str(base / d / "cpu.max")).partition(" ")
            else:
                quota = _read(str(base / d / "cpu.cfs_quota_us"))
                period = _read(str(base / d / "cpu.cfs_period_us"))
            quota, period = quota.strip(), period.strip()
            if quota.isdigit() and period.isdigit() and int(period):
                limits.append(int(quota) / int(period))
    return min(limits) if limits else None

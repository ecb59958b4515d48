"""Compilers: detection, ABI identity for the cache key, compiling shared objects; nothing
about platforms or caches (as Devito's ``arch/``). JIT kernels are plain-C-ABI shared objects
(~0.07 s to compile, a pybind11 module 8-10 s): pybind11 only for install-time extensions.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from asp_core import config
from asp_core.errors import CompileError, CompilerNotFound, CompileTimeout, ToolchainError
from asp_core.hardware import cpu_features, cpu_model
from asp_core.spawn import run_tool

__all__ = ["Toolchain", "find_toolchain", "has_compiler", "compiler_unavailable_reason", "has_nvcc",
           "CompileResult", "INSTALL_HINT", "SOURCE_SUFFIX"]

INSTALL_HINT = {
    "c": ("install a C compiler: `sudo apt-get install gcc` (Debian/Ubuntu), `sudo dnf install gcc` "
          "(Fedora), `xcode-select --install` (macOS) or `conda install -c conda-forge "
          "c-compiler`; or point ASP_CC at one"),
    "c++": ("install a C++ compiler: `sudo apt-get install g++` or `conda install -c conda-forge "
            "cxx-compiler`; or point ASP_CXX at one"),
    "cuda": ("install the CUDA toolkit (nvcc) from NVIDIA or `conda install -c nvidia cuda-nvcc`; "
             "or point ASP_NVCC at it"),
}

_CANDIDATES = {
    "c": ("ASP_CC", ("cc", "gcc", "clang")),
    "c++": ("ASP_CXX", ("c++", "g++", "clang++")),
    "cuda": ("ASP_NVCC", ("nvcc",)),
}

SOURCE_SUFFIX = {"c": ".c", "c++": ".cpp", "cuda": ".cu"}


@dataclass(frozen=True)
class CompileResult:
    """What one compilation did: the output, the exact command and how long it took."""

    output: Path
    command: list[str]
    seconds: float
    log: str


@dataclass(frozen=True)
class Toolchain:
    """A compiler for one language and Asp's flags for it (``-ffp-contract=off``: no FMA
    contraction, so code evaluating in the DAST's order is bitwise equal to Python)."""

    lang: str
    executable: str
    family: str
    version: str
    flags: tuple[str, ...]
    openmp_flags: tuple[str, ...] = ()
    extra_flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_openmp(self) -> bool:
        return bool(self.openmp_flags)

    def flags_rejected(self) -> str:
        """Why this compiler cannot build a one-line file with Asp's flags and ``ASP_CFLAGS``
        ("" when it can): the probes that found it leave ``ASP_CFLAGS`` out, so a compiler
        that rejects them reads as working while every kernel compile fails."""
        return _build_probe(self.executable, [*self.flags, *self.extra_flags], _PROBE_SOURCE,
                            SOURCE_SUFFIX[self.lang])

    def abi_id(self) -> str:
        """Everything that makes two builds of the same source differ (part of the cache key),
        the compiler named by the file it runs: a wrapper script (``exec gcc -ffast-math``, a
        site's module shim) prints the version line of the compiler it wraps, and its builds
        were taken for that compiler's (results that differed from Python's, reused)."""
        return "|".join([self.lang, self.family, self.version, _file_identity(self.executable),
                         " ".join(self.flags), " ".join(self.extra_flags), platform.machine(),
                         cpu_model() or "unknown-cpu", cpu_features()])

    def command(self, source: Path, output: Path, *, openmp: bool = True,
                flags: tuple[str, ...] = (), shared: bool = True) -> list[str]:
        cmd = [self.executable, *self.flags, *self.extra_flags,
               *(self.openmp_flags if openmp else ()), *flags,
               "-shared" if shared else "-c", "-o", str(output), str(source)]
        return cmd if self.lang == "cuda" else [*cmd, "-lm"]

    def compile(self, source: str, workdir: Path, *, name: str = "kernel", openmp: bool = True,
                flags: tuple[str, ...] = (), shared: bool = True) -> CompileResult:
        """Write ``source`` into ``workdir`` and compile it; :class:`CompileError` when the
        compiler rejects the code, :class:`ToolchainError` when it fails for another reason
        (killed, not done within :func:`asp_core.config.compile_timeout` seconds, no output
        written).  Without a limit, a compiler that never ends (a wrapper waiting for a licence
        server, a hung ``ld``) hung the kernel's first call, and the exit that waits for
        background compiles, for good."""
        src = workdir / f"{name}{SOURCE_SUFFIX[self.lang]}"
        src.write_text(source, encoding="utf-8")
        out = workdir / (f"lib{name}.so" if shared else f"{name}.o")
        cmd = self.command(src, out, openmp=openmp, flags=flags, shared=shared)
        timeout = config.compile_timeout()
        start = time.perf_counter()
        try:
            proc = run_tool(cmd, cwd=workdir, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CompileTimeout(f"{self.family} did not finish compiling generated code in "
                                 f"{timeout:g} s and was killed (a hung compiler or wrapper? "
                                 "ASP_COMPILE_TIMEOUT sets the limit)\ncommand: "
                                 f"{' '.join(cmd)}", timeout) from None
        seconds = time.perf_counter() - start
        log = (proc.stdout + proc.stderr).strip()
        why = _not_the_codes_fault(self.family, proc.returncode, out)
        if why:
            raise ToolchainError(f"{why}\ncommand: {' '.join(cmd)}" + (f"\n{log}" if log else ""))
        if proc.returncode != 0:
            raise CompileError(f"{self.family} failed on generated code (exit {proc.returncode})",
                               command=cmd, log=log,
                               source_path=_keep_failed_source(name, source, src.suffix))
        return CompileResult(out, cmd, seconds, log)

    def check(self, source: str, *, flags: tuple[str, ...] = ()) -> CompileResult:
        """Compile to an object file only (used to compile-check CUDA where no GPU exists)."""
        with tempfile.TemporaryDirectory(prefix="asp-check-") as tmp:
            result = self.compile(source, Path(tmp), openmp=False, flags=flags, shared=False)
            return CompileResult(Path(""), result.command, result.seconds, result.log)


def _keep_failed_source(name: str, source: str, suffix: str) -> str:
    """Keep a rejected source for the report (its build directory goes), one file per source:
    a file per failure filled the temporary directory of a service that made kernels. Written
    beside and renamed over the name (a link planted there is replaced, not followed); where
    the name is another user's, the unique file stays."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    fd, kept = tempfile.mkstemp(prefix=f"asp-failed-{name}-", suffix=suffix)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(source)
    final = os.path.join(os.path.dirname(kept), f"asp-failed-{name}-{digest}{suffix}")
    try:
        os.replace(kept, final)
    except OSError:
        return kept
    return final


def _file_identity(executable: str) -> str:
    """The file ``executable`` runs (links resolved: ``cc`` and ``gcc`` are one compiler) and
    its modification time."""
    path = os.path.realpath(executable)
    try:
        return f"{path}@{os.stat(path).st_mtime_ns}"
    except OSError:
        return path


def _not_the_codes_fault(family: str, returncode: int, out: Path) -> str:
    """Why a compile failed for a reason that is not the generated code's ("" when the
    compiler ran to its end and rejected it): such a failure was reported as "generated code
    failed to compile (a bug; please report it)", sending the user to report a bug for a
    compiler that the operating system (the OOM killer) or a wrapper script broke."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return (f"{family} was killed by {name} while compiling generated code (out of memory, "
                "or stopped by hand?)")
    if returncode == 0 and not out.exists():
        return f"{family} exited successfully but wrote no {out.name} (a broken compiler wrapper?)"
    return ""


def _disk_memo(kind: str, executable: str, mtime: float, compute: Callable[[], Any],
               valid: Callable[[Any], bool] = lambda v: True) -> Any:
    """Remember a compiler probe on disk (a warm process must not pay ~40 ms of subprocesses),
    keyed by the executable's path and mtime, so an upgraded compiler is probed again.
    ``valid``: whether a value may be taken from the file, and so whether it is written there.
    A failed probe is left out: the moment may have caused it (``TMPDIR`` full, a probe killed
    on a loaded machine), and remembered it made a working compiler "not a working compiler"
    (or one without OpenMP) for every later process, until the compiler's mtime changed."""
    from asp_core.cache import cache_file

    ident = f"{kind}|{executable}|{mtime}"

    def read() -> dict[str, Any]:
        path = cache_file("toolchains.json")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}  # damaged: only a lost memo

    data = read()
    if ident in data and valid(data[ident]):
        return data[ident]
    value = compute()
    if not valid(value):  # this process remembers it (the callers' lru_cache), no later one
        return value
    # read again after the probe (seconds, maybe): what other probes wrote meanwhile stays
    data = {**read(), ident: value}
    # found again, not kept from before the probe: a cache directory removed meanwhile is
    # made again by cache_file with Asp's marker; re-made here bare, the memo in it would have
    # made it look like a user's folder (not Asp's) to every later process
    path = cache_file("toolchains.json")
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # an unwritable cache only costs the probe next time
        with contextlib.suppress(OSError):  # a full disk kept a partial one (read-only: none)
            tmp.unlink(missing_ok=True)
    return value


#: the shortest limit a probe gets, whatever ASP_COMPILE_TIMEOUT says: a one-line compile
#: with OpenMP may take a second on a loaded machine, and a probe cut short would take a
#: working compiler for a broken one
PROBE_FLOOR_S = 5.0


def _probe_limit(seconds: float) -> float:
    """A probe's time limit: ``seconds``, or less where ``ASP_COMPILE_TIMEOUT`` (the limit of
    any compiler run, :func:`asp_core.config.compile_timeout`) says less, down to
    :data:`PROBE_FLOOR_S`: with a compiler that hangs and a 3 s limit, each process's first
    kernel call waited 120 s for the probes. An invalid setting is not the probes' to report
    (a kernel's call raises it, ``asp doctor``'s settings row names it; ``asp doctor`` ended in
    its traceback here): they take the default then."""
    try:
        limit = config.compile_timeout()
    except ValueError:
        limit = config.COMPILE_TIMEOUT
    return min(seconds, max(limit, PROBE_FLOOR_S))


@functools.lru_cache(maxsize=32)
def _probe(executable: str, mtime: float, lang: str) -> tuple[str, str]:
    """(family, version) of a compiler executable."""

    def run() -> list[str]:
        out = run_tool([executable, "--version"], timeout=_probe_limit(30))
        text = (out.stdout + out.stderr).strip()
        if lang == "cuda":
            return ["nvcc", text.splitlines()[-1] if text else "?"]
        lower = text.lower()
        family = "clang" if "clang" in lower else "gcc" if (
            "gcc" in lower or "free software foundation" in lower) else Path(executable).name
        return [family, text.splitlines()[0] if text else ""]

    family, version = _disk_memo(f"version:{lang}", executable, mtime, run, lambda v: isinstance(
        v, list) and len(v) == 2 and all(isinstance(x, str) for x in v))
    # GCC's line starts with the name it was run by ("cc (Debian 12.2.0-14) 12.2.0", "gcc
    # (Debian ...") and names one compiler three ways (cc, gcc, x86_64-linux-gnu-gcc-12):
    # each had its own cache keys, and ASP_CC=gcc compiled every kernel cc had compiled
    program = Path(executable).name + " "
    return family, version[len(program):] if version.startswith(program) else version


#: the one-line file the probes build (a compiler that "succeeds" without writing a shared
#: object, such as ``ASP_CC=/bin/true``, is found out by it)
_PROBE_SOURCE = "int asp_probe(void) { return 42; }\n"


def _build_probe(executable: str, flags: list[str], source: str, suffix: str) -> str:
    """Why ``executable`` cannot build ``source`` into a shared object ("" when it can)."""
    with tempfile.TemporaryDirectory(prefix="asp-cc-") as tmp:
        src = Path(tmp) / f"probe{suffix}"
        src.write_text(source, encoding="utf-8")
        lib = Path(tmp) / "libprobe.so"
        proc = run_tool([executable, *flags, "-fPIC", "-shared", "-o", str(lib), str(src)],
                        timeout=_probe_limit(60), cwd=Path(tmp))
        if proc.returncode != 0:
            line = _error_line((proc.stdout + proc.stderr).strip().splitlines())
            return f"a one-line test file failed to compile (exit {proc.returncode}" + \
                (f": {line}" if line else "") + ")"
        if not lib.is_file() or lib.stat().st_size == 0:
            return "it exited successfully but wrote no shared object"
    return ""


def _error_line(log: list[str]) -> str:
    """The line of a compiler's output that says what went wrong: the first naming an error,
    else the last.  The last alone is gcc's "compilation terminated.", which hid the cause
    ("fatal error: ... No space left on device" with ``TMPDIR`` full)."""
    return next((line for line in log if "error" in line.lower()), log[-1] if log else "")


@functools.lru_cache(maxsize=32)
def _openmp_works(executable: str, mtime: float, flag: str) -> bool:
    def run() -> bool:
        # tried twice: a compile killed on a loaded machine must not build this process's
        # libraries without OpenMP (and a failure is not remembered on disk: _disk_memo)
        return any(not _build_probe(executable, [flag], "#include <omp.h>\nint f(void)"
                                    "{return omp_get_max_threads();}\n", ".c") for _ in range(2))

    return bool(_disk_memo(f"openmp-so:{flag}", executable, mtime, run, lambda v: v is True))


@functools.lru_cache(maxsize=32)
def _broken(executable: str, mtime: float, lang: str) -> str:
    """Why ``executable`` is not a working compiler for ``lang`` ("" when it is): it must build
    a one-line shared object (``ASP_CC=/bin/true`` "succeeds" and writes nothing)."""

    def run() -> str:
        if lang == "cuda":  # a test compile costs seconds with nvcc: check who answers
            out = run_tool([executable, "--version"], timeout=_probe_limit(30))
            text = out.stdout + out.stderr
            return "" if out.returncode == 0 and ("nvcc" in text or "cuda" in text.lower()) \
                else "`--version` does not identify nvcc"
        return _build_probe(executable, [], _PROBE_SOURCE, SOURCE_SUFFIX[lang])

    try:
        return str(_disk_memo(f"works:{lang}", executable, mtime, run, lambda v: v == ""))
    except (OSError, subprocess.SubprocessError) as exc:
        return f"it cannot be run ({exc})"


def _locate(lang: str) -> str | None:
    env, names = _CANDIDATES[lang]
    explicit = os.environ.get(env)
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise CompilerNotFound(f"no {lang} compiler: ${env}={explicit!r} is not an "
                                   f"executable compiler (not found, or not executable); "
                                   f"unset {env} or " + INSTALL_HINT[lang])
        # absolute: compiles run in a build directory, where ./gcc or a relative PATH entry
        # named nothing (the probes, run from here, had passed)
        return os.path.abspath(found)
    found = next((path for path in map(shutil.which, names) if path), None)
    return os.path.abspath(found) if found else None


def find_toolchain(lang: str = "c") -> Toolchain:
    """The toolchain for ``lang`` (``"c"``, ``"c++"``, ``"cuda"``); :class:`CompilerNotFound`
    with installation instructions when there is none."""
    if lang not in _CANDIDATES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(_CANDIDATES)}")
    path = _locate(lang)
    env, names = _CANDIDATES[lang]
    if path is None:
        raise CompilerNotFound(f"no {lang} compiler found (looked at ${env} and "
                               f"{', '.join(names)}); " + INSTALL_HINT[lang])
    mtime = os.stat(path).st_mtime
    try:
        omp_ok = lang != "cuda" and _openmp_works(path, mtime, "-fopenmp")
    except (OSError, subprocess.SubprocessError):  # cannot be run at all: _broken says why
        omp_ok = False
    why = "" if omp_ok else _broken(path, mtime, lang)  # built an OpenMP library: it works
    if why:
        source = f"{env}={os.environ[env]!r}" if os.environ.get(env) else path
        raise CompilerNotFound(f"{source} is not a working {lang} compiler: {why}; "
                               + INSTALL_HINT[lang])
    family, version = _probe(path, mtime, lang)
    if lang == "cuda":
        return Toolchain(lang, path, "nvcc", version, ("-O3", "-Xcompiler", "-fPIC", "-Xcompiler",
                                                       "-ffp-contract=off", "--fmad=false",
                                                       "-std=c++17"))
    flags = ("-O3", "-march=native", "-fPIC", "-ffp-contract=off", "-fno-math-errno",
             "-fno-trapping-math", "-std=gnu11" if lang == "c" else "-std=gnu++17")
    try:
        extra = tuple(shlex.split(os.environ.get("ASP_CFLAGS", "")))
    except ValueError as exc:  # "No closing quotation", naming nothing, from every platform check
        raise CompilerNotFound(f"ASP_CFLAGS={os.environ['ASP_CFLAGS']!r} cannot be split into "
                               f"flags as a shell would ({exc}); fix its quoting or unset it"
                               ) from None
    return Toolchain(lang, path, family, version, flags, ("-fopenmp",) if omp_ok else (), extra)


def has_compiler(lang: str = "c") -> bool:
    """Whether :func:`find_toolchain` finds a compiler for ``lang``; remembered per ``ASP_CC``
    (``ASP_CXX``, ``ASP_NVCC``), ``ASP_CFLAGS`` and ``PATH``, so a platform's ``check`` may ask
    every time."""
    return compiler_unavailable_reason(lang) is None


def compiler_unavailable_reason(lang: str = "c", *, probe: bool = True) -> str | None:
    """Why no ``lang`` code can be compiled here (the :class:`CompilerNotFound` message, which
    names the ``ASP_CC`` setting at fault), or None; remembered as :func:`has_compiler` is.
    ``probe=False`` only looks for the executable: no compile, no subprocess, nothing written
    (``asp list`` names the platform a kernel really gets without probing: it showed ``openmp``
    where there was no compiler and kernels ran NumPy)."""
    if lang not in _CANDIDATES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(_CANDIDATES)}")
    return _missing(lang, probe, os.environ.get(_CANDIDATES[lang][0], ""),
                    os.environ.get("ASP_CFLAGS", ""), os.environ.get("PATH", ""))


@functools.lru_cache(maxsize=32)
def _missing(lang: str, probe: bool, _explicit: str, _flags: str, _path: str) -> str | None:
    try:
        if probe:
            find_toolchain(lang)
        elif _locate(lang) is None:
            env, names = _CANDIDATES[lang]
            return f"no {lang} compiler found (looked at ${env} and {', '.join(names)})"
        return None
    except CompilerNotFound as exc:   # "no C compiler: no c compiler: ..." read twice
        text = str(exc)
        return text if text.lower().startswith(f"no {lang} compiler") else \
            f"no {'C' if lang == 'c' else lang} compiler: {text}"


def has_nvcc() -> bool:
    """Whether the CUDA compiler is there (it compiles CUDA even on machines without a GPU)."""
    return has_compiler("cuda")

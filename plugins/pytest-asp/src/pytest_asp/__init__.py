"""pytest-asp: pytest support for specializer authors (a pytest plugin, loaded through
``pytest11``).

pytest loads this plugin in *every* project of an environment where it is installed, so it
only acts on marks that are Asp's by name: ``requires_compiler``, ``requires_nvcc``,
``requires_gpu`` and ``requires_mpi`` are the pytest marks ``asp_compiler``, ``asp_nvcc``,
``asp_gpu`` and ``asp_mpi`` (use them as decorators or in ``pytestmark``; select with
``-m "not asp_gpu"``). A test marked with one is skipped, with a reason naming what is missing,
when the machine lacks the thing. Another project's own ``gpu``, ``mpi``, ``compiler`` or
``nvcc`` marks are left alone, unless that project opts in with the ini option
``asp_short_markers = true`` (Asp's own test suites do), which makes the short names mean the
same as the ``asp_`` ones. The checks run once per session and only when a marked test is about
to run.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
from pathlib import Path
from typing import Callable

import pytest

# the probes live with what they probe, for run-time code too; re-exported here for tests
from asp_core.hardware import has_gpu
from asp_core.toolchain import has_compiler, has_nvcc

__version__ = "0.1.0"

__all__ = ["requires_compiler", "requires_nvcc", "requires_gpu", "requires_mpi", "has_compiler",
           "has_nvcc", "has_gpu", "has_mpi", "assert_valid_c_for_target", "__version__"]


def assert_valid_c_for_target(source: str, target_flag: str, workdir: Path) -> None:
    """Fail unless gcc accepts ``source`` (OpenMP C) for another target, e.g. ``"-mavx512f"``.

    Code generated for an ISA this machine lacks cannot be loaded and run here, but compiling
    it to an object file with the target's flag (``-c -O2``: intrinsics are inlined there, so a
    call the target does not have fails, which ``-fsyntax-only`` would miss) catches what CI
    machines of that kind would reject. Skips the test when gcc is not installed.
    """
    import subprocess

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to check code for other targets")
    path = workdir / "target_check.c"
    path.write_text(source, encoding="utf-8")
    proc = subprocess.run([gcc, "-c", "-O2", "-fopenmp", target_flag, str(path),
                           "-o", str(workdir / "target_check.o")], capture_output=True, text=True)
    assert proc.returncode == 0, f"gcc {target_flag} rejects the code:\n{proc.stderr[-2000:]}"


def has_mpi() -> bool:
    """mpi4py importable and an ``mpiexec`` where Asp's launcher looks for one."""
    from asp_core.mpi import find_mpiexec

    return importlib.util.find_spec("mpi4py") is not None and find_mpiexec() is not None


_REQUIREMENTS: dict[str, tuple[Callable[[], bool], str]] = {
    "compiler": (lambda: has_compiler("c"), "no C compiler (install gcc or set ASP_CC)"),
    "nvcc": (has_nvcc, "nvcc not found (CUDA toolkit not installed)"),
    "gpu": (has_gpu, "no CUDA GPU on this machine (nvidia-smi shows none)"),
    "mpi": (has_mpi, "mpi4py or mpiexec missing (pip install 'asp-core[mpi]')"),
}

_PREFIX = "asp_"
_SHORT_INI = "asp_short_markers"

requires_compiler = pytest.mark.asp_compiler
requires_nvcc = pytest.mark.asp_nvcc
requires_gpu = pytest.mark.asp_gpu
requires_mpi = pytest.mark.asp_mpi


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(_SHORT_INI, type="bool", default=False,
                  help="Asp: also skip tests marked compiler/nvcc/gpu/mpi (without the asp_ "
                       "prefix) when the machine lacks the thing")


def _short_names(config: pytest.Config) -> bool:
    return bool(config.getini(_SHORT_INI))


def pytest_configure(config: pytest.Config) -> None:
    short = _short_names(config)
    for name, (_, reason) in _REQUIREMENTS.items():
        config.addinivalue_line("markers", f"{_PREFIX}{name}: needs it; skipped when absent "
                                f"({reason})")
        if short:
            config.addinivalue_line("markers", f"{name}: same as {_PREFIX}{name}")


@functools.lru_cache(maxsize=None)
def _available(name: str) -> bool:
    return _REQUIREMENTS[name][0]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    short = _short_names(item.config)
    for name, (_, reason) in _REQUIREMENTS.items():
        marked = item.get_closest_marker(_PREFIX + name) is not None or (
            short and item.get_closest_marker(name) is not None)
        if marked and not _available(name):
            pytest.skip(reason)

"""Pytest helpers for specializer authors: skip markers for what a test needs, and isolation.

``requires_compiler``, ``requires_nvcc``, ``requires_gpu`` and ``requires_mpi`` skip with a
reason naming what is missing; each also carries the matching marker (``compiler``, ``nvcc``,
``gpu``, ``mpi``) so a run can select or deselect them with ``-m``.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
from typing import Any

import pytest

from asp_core.errors import CompilerNotFound
from asp_core.hardware import query
from asp_core.toolchain import find_toolchain

__all__ = ["requires_compiler", "requires_nvcc", "requires_gpu", "requires_mpi", "has_compiler",
           "has_nvcc", "has_gpu", "has_mpi"]


@functools.lru_cache(maxsize=None)
def has_compiler(lang: str = "c") -> bool:
    try:
        find_toolchain(lang)
        return True
    except CompilerNotFound:
        return False


def has_nvcc() -> bool:
    return has_compiler("cuda")


def has_gpu() -> bool:
    return query().has_gpu


def has_mpi() -> bool:
    return importlib.util.find_spec("mpi4py") is not None and shutil.which("mpiexec") is not None


def _both(marker: str, condition: bool, reason: str) -> Any:
    def apply(obj: Any) -> Any:
        obj = getattr(pytest.mark, marker)(obj)
        return pytest.mark.skipif(condition, reason=reason)(obj)

    return apply


requires_compiler = _both("compiler", not has_compiler("c"),
                          "no C compiler (install gcc or set ASP_CC)")
requires_nvcc = _both("nvcc", not has_nvcc(), "nvcc not found (CUDA toolkit not installed)")
requires_gpu = _both("gpu", not has_gpu(), "no CUDA GPU on this machine (nvidia-smi shows none)")
requires_mpi = _both("mpi", not has_mpi(),
                     "mpi4py or mpiexec missing (pip install 'asp-core[mpi]')")

"""Compile generated source through the code cache and load it: the backend's one call.

``compile_library`` = toolchain + cache key + lock + atomic publish + checksum-verified load.
"""

from __future__ import annotations

import ctypes
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asp_core._version import __version__
from asp_core.cache import cache_key, get_cache, load_library
from asp_core.toolchain import find_toolchain

__all__ = ["CompiledLibrary", "compile_library", "library_key"]


@dataclass
class CompiledLibrary:
    """A loaded shared object and how it came to be."""

    cdll: ctypes.CDLL
    path: Path
    source_path: Path
    key: str
    command: list[str]
    seconds: float
    cached: bool
    load_seconds: float


def library_key(source: str, *, lang: str = "c", openmp: bool = True,
                flags: tuple[str, ...] = (), specialised_on: dict[str, Any] | None = None) -> str:
    """The cache key: source, compiler identity and flags, target, Asp version, specialisation."""
    tc = find_toolchain(lang)
    return cache_key(source=source, abi=tc.abi_id(), flags=list(flags),
                     openmp=bool(openmp and tc.has_openmp), lang=lang,
                     machine=platform.machine(), asp=__version__,
                     specialised_on=specialised_on or {})


def compile_library(source: str, *, lang: str = "c", openmp: bool = True,
                    flags: tuple[str, ...] = (), name: str = "kernel",
                    specialised_on: dict[str, Any] | None = None) -> CompiledLibrary:
    """Return the loaded library for ``source``, compiling it only on a cache miss.

    Raises :class:`~asp_core.errors.CompilerNotFound` when no compiler exists and
    :class:`~asp_core.errors.CompileError` when the compiler rejects the code.
    """
    tc = find_toolchain(lang)
    key = library_key(source, lang=lang, openmp=openmp, flags=flags,
                      specialised_on=specialised_on)

    def build(tmp: Path) -> dict[str, Any]:
        result = tc.compile(source, tmp, name=name, openmp=openmp, flags=flags)
        return {"command": result.command, "seconds": result.seconds, "name": name,
                "toolchain": tc.abi_id(), "specialised_on": specialised_on or {},
                "asp_version": __version__}

    cache = get_cache()
    entry, cached = cache.get_or_build(key, build)
    suffix = {"c": ".c", "c++": ".cpp", "cuda": ".cu"}[lang]
    lib_path = entry.file(f"lib{entry.meta.get('name', name)}.so")
    start = time.perf_counter()
    cdll = load_library(lib_path)
    load_seconds = time.perf_counter() - start
    return CompiledLibrary(cdll, lib_path, entry.file(f"{entry.meta.get('name', name)}{suffix}"),
                           key, list(entry.meta.get("command", [])),
                           0.0 if cached else float(entry.meta.get("seconds", 0.0)), cached,
                           load_seconds)

"""Compile generated source through the code cache and load it: the backend's one call
(toolchain + cache key + lock + atomic publish + checksum-verified load)."""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from asp_core import background
from asp_core._version import __version__
from asp_core.cache import (CodeCache, cache_key, file_stem, get_cache, on_noexec_mount,
                            private_cache)
from asp_core.errors import CacheError, ToolchainError
from asp_core.log import get_logger
from asp_core.toolchain import SOURCE_SUFFIX, find_toolchain

__all__ = ["CompiledLibrary", "compile_library", "is_cached", "library_key"]

_log = get_logger("build")


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
    #: the seconds its compile took, here or (``cached``) in the process that built it: what
    #: compiling code like it costs, where ``seconds`` is what this process spent
    compile_seconds: float = 0.0

    def function(self, name: str) -> Any:
        """The library's exported function ``name`` (a ctypes function pointer).
        :class:`ToolchainError` when the library lacks it: a compiler wrapper that built
        something else "succeeded", and the kernel's first call raised ctypes' bare
        AttributeError, in every later process too, instead of falling back with the reason."""
        try:
            return getattr(self.cdll, name)
        except AttributeError:
            raise ToolchainError(f"{self.path} has no function {name!r}: the compiler "
                                 f"({self.command[0] if self.command else '?'}) did not build "
                                 "the generated source into it (a broken compiler wrapper?); "
                                 "`asp cache clear` removes the library") from None


def library_key(source: str, *, lang: str = "c", openmp: bool = True,
                flags: tuple[str, ...] = (), specialised_on: dict[str, Any] | None = None) -> str:
    """The cache key: source, compiler identity and flags, target, Asp version, specialisation."""
    tc = find_toolchain(lang)
    return cache_key(source=source, abi=tc.abi_id(), flags=list(flags),
                     openmp=bool(openmp and tc.has_openmp), lang=lang,
                     machine=platform.machine(), asp=__version__,
                     specialised_on=specialised_on or {})


def is_cached(source: str, *, lang: str = "c", openmp: bool = True, flags: tuple[str, ...] = (),
              specialised_on: dict[str, Any] | None = None) -> bool:
    """Whether :func:`compile_library` would find ``source`` built in the code cache (nothing
    is compiled): a plugin can leave out work that only pays off in a process that compiles."""
    key = library_key(source, lang=lang, openmp=openmp, flags=flags,
                      specialised_on=specialised_on)
    try:
        return get_cache().lookup(key) is not None
    except CacheError:  # unusable cache: compile_library would build in a private one
        return False


def compile_library(source: str, *, lang: str = "c", openmp: bool = True,
                    flags: tuple[str, ...] = (), name: str = "kernel",
                    specialised_on: dict[str, Any] | None = None) -> CompiledLibrary:
    """The loaded library for ``source``, compiled only on a cache miss (a background compile
    of the key is waited for and counts as cached); raises ``CompilerNotFound`` or
    ``CompileError``."""
    tc = find_toolchain(lang)
    name = file_stem(name)
    key = library_key(source, lang=lang, openmp=openmp, flags=flags,
                      specialised_on=specialised_on)
    running = background.claim(key)
    if running is not None:  # compiled in the background: take that compile's library
        try:
            return dataclasses.replace(running.result(), cached=True)
        except ToolchainError as exc:
            # what compiling here again would raise, after as long a compile: a copy, whose
            # traceback is this caller's only (the kept one grew with every caller's frames)
            raise copy.copy(exc.with_traceback(None)) from None
        except Exception:  # noqa: BLE001 - compile it here, raising its error to this caller
            pass

    def build(tmp: Path) -> dict[str, Any]:
        result = tc.compile(source, tmp, name=name, openmp=openmp, flags=flags)
        return {"command": result.command, "seconds": result.seconds, "name": name,
                "toolchain": tc.abi_id(), "specialised_on": specialised_on or {},
                "asp_version": __version__}

    suffix = SOURCE_SUFFIX[lang]
    try:
        try:
            lib = _load(get_cache(), key, build, name, suffix)
        except CacheError as exc:  # unsafe, read-only, noexec...: build where it is safe
            lib = _load(private_cache(str(exc)), key, build, name, suffix)
    except ToolchainError as exc:
        background.failed(key, exc)   # kept only where a retry would fail the same way
        raise
    if not lib.cached:  # what ASP_LOG_LEVEL=DEBUG and `asp -v` promise: every compile
        _log.debug("compiled %s (%s) in %.2f s: %s", name, lang, lib.seconds, lib.path)
    return lib


def load_library(path: Path) -> ctypes.CDLL:
    """``dlopen`` a verified shared object (a seam the fault tests replace)."""
    return ctypes.CDLL(str(path))


def _load(cache: CodeCache, key: str, build: Callable[[Path], dict[str, Any]], name: str,
          suffix: str) -> CompiledLibrary:
    """Get or build ``key`` in ``cache`` and load it; one that verifies but does not load is
    rebuilt once, then a :class:`CacheError`."""
    if on_noexec_mount(cache.root):
        raise CacheError(f"the Asp cache {cache.root} is on a noexec mount, so compiled kernels "
                         "cannot be loaded from it")
    entry, cached = cache.get_or_build(key, build)
    try:
        cdll = load_library(entry.file(f"lib{entry.meta.get('name', name)}.so"))
    except OSError:
        entry, cached = cache.rebuild(entry, build), False
        try:
            cdll = load_library(entry.file(f"lib{entry.meta.get('name', name)}.so"))
        except OSError as exc:
            raise CacheError(f"a freshly built library does not load: {exc}") from None
    stem = entry.meta.get("name", name)
    return CompiledLibrary(cdll, entry.file(f"lib{stem}.so"), entry.file(f"{stem}{suffix}"),
                           key, list(entry.meta.get("command", [])),
                           0.0 if cached else float(entry.meta.get("seconds", 0.0)), cached,
                           float(entry.meta.get("seconds", 0.0)))

"""The on-disk code cache: compiled kernels keyed by everything they were specialised on.

Layout (``ASP_CACHE_DIR`` or the user cache dir, mode 0700)::

    <root>/code/<k[:2]>/<key>/   lib<name>.so, <name>.c, meta.json (sha256 of each file)
    <root>/locks/<key>.lock      cross-process lock: one process compiles, the others wait
    <root>/tmp/                  builds happen here, then one atomic rename publishes them
    <root>/perf.sqlite           autotuning database (asp_core.autotune)

An entry is verified (checksums) before it is loaded; a bad one is rebuilt. The cache refuses to
load code from a directory another user owns or can write to: loading a shared object runs its
code, so such a directory would let that user run code as you.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from asp_core import config
from asp_core.errors import CacheError

__all__ = ["CodeCache", "CacheEntry", "cache_key", "get_cache"]

_LOCK_TIMEOUT = 900.0
META = "meta.json"


def cache_key(**parts: Any) -> str:
    """SHA-256 of the parts, serialised canonically (sorted keys; non-JSON values by repr)."""
    blob = json.dumps(parts, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class CacheEntry:
    """A published, verified cache entry."""

    key: str
    path: Path
    meta: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name


class CodeCache:
    """Content-addressed store of compiled artefacts with locking and verification."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else config.cache_dir()

    # -- safety -----------------------------------------------------------------------------
    def ensure(self) -> Path:
        """Create the root (0700) if needed and refuse unsafe ones; returns the root.

        Runs on every lookup (a few ``stat`` calls, only on a kernel's first call), so a cache
        directory whose permissions change under a running process is still refused.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise CacheError(f"cannot create the Asp cache directory {self.root}: {exc}. "
                             "Set ASP_CACHE_DIR to a writable directory you own.") from None
        st = self.root.stat()
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise CacheError(
                f"the Asp cache directory {self.root} is owned by uid {st.st_uid}, not by you "
                f"(uid {os.getuid()}); refusing to load compiled code from it. Set ASP_CACHE_DIR "
                "to a directory you own.")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise CacheError(
                f"the Asp cache directory {self.root} is writable by other users (mode "
                f"{stat.S_IMODE(st.st_mode):o}); refusing to load compiled code from it. Run "
                f"`chmod 700 {self.root}` or set ASP_CACHE_DIR to a private directory.")
        for sub in ("code", "locks", "tmp"):
            (self.root / sub).mkdir(exist_ok=True, mode=0o700)
        return self.root

    # -- entries ----------------------------------------------------------------------------
    def entry_path(self, key: str) -> Path:
        return self.root / "code" / key[:2] / key

    def lookup(self, key: str) -> CacheEntry | None:
        """The verified entry for ``key``, or None if absent or corrupt."""
        self.ensure()
        path = self.entry_path(key)
        meta_path = path / META
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            files = meta["files"]
            # every file of the entry is checksummed, and nothing else: a meta.json that lists
            # fewer files (or none) would let an unverified library be loaded
            present = {p.name for p in path.iterdir() if p.is_file() and p.name != META}
            if meta.get("key") != key or not files or set(files) != present:
                return None
            for name, digest in files.items():
                if _sha256(path / name) != digest:
                    return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return CacheEntry(key, path, meta)

    def get_or_build(self, key: str, build: Callable[[Path], dict[str, Any]]
                     ) -> tuple[CacheEntry, bool]:
        """Return ``(entry, was_cached)``; on a miss run ``build(tmpdir)`` under the lock.

        ``build`` writes its files into the directory it gets and returns extra metadata. Every
        file it leaves there is checksummed into ``meta.json``; the directory is then renamed into
        place in one step, so readers never see a half-written entry.
        """
        entry = self.lookup(key)
        if entry is not None:
            return entry, True
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.root / "locks" / f"{key}.lock"))
        try:
            with lock.acquire(timeout=_LOCK_TIMEOUT):
                entry = self.lookup(key)
                if entry is not None:
                    return entry, True
                return self._build(key, build), False
        except Timeout:
            raise CacheError(f"waited {_LOCK_TIMEOUT:.0f} s for another process to build cache "
                             f"entry {key[:12]}; remove {lock.lock_file} if no Asp process "
                             "is running") from None

    def _build(self, key: str, build: Callable[[Path], dict[str, Any]]) -> CacheEntry:
        tmp = Path(tempfile.mkdtemp(prefix=f"{key[:12]}-", dir=self.root / "tmp"))
        try:
            extra = build(tmp) or {}
            files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            meta = {"key": key, "files": files, "created": time.time(), **extra}
            (tmp / META).write_text(json.dumps(meta, indent=1, default=repr))
            final = self.entry_path(key)
            final.parent.mkdir(exist_ok=True, mode=0o700)
            if final.exists():  # a corrupt entry: move it aside, never delete under a reader
                final.rename(self.root / "tmp" / f"stale-{key[:12]}-{uuid.uuid4().hex[:8]}")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        entry = self.lookup(key)
        if entry is None:  # pragma: no cover - only if the filesystem lies
            raise CacheError(f"cache entry {final} failed verification right after being written")
        return entry

    # -- maintenance (asp cache ...) ---------------------------------------------------------
    def entries(self) -> list[Path]:
        code = self.root / "code"
        if not code.exists():
            return []
        return sorted(p for d in code.iterdir() if d.is_dir() for p in d.iterdir() if p.is_dir())

    def verify(self) -> tuple[list[Path], list[Path]]:
        """Check every entry; return ``(good, bad)``. Bad entries are removed."""
        good: list[Path] = []
        bad: list[Path] = []
        for path in self.entries():
            (good if self.lookup(path.name) is not None else bad).append(path)
        for path in bad:
            shutil.rmtree(path, ignore_errors=True)
        return good, bad

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file()) \
            if self.root.exists() else 0

    def clear(self) -> int:
        """Remove every entry and temporary file (keeps the perf database); returns the count."""
        n = len(self.entries())
        for sub in ("code", "tmp"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        return n


_caches: dict[Path, CodeCache] = {}


def get_cache() -> CodeCache:
    """The cache for the current ``ASP_CACHE_DIR`` (re-read on each call)."""
    root = config.cache_dir()
    cache = _caches.get(root)
    if cache is None:
        cache = _caches[root] = CodeCache(root)
    return cache


def load_library(path: Path) -> ctypes.CDLL:
    """``dlopen`` a verified shared object."""
    return ctypes.CDLL(str(path))

"""What ``asp cache`` and ``asp doctor`` do to a code cache: list, measure, verify and clear it.

Only what carries Asp's markers is ever removed (an entry's ``.asp-entry``, the root's
``CACHEDIR.TAG``), so a cache directory shared with other files loses none of them.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from asp_core import cache as _cache
from asp_core.cache import ENTRY_MARKER, ROOT_MARKER, CodeCache, _unsafe
from asp_core.errors import CacheError

__all__ = ["entries", "check_own", "problems", "verify", "size", "clear"]

_KEY = re.compile(r"[0-9a-f]{64}")


def entries(cache: CodeCache) -> list[Path]:
    """Entries Asp created (64-hex-digit directories carrying the entry marker)."""
    cache.check_root()
    code = cache.root / "code"
    if not code.is_dir():
        return []
    return sorted(p for d in code.iterdir() if d.is_dir() and not d.is_symlink()
                  for p in _listing(d) if _is_entry(p))


def _listing(folder: Path) -> list[Path]:
    """``folder``'s entries, none when it went meanwhile (a clear in another process removed
    it: ``asp cache`` ended in a traceback)."""
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []


def _is_entry(path: Path) -> bool:
    if not (_KEY.fullmatch(path.name) and path.is_dir() and not path.is_symlink()):
        return False
    try:
        return (path / ENTRY_MARKER).read_text(encoding="utf-8") == path.name
    except (OSError, UnicodeDecodeError):
        return False


def check_own(cache: CodeCache, doing: str) -> None:
    """:class:`CacheError` unless the root is missing or Asp's: marked, or empty (``ensure``
    then marks it); also when it is a file or cannot be looked at."""
    cache.check_root()
    if cache.root.exists() and not (cache.is_marked() or cache.looks_like_asp()):
        raise CacheError(f"{cache.root} is not an Asp cache (it has no {ROOT_MARKER} written "
                         f"by Asp and holds other files); refusing to {doing} it")


def problems(cache: CodeCache) -> list[str]:
    """Why kernels cannot be compiled into or loaded from ``cache``, or it cannot be
    maintained (``asp doctor``); creates nothing in a directory that is not Asp's."""
    try:
        check_own(cache, "verify or clear")
        cache.ensure()
    except CacheError as exc:
        return [str(exc)]
    root = cache.root
    out = []
    if not os.access(root / "tmp", os.W_OK) or not os.access(root / "code", os.W_OK):
        out.append(f"{root} is read-only: new kernels compile into a private temporary cache")
    if _cache.on_noexec_mount(root):
        out.append(f"{root} is on a noexec mount: compiled kernels cannot be loaded from it, "
                   "so they compile into a private temporary cache")
    for sub in ("code", "tmp"):
        why = _unsafe(root / sub, (root / sub).stat())
        if why:
            out.append(why)
    return out


def verify(cache: CodeCache) -> tuple[list[Path], list[Path]]:
    """Check every entry; return ``(good, removed)``: bad entries and build leftovers are
    removed."""
    cache.check_root()
    if not cache.root.exists():
        return [], []
    check_own(cache, "verify")
    cache.ensure()  # an unsafe root is refused, not cleaned
    good: list[Path] = []
    removed: list[Path] = []
    for path in entries(cache):
        if _verified(cache, path):
            good.append(path)
            continue
        # under the lock a compile takes to write the entry: without it, a rebuild under way
        # lost its files, or had its new entry deleted (found bad a moment before)
        with _entry_lock(cache, path.name) as held:
            if not held:
                continue   # a compile of it still under way: it replaces the entry itself
            if _verified(cache, path):
                good.append(path)   # rebuilt meanwhile
            else:
                removed += _remove_entry(cache, path)
    return good, removed + _remove(cache.leftovers())


def _verified(cache: CodeCache, path: Path) -> bool:
    try:
        return cache.lookup(path.name) is not None
    except CacheError:
        return False


@contextmanager
def _entry_lock(cache: CodeCache, key: str) -> Iterator[bool]:
    """Hold entry ``key``'s lock (:meth:`CodeCache.entry_lock`), waiting for a compile that
    holds it; yields False, holding nothing, when it stays held past the cache's timeout."""
    from filelock import Timeout

    lock = cache.entry_lock(key)
    try:
        lock.acquire(timeout=_cache.LOCK_TIMEOUT)
    except Timeout:
        yield False
        return
    except OSError as exc:   # no lock can be taken (a read-only cache): nor can it be removed
        raise CacheError(f"could not lock cache entry {key[:12]} to remove it: {exc}") from None
    try:
        yield True
    finally:
        lock.release()


def _remove_entry(cache: CodeCache, path: Path) -> list[Path]:
    """Remove entry ``path`` (its lock held): first moved aside into ``tmp/`` in one rename,
    so that a removal cut off half-way leaves a leftover the next clean-up finds (killed
    after its marker went, ``asp cache clear`` left a folder neither ``verify`` nor ``clear``
    recognised, for good); returns ``[path]`` when it went."""
    aside = cache.root / "tmp" / f"stale-{path.name[:12]}-{uuid.uuid4().hex[:8]}"
    try:
        aside.parent.mkdir(mode=0o700, exist_ok=True)   # removed by hand: made again
        path.rename(aside)
    except OSError:
        if not path.exists():
            return []   # removed meanwhile (another clear)
        return _remove([path])   # a read-only cache, a tmp/ that is not a folder: in place
    _remove([aside])
    return [path]


def _remove(paths: list[Path]) -> list[Path]:
    """Remove ``paths``; returns those this call removed (a build that finished meanwhile was
    published, not lost).  :class:`CacheError` naming what could not be removed (a read-only
    cache): a report of success would be false."""
    removed, failed = [], []
    for path in paths:
        if not path.exists():
            continue
        errors: list[str] = []

        def note(fn: Any, where: str, exc: Any) -> None:   # exc: an (type, value, tb) < 3.12
            errors.append(f"{where}: {exc[1] if isinstance(exc, tuple) else exc}")

        if path.is_file() and not path.is_symlink():
            try:   # an entry an earlier version moved aside although it was a file
                path.unlink()
            except OSError as exc:
                errors.append(f"{path}: {exc}")
        elif sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=note)
        else:
            shutil.rmtree(path, onerror=note)
        if errors and path.exists():
            failed.append(errors[0])
        else:
            removed.append(path)
    if failed:
        raise CacheError(f"could not remove {len(failed)} of {len(removed) + len(failed)} "
                         f"cache entries or build leftovers: {failed[0]}")
    return removed


def _remove_free_locks(cache: CodeCache) -> None:
    """Remove the entry locks (``locks/<key>.lock``, one per key ever built, failed compiles
    included) that no process holds now: a clear left them all. Each is unlinked while held,
    so no process that takes it later builds under a lock file another has replaced (it
    would build the entry twice at worst: a build publishes by one atomic rename)."""
    from filelock import FileLock, Timeout

    folder = cache.root / "locks"
    if folder.is_symlink() or not folder.is_dir():
        return
    for path in _listing(folder):
        if not (path.suffix == ".lock" and _KEY.fullmatch(path.stem)) or path.is_symlink():
            continue
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except (Timeout, OSError):
            continue   # a compile holds it (or it cannot be told): it stays
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            lock.release()


def size(cache: CodeCache) -> int:
    """Bytes of every file under the cache root."""
    cache.check_root()
    total = 0
    for folder, _, files in os.walk(cache.root):   # a folder gone meanwhile is skipped
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:   # removed by a build or clear under way
                pass
    return total


def clear(cache: CodeCache) -> int:
    """Remove every entry and build leftover (the perf database stays); returns the number of
    entries. Refuses a directory that is not marked as an Asp cache."""
    cache.check_root()
    if not cache.root.exists():
        return 0
    if not cache.is_marked() and cache.looks_like_asp():
        return 0   # empty (``mkdir``/``mktemp -d`` made it): nothing to clear, nothing to refuse
    if not cache.is_marked():
        raise CacheError(f"{cache.root} is not an Asp cache (it has no {ROOT_MARKER} written "
                         "by Asp); refusing to clear it")
    found = entries(cache)
    removed: list[Path] = []
    for path in found:   # under each entry's lock, as verify: not under a compile's feet
        with _entry_lock(cache, path.name) as held:
            if held:
                removed += _remove_entry(cache, path)
    _remove(cache.leftovers())
    _remove_free_locks(cache)
    for prefix in {path.parent for path in found}:   # only the folders the entries were in
        try:
            if not any(prefix.iterdir()):
                prefix.rmdir()
        except OSError:
            pass   # a compile published an entry there meanwhile: it stays
    return len(removed)

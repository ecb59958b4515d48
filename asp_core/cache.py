"""The on-disk code cache: compiled kernels keyed by everything they were specialised on.

Layout (``ASP_CACHE_DIR`` or the user cache dir, mode 0700)::

    <root>/code/<k[:2]>/<key>/   lib<name>.so, <name>.c, meta.json (sha256 of each file)
    <root>/locks/<key>.lock      cross-process lock: one process compiles, the others wait
    <root>/tmp/                  builds happen here, then one atomic rename publishes them
    <root>/perf.sqlite           autotuning database (asp_core.autotune)
    <root>/CACHEDIR.TAG          marks the root as an Asp cache (the cache-directory tag standard)
    <entry>/.asp-entry           marks an entry as created by Asp (holds its key)

An entry is checksum-verified before it is loaded; a bad one is rebuilt. Code is never loaded
from a directory or file another user owns or can write to (loading runs its code as you).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from asp_core import config
from asp_core.errors import CacheError, CacheWarning, CompileError, warn

__all__ = ["CodeCache", "CacheEntry", "cache_key", "get_cache", "private_cache", "cache_file",
           "file_stem", "ROOT_MARKER", "ENTRY_MARKER", "LOCK_TIMEOUT", "on_noexec_mount"]

#: seconds a process waits for the lock of an entry another process is building (at least:
#: longer while a compile may run longer, see :func:`_lock_wait`)
LOCK_TIMEOUT = 900.0
META = "meta.json"
ROOT_MARKER = "CACHEDIR.TAG"
ENTRY_MARKER = ".asp-entry"
_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
        "# This file marks an Asp code cache (asp_core.cache). `asp cache clear` and\n"
        "# `asp cache verify` only ever remove entries and build leftovers that Asp created.\n")
_MAX_STEM = 64


def file_stem(name: str) -> str:
    """``name`` as a safe file name: no separators, at most 64 characters (a long name keeps a
    prefix and gets a hash suffix, so two stay distinct)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "kernel"
    if len(safe) <= _MAX_STEM and safe == name:
        return safe
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{safe[:_MAX_STEM - 13]}_{digest}"


def _unsafe(path: Path, st: os.stat_result) -> str | None:
    """Why loading code from ``path`` would let another user run code as you, or None."""
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return (f"{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"{path} is writable by other users (its group or everyone: mode "
                f"{stat.S_IMODE(st.st_mode):o})")
    return None


def _owner_writable_only(folder: Path) -> None:
    """Take write permission from group and others on the files a build wrote into
    ``folder`` (:func:`_unsafe` refuses any other): their modes follow the umask, and under
    the common ``umask 002`` every entry was refused as "writable by other users", its private
    cache's too, so every kernel ran in Python."""
    for path in folder.iterdir():
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))


def on_noexec_mount(path: Path) -> bool:
    """True when ``path`` is on a file system mounted ``noexec`` (libraries there cannot load)."""
    try:
        return bool(os.statvfs(path).f_flag & getattr(os, "ST_NOEXEC", 0))
    except OSError:
        return False


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


def _well_formed(meta: dict[str, Any]) -> bool:
    """Whether the fields a load reads have the types Asp writes: a ``meta.json`` damaged or
    edited into others passed the checksums (which cover the other files): ``"command": null``
    made the first call of the kernel raise ``TypeError`` in every later process, blamed on the
    plugin, and a string was reported as its characters; a bad entry is rebuilt."""
    command = meta.get("command", [])
    return (isinstance(meta.get("name", ""), str) and isinstance(command, list)
            and all(isinstance(part, str) for part in command))


@dataclass
class CacheEntry:
    """A published, verified cache entry."""

    key: str
    path: Path
    meta: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name


def _lock_wait() -> float:
    """Seconds to wait for another process's build of an entry: :data:`LOCK_TIMEOUT`, or
    longer where ``ASP_COMPILE_TIMEOUT`` lets a compile run longer (the waiter would give up
    on a compile that is still allowed to finish)."""
    return max(LOCK_TIMEOUT, config.compile_timeout() + 300.0)


class CodeCache:
    """Content-addressed store of compiled artefacts with locking and verification."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else config.cache_dir()

    # -- safety -----------------------------------------------------------------------------
    def ensure(self) -> Path:
        """Create the root (0700) if needed and refuse an unsafe one (on every lookup: the
        permissions may change under a running process); returns the root."""
        self.check_root()
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise CacheError(f"cannot create the Asp cache directory {self.root}: {exc}. "
                             "Set ASP_CACHE_DIR to a writable directory you own.") from None
        why = _unsafe(self.root, self.root.stat())
        if why:
            raise CacheError(f"refusing to load compiled code from the Asp cache directory: "
                             f"{why}. Run `chmod 700 {self.root}` if it is yours, or set "
                             "ASP_CACHE_DIR to a private directory you own.")
        # the listing before the marker: another thread or process that made code/ wrote the
        # whole marker first (atomically), so a root that lists more is marked by then
        empty = self.looks_like_asp()
        if not self.is_marked():
            if not empty:
                raise CacheError(f"{self.root} is not an Asp cache: it holds files Asp did not "
                                 f"create and no {ROOT_MARKER} written by Asp. "
                                 f"{self._empty_marker_hint()}Point ASP_CACHE_DIR at a new or "
                                 "empty directory (Asp creates it)")
            tmp = self.root / f"{ROOT_MARKER}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                _write_durably(tmp, _TAG)
                os.replace(tmp, self.root / ROOT_MARKER)
                _sync_directory(self.root)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                # the reason without the temporary file's random name: the message is the
                # key of private_cache's one warning per process
                raise CacheError(f"the Asp cache directory {self.root} is not writable "
                                 f"({exc.strerror or exc}); set ASP_CACHE_DIR to a writable "
                                 "directory you own") from None
        try:
            for sub in ("code", "locks", "tmp"):
                (self.root / sub).mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise CacheError(f"the Asp cache directory {self.root} is not writable ({exc}); "
                             "set ASP_CACHE_DIR to a writable directory you own") from None
        return self.root

    def looks_like_asp(self) -> bool:
        """The existing root is empty, or holds only the marker or markers being written (by
        another thread or process): Asp may make it its cache.  Anything else there is not
        Asp's, whatever its names (a folder ``tmp/`` of the user's must never be taken for build
        leftovers).  A ``CACHEDIR.TAG`` counts only when it is Asp's: the tag is a standard
        that other tools write too (theirs would be overwritten), and Asp's own appears whole
        (written aside, then renamed), so one without Asp's text is never Asp's half-written."""
        return all((p.name == ROOT_MARKER and self.is_marked())
                   or (p.name.startswith(ROOT_MARKER + ".") and p.name.endswith(".tmp"))
                   for p in self.root.iterdir())

    def _empty_marker_hint(self) -> str:
        """A sentence for a root whose marker is empty: no tool writes an empty tag (the standard
        starts it with a signature), so it is a file truncated by a crash, Asp's or another's;
        which one only the user can tell, so Asp names it and leaves the folder alone."""
        try:
            empty = (self.root / ROOT_MARKER).stat().st_size == 0
        except OSError:
            return ""
        return (f"Its {ROOT_MARKER} is empty (cut short by a crash?): if this folder is your "
                "Asp cache, remove it; it holds only code that Asp compiles again. "
                if empty else "")

    def check_root(self) -> None:
        """Raise :class:`CacheError` when the root exists but is not a directory, or cannot
        be looked at (a name too long, no permission)."""
        try:
            is_file = self.root.exists() and not self.root.is_dir()
        except OSError as exc:
            raise CacheError(f"the Asp cache location {self.root} cannot be used: {exc}; "
                             "point ASP_CACHE_DIR at a directory you own") from None
        if is_file:
            raise CacheError(f"the Asp cache location {self.root} is a file, not a directory; "
                             "point ASP_CACHE_DIR at a directory (it is created if missing)")

    def is_marked(self) -> bool:
        """True when the root carries Asp's marker (only then may ``clear`` empty it)."""
        try:
            return "Asp code cache" in (self.root / ROOT_MARKER).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False

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
        self._check_chain(path)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            files = meta["files"]
            # every file of the entry is checksummed, and nothing else: a meta.json that lists
            # fewer files (or none) would let an unverified library be loaded
            present = {p.name for p in path.iterdir() if p.is_file() and p.name != META}
            if (meta.get("key") != key or not files or set(files) != present
                    or not _well_formed(meta)):
                return None
            for name, digest in files.items():
                if _sha256(path / name) != digest:
                    return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return CacheEntry(key, path, meta)

    def _check_chain(self, entry: Path) -> None:
        """:class:`CacheError` unless every directory from the root to ``entry``, and each
        file in it, is yours and writable by nobody else."""
        try:
            for path in [self.root / "code", entry.parent, entry, *entry.iterdir()]:
                why = _unsafe(path, path.lstat())
                if why:
                    raise CacheError(f"refusing to load compiled code: {why}")
        except OSError:
            return  # vanished under us: the checksum pass will call the entry missing

    def get_or_build(self, key: str, build: Callable[[Path], dict[str, Any]]
                     ) -> tuple[CacheEntry, bool]:
        """``(entry, was_cached)``; on a miss ``build(tmpdir)`` writes the files (and returns
        extra metadata) under the lock, and the directory is renamed into place in one step."""
        entry = self.lookup(key)
        return (entry, True) if entry is not None else self._locked_build(key, build)

    def rebuild(self, failed: CacheEntry, build: Callable[[Path], dict[str, Any]]
                ) -> CacheEntry:
        """Rebuild ``failed.key`` (it verified but did not load), unless another process
        rebuilt it meanwhile."""
        return self._locked_build(failed.key, build, failed.meta.get("created"))[0]

    def entry_lock(self, key: str) -> Any:
        """The cross-process lock (a ``filelock.FileLock``) a compile of entry ``key`` holds
        while it builds and publishes the entry; whatever removes the entry takes it too."""
        from filelock import FileLock

        return FileLock(str(self.root / "locks" / f"{key}.lock"))

    def _locked_build(self, key: str, build: Callable[[Path], dict[str, Any]],
                      failed_created: Any = None) -> tuple[CacheEntry, bool]:
        from filelock import Timeout

        lock = self.entry_lock(key)
        wait = _lock_wait()
        try:
            with lock.acquire(timeout=wait):
                entry = self.lookup(key)
                if entry is not None and (failed_created is None or
                                          entry.meta.get("created") != failed_created):
                    return entry, True
                return self._build(key, build), False
        except Timeout:
            raise CacheError(f"waited {wait:.0f} s for another process to build cache "
                             f"entry {key[:12]}; remove {lock.lock_file} if no Asp process "
                             "is running") from None
        except OSError as exc:  # read-only cache or subdirectory, full disk, ...
            # the reason without the file (each key's lock or folder): one warning per process
            raise CacheError(f"cannot write to the Asp cache {self.root}: "
                             f"{exc.strerror or exc}") from None

    def leftovers(self) -> list[Path]:
        """Build directories of killed compiles and entries moved aside (``tmp/``) that no
        running build is using.  A ``tmp/`` or an entry in it that is a symbolic link is not
        Asp's (its builds make real directories): ``verify`` followed a ``tmp`` linked to a
        user's folder and removed the folders there whose names looked like builds."""
        tmp = self.root / "tmp"
        if tmp.is_symlink() or not tmp.is_dir():
            return []
        out = []
        for path in sorted(tmp.iterdir()):
            if path.is_symlink():
                continue
            if _STALE.fullmatch(path.name):
                out.append(path)
            elif (m := _TMP_BUILD.fullmatch(path.name)) and not self._building(m.group(1)):
                out.append(path)
        return out

    def _building(self, prefix: str) -> bool:
        """Is a build of a key starting with ``prefix`` under way (its lock is held)?"""
        from filelock import FileLock, Timeout

        for lock_path in (self.root / "locks").glob(f"{prefix}*.lock"):
            try:
                with FileLock(str(lock_path)).acquire(timeout=0):
                    pass
            except Timeout:
                return True
            except OSError:
                return True  # cannot tell: leave it
        return False

    def _sweep(self) -> None:
        """At this process's first build in the cache, remove the :meth:`leftovers` (a Ctrl-C
        during background compiles left their build folders until someone ran ``asp cache
        verify``)."""
        if self.root in _swept:
            return
        _swept.add(self.root)
        for path in self.leftovers():
            shutil.rmtree(path, ignore_errors=True)

    def _build(self, key: str, build: Callable[[Path], dict[str, Any]]) -> CacheEntry:
        self._sweep()
        tmp = Path(tempfile.mkdtemp(prefix=f"{key[:12]}-", dir=self.root / "tmp"))
        try:
            try:
                extra = build(tmp) or {}
            except CompileError as exc:
                if not tmp.is_dir():
                    # not the code's fault: the compiler's output folder went away under it
                    raise CacheError(f"the build folder {tmp} was removed while a kernel "
                                     "compiled in it (the cache cleared or deleted meanwhile)"
                                     ) from None
                full = next((why for why in _DISK_FULL if why in exc.log), None)
                if full is None:
                    raise
                # nor is a full disk (or quota) under the cache: reported as "a bug" before
                raise CacheError(f"the Asp cache {self.root} has no room for a compiled kernel "
                                 f"({full})") from None
            (tmp / ENTRY_MARKER).write_text(key, encoding="utf-8")
            files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            meta = {"key": key, "files": files, "created": time.time(), **extra}
            (tmp / META).write_text(json.dumps(meta, indent=1, default=repr), encoding="utf-8")
            _owner_writable_only(tmp)
            final = self.entry_path(key)
            final.parent.mkdir(exist_ok=True, mode=0o700)
            if final.is_symlink() or final.exists() and not final.is_dir():
                raise CacheError(f"{final} is not an Asp cache entry (Asp makes directories "
                                 "there); remove it to compile into the cache again")
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


#: build directories (``mkdtemp(prefix=key[:12] + "-")``) and entries moved aside by a rebuild
_TMP_BUILD = re.compile(r"([0-9a-f]{12})-[a-z0-9_]{8}")
_STALE = re.compile(r"stale-[0-9a-f]{12}-[0-9a-f]{8}")
#: cache roots whose build leftovers this process has removed (at its first build there)
_swept: set[Path] = set()

#: what a compiler or linker prints when the disk it writes to is full (ENOSPC, EDQUOT)
_DISK_FULL = ("No space left on device", "Disk quota exceeded")

_caches: dict[Path, CodeCache] = {}


def get_cache() -> CodeCache:
    """The cache for the current ``ASP_CACHE_DIR`` (re-read on each call)."""
    root = config.cache_dir()
    return _caches.get(root) or _caches.setdefault(root, CodeCache(root))


def cache_file(name: str) -> Path:
    """Where Asp keeps ``name`` beside its entries (the tuning database, the toolchain and
    hardware memos): in the configured cache when it is usable, else in this process's private
    cache, as the kernels are.  Never a file of a directory Asp did not create."""
    cache = get_cache()
    try:
        return cache.ensure() / name
    except CacheError as exc:
        return private_cache(str(exc)).root / name


_private: CodeCache | None = None
_warned: set[str] = set()


def private_cache(reason: str) -> CodeCache:
    """A private temporary cache for this process (removed at exit), for when the configured
    one cannot be used safely; warns once per reason."""
    global _private
    if reason not in _warned:
        _warned.add(reason)
        warn(f"asp: {reason.rstrip('.')}; compiling kernels into a private temporary cache "
             "for this process instead", CacheWarning)
    if _private is None or not _private.root.is_dir():
        root = Path(tempfile.mkdtemp(prefix="asp-private-cache-"))
        atexit.register(shutil.rmtree, root, True)
        _private = CodeCache(root)
        _private.ensure()   # marked before cache_file puts a memo there (else it is not Asp's)
    return _private


def _write_durably(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and flush it to the disk before the caller renames it into
    place: without the flush a power cut can leave the renamed name pointing at an empty file,
    and an empty marker locks the user out of their cache."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _sync_directory(path: Path) -> None:
    """Flush a rename in ``path`` to the disk, where the platform allows (not on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; the rename still holds
        pass
    finally:
        os.close(fd)

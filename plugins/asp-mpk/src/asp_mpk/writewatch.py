"""Knowing that a user's arrays were not written since they were last checksummed, without
reading them: the operating system's write tracking.

The functional API (:func:`~asp_mpk.powers.matrix_powers`, :func:`~asp_mpk.powers.spmv`,
:func:`~asp_mpk.cacg.cg`) must notice a matrix changed in place, yet a compressed kernel reads
far less than A's CSR arrays, so even a checksum at memory speed costs more than the kernel
(64 MB against 4.5 ms on 2-D Poisson 1000²).  Linux (6.7 and later) tracks writes for us:
userfaultfd write-protection in *asynchronous* mode marks pages write-protected, the kernel
lifts the protection itself on the first write to a page (no handler thread, no signal, the
writer never waits), and the ``PAGEMAP_SCAN`` ioctl reports which pages were written since.
Wine's emulation of Windows' ``GetWriteWatch`` is built on the same two calls.

:class:`WriteWatch` protects the whole pages inside each array before the caller checksums
it, and :meth:`WriteWatch.unchanged` then answers from one page-table walk per array (about
12 µs in all for 64 MB); the partial pages at each array's ends, which other objects may
share, are compared byte for byte instead.  The per-call check runs in the native module
(``asp_mpk._planner.WriteCheck``) where it is built: called right after a kernel has streamed
the caches away, the Python version cost three times its warm time in cache misses.

It answers "changed" whenever it cannot be sure: a page was written, dropped or unmapped, the
memory is file-backed or shared (another process could write it without our page tables
knowing), the registration vanished (memory freed and mapped again), or after ``fork`` in the
child.  Writes that bypass the page tables cannot be seen: a device or the kernel writing
through pages pinned long-term (``io_uring`` registered buffers, RDMA memory regions, host
memory registered with CUDA) changes the bytes without a write fault.  Set
``ASP_MPK_WATCH_WRITES=0`` for matrices filled that way.  Arrays written before two calls in
a row are checksummed instead of watched (each watched write costs a page fault) until a call
finds them unchanged.

Where the system offers none of this (other kernels and systems, containers that filter the
``userfaultfd`` system call), :func:`watcher` returns None and the checksum is the only check.
``ASP_MPK_WATCH_WRITES=0`` turns watching off.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from asp_core import config

from asp_mpk import native

__all__ = ["WriteWatch", "Watched", "watcher", "MIN_BYTES"]

#: arrays smaller than this in all are watched from the functional API's second call of them
#: (setting a watch up reads /proc/self/maps, which a matrix used once need not pay), and
#: checksummed twice on their first (once more after the copy: cheap at this size)
MIN_BYTES = 1 << 20

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _release(release: str) -> tuple[int, int]:
    """(major, minor) of a kernel release string such as ``6.18.0-1-generic``."""
    major, _, rest = release.partition(".")
    minor = "".join(c for c in rest.split(".")[0].split("-")[0] if c.isdigit())
    return (int(major), int(minor or 0)) if major.isdigit() else (0, 0)


#: the native check asks the kernel's fast written-pages scan (plus mincore), which misread
#: swapped-out pages before Linux 6.10; before that it asks for the full scan
FAST_SCAN = sys.platform == "linux" and _release(os.uname().release) >= (6, 10)
_SYS_USERFAULTFD = {"x86_64": 323, "aarch64": 282}


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (kind << 8) | nr


class _Api(ctypes.Structure):
    _fields_ = [("api", ctypes.c_uint64), ("features", ctypes.c_uint64),
                ("ioctls", ctypes.c_uint64)]


class _Register(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("ioctls", ctypes.c_uint64)]


class _Range(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Protect(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64), ("mode", ctypes.c_uint64)]


class _Region(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64),
                ("categories", ctypes.c_uint64)]


class _Scan(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
        "category_inverted", "category_mask", "category_anyof_mask", "return_mask")]


# linux/userfaultfd.h and linux/fs.h (stable kernel ABI)
_UFFD_API = 0xAA
_UFFD_USER_MODE_ONLY = 1
_FEATURES = (1 << 15) | (1 << 13)             # WP_ASYNC | WP_UNPOPULATED
_UFFDIO_API = _ioc(3, 0xAA, 0x3F, ctypes.sizeof(_Api))
_UFFDIO_REGISTER = _ioc(3, 0xAA, 0x00, ctypes.sizeof(_Register))
_UFFDIO_UNREGISTER = _ioc(2, 0xAA, 0x01, ctypes.sizeof(_Range))
_UFFDIO_WRITEPROTECT = _ioc(3, 0xAA, 0x06, ctypes.sizeof(_Protect))
_REGISTER_MODE_WP = 1 << 1
_PAGEMAP_SCAN = _ioc(3, ord("f"), 16, ctypes.sizeof(_Scan))
_SCAN_CHECK_WPASYNC = 1 << 1
_WRITTEN, _PRESENT, _SWAPPED = 1 << 1, 1 << 3, 1 << 4


@dataclass(eq=False)
class _Pages:
    """One watched page range, shared by every entry that watches it; ``version`` moves on
    whenever a write to it (or to a range overlapping it) is seen."""

    start: int
    end: int
    users: int = 0
    version: int = 0
    scan: _Scan | None = None   # its PAGEMAP_SCAN request, made once


@dataclass(eq=False)
class Watched:
    """What :meth:`WriteWatch.watch` hands back for a set of arrays: their buffers and layouts,
    the page ranges with their versions at watch time, the bytes of the partial pages at the
    arrays' ends, and the native module's copy of all that (``check``, valid while the
    watcher's ``generation`` has not moved)."""

    owner: WriteWatch
    layout: tuple
    pages: list[tuple[_Pages, int]] = field(default_factory=list)
    edges: list[tuple[int, bytes]] = field(default_factory=list)
    check: Any = None
    generation: int = 0


def _layout(arrays: tuple[np.ndarray, ...]) -> tuple:
    return tuple((a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)
                 for a in arrays)


class WriteWatch:
    """The process's userfaultfd, registered in asynchronous write-protect mode, and the page
    ranges it watches.  Use :func:`watcher` (one per process, None where unsupported)."""

    def __init__(self, uffd: int, pagemap: int, libc: ctypes.CDLL) -> None:
        self._uffd = uffd
        self._pagemap = pagemap
        self._libc = libc
        self._ranges: dict[tuple[int, int], _Pages] = {}
        self._closed = False
        #: moves on whenever a write is seen anywhere: a native check made before is then
        #: confirmed once by the Python one (which knows the ranges' versions)
        self.generation = 0
        self._lock = threading.Lock()
        self._vec = (_Region * 2)()

    def _ioctl(self, fd: int, request: int, arg: ctypes.Structure) -> int:
        return int(self._libc.ioctl(fd, request, ctypes.byref(arg)))

    def watch(self, arrays: tuple[np.ndarray, ...]) -> Watched | None:
        """Start watching ``arrays`` (before the caller checksums them: a write after this
        call is seen).  None when any of them cannot be watched exactly."""
        if not all(isinstance(a, np.ndarray) and a.flags.c_contiguous for a in arrays):
            return None
        watched = Watched(self, _layout(arrays))
        maps: list[tuple[int, int, bool]] = []   # read once for all the arrays (in _add)
        with self._lock:
            for a in arrays:
                start, nbytes = a.ctypes.data, a.nbytes
                lo = -(-start // _PAGE) * _PAGE
                hi = max(lo, (start + nbytes) // _PAGE * _PAGE)
                end = start + nbytes
                watched.edges += [(start, ctypes.string_at(start, min(lo, end) - start)),
                                  (hi, ctypes.string_at(hi, max(0, end - hi)))]
                if hi > lo:
                    pages = self._add(lo, hi, maps)
                    if pages is None:
                        self._release_locked(watched)
                        return None
                    watched.pages.append((pages, pages.version))
            watched.generation = self.generation
        mod = native.planner()
        if mod is not None:
            watched.check = mod.WriteCheck(self._pagemap, arrays, _PAGE, FAST_SCAN)
        return watched

    def _add(self, lo: int, hi: int, maps: list[tuple[int, int, bool]]) -> _Pages | None:
        """Watch the pages [lo, hi); ``maps``: the process's mappings, read at the first need
        (:func:`_mappings`) and kept by the caller for the other arrays of one watch."""
        pages = self._ranges.get((lo, hi))
        if pages is None:
            register = _Register(lo, hi - lo, _REGISTER_MODE_WP, 0)
            if not maps:
                maps[:] = _mappings()
            if not _private_anonymous(lo, hi, maps) or self._ioctl(self._uffd, _UFFDIO_REGISTER,
                                                                   register) != 0:
                return None
            pages = self._ranges[(lo, hi)] = _Pages(lo, hi)
        pages.users += 1
        if not self._clean(pages):
            self._written(pages)        # every entry watching these pages moves on; protect them
            if not self._clean(pages):  # not resident or no longer ours: cannot watch
                pages.users -= 1
                self._drop(pages)
                return None
        return pages

    def _protect(self, pages: _Pages) -> bool:
        return self._ioctl(self._uffd, _UFFDIO_WRITEPROTECT,
                           _Protect(pages.start, pages.end - pages.start, 1)) == 0

    def _clean(self, pages: _Pages) -> bool:
        """Whether every page of ``pages`` is resident (or swapped out), registered with us and
        unwritten since it was protected: one region reported by ``PAGEMAP_SCAN`` that covers
        the whole range (a page dropped without a write, e.g. by ``madvise``, splits it)."""
        if pages.scan is None:
            pages.scan = _Scan(ctypes.sizeof(_Scan), _SCAN_CHECK_WPASYNC, pages.start, pages.end,
                               0, ctypes.addressof(self._vec), 2, 0, 0, 0, 0,
                               _WRITTEN | _PRESENT | _SWAPPED)
        if self._libc.ioctl(self._pagemap, _PAGEMAP_SCAN, ctypes.addressof(pages.scan)) != 1:
            return False
        region = self._vec[0]
        cats = region.categories
        return (region.start == pages.start and region.end == pages.end
                and not cats & _WRITTEN and bool(cats & (_PRESENT | _SWAPPED)))

    def unchanged(self, watched: Watched, arrays: tuple[np.ndarray, ...]) -> bool:
        """Whether ``arrays`` are the watched ones (same buffers and layouts) and no byte of
        them can have changed since :meth:`watch`.  When False, the written ranges are
        protected again and moved to a new version, so a fresh :meth:`watch` followed by a
        checksum makes the entry exact again."""
        if self._closed:   # watched by the parent of this forked process
            return False
        if watched.check is not None and watched.generation == self.generation \
                and watched.check.clean(arrays):
            return True
        if _layout(arrays) != watched.layout:
            return False
        for addr, data in watched.edges:
            if data and self._libc.memcmp(addr, data, len(data)) != 0:
                return False
        with self._lock:
            ok = True
            for pages, version in watched.pages:
                if pages.version != version:
                    ok = False
                elif not self._clean(pages):
                    self._written(pages)
                    ok = False
            if ok:
                watched.generation = self.generation
            return ok

    def _written(self, pages: _Pages) -> None:
        self.generation += 1
        for other in self._ranges.values():
            if other.start < pages.end and pages.start < other.end:
                other.version += 1
        self._protect(pages)

    def release(self, watched: Watched) -> None:
        """Stop watching what ``watched`` covers (ranges still used by others stay)."""
        with self._lock:
            self._release_locked(watched)

    def _release_locked(self, watched: Watched) -> None:
        for pages, _ in watched.pages:
            pages.users -= 1
            self._drop(pages)
        watched.pages.clear()

    def _drop(self, pages: _Pages) -> None:
        """Forget ``pages`` once nothing uses them; unregister them unless a watched range
        overlaps them (unregistering would stop that one's tracking; a registration left
        behind costs nothing until someone protects those pages again)."""
        if pages.users > 0 or self._ranges.get((pages.start, pages.end)) is not pages:
            return
        del self._ranges[(pages.start, pages.end)]
        if not self._closed and not any(o.start < pages.end and pages.start < o.end
                                        for o in self._ranges.values()):
            self._ioctl(self._uffd, _UFFDIO_UNREGISTER,
                        _Range(pages.start, pages.end - pages.start))

    def close(self) -> None:
        """Close the descriptors (a forked child's copies: the registrations are the parent's,
        so ``release`` does nothing from now on)."""
        self._closed = True
        self.generation += 1   # no native check vouches for anything any more
        os.close(self._uffd)
        os.close(self._pagemap)


def _mappings() -> list[tuple[int, int, bool]]:
    """``(start, end, private anonymous)`` of each mapping of the process, in address order
    (``/proc/self/maps``: read once a watch, not once an array, 0.4 ms each time)."""
    out = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(v, 16) for v in fields[0].split("-"))
            private = fields[1][3] == "p" and fields[4] == "0" and fields[5:] in ([], ["[heap]"])
            out.append((start, end, private))
    return out


def _private_anonymous(lo: int, hi: int, maps: list[tuple[int, int, bool]]) -> bool:
    """Whether [lo, hi) lies in private anonymous mappings (malloc's heap or mmap'd chunks):
    a file or shared mapping can change without a write through this process's page tables."""
    covered = lo
    for start, end, private in maps:
        if end <= covered or start >= hi:
            continue
        if start > covered or not private:
            return False
        covered = end
        if covered >= hi:
            return True
    return False


_STATE: dict[str, WriteWatch | None] = {}
_STATE_LOCK = threading.Lock()


def watcher() -> WriteWatch | None:
    """The process's :class:`WriteWatch`, opened at first use; None where the system cannot
    watch writes asynchronously (not Linux ≥ 6.7, ``userfaultfd`` filtered or disabled) or
    ``ASP_MPK_WATCH_WRITES=0``."""
    if "watch" not in _STATE:
        with _STATE_LOCK:
            if "watch" not in _STATE:
                _STATE["watch"] = _open()
    return _STATE["watch"]


def _open() -> WriteWatch | None:
    if not config.flag("ASP_MPK_WATCH_WRITES", default=True):
        return None
    nr = _SYS_USERFAULTFD.get(os.uname().machine) if sys.platform == "linux" else None
    if nr is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    libc.memcmp.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    for flags in (os.O_CLOEXEC | os.O_NONBLOCK,
                  os.O_CLOEXEC | os.O_NONBLOCK | _UFFD_USER_MODE_ONLY):  # unprivileged
        uffd = int(libc.syscall(nr, flags))
        if uffd >= 0:
            break
    else:
        return None
    api = _Api(_UFFD_API, _FEATURES, 0)
    handshake = libc.ioctl(uffd, _UFFDIO_API, ctypes.byref(api))
    if handshake != 0 or api.features & _FEATURES != _FEATURES:   # kernel before 6.7
        os.close(uffd)
        return None
    try:
        pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(uffd)
        return None
    return WriteWatch(uffd, pagemap, libc)


def _after_fork_in_child() -> None:
    """A child's page tables are its own: it starts without a watcher (the parent's registrations
    belong to the parent), and opens its own at its first call."""
    watch = _STATE.pop("watch", None)
    if watch is not None:
        watch.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

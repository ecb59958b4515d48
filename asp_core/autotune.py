"""Variant autotuning on real calls: an :class:`Autotuner` hands out one variant per call until
each is timed, then stores the winner and every timing in ``<cache>/perf.sqlite`` in one
transaction (none on the tuning calls), so later processes skip tuning (``ASP_AUTOTUNE``)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from asp_core import config
from asp_core.cache import cache_file
from asp_core.log import Progress, get_logger
from asp_core.errors import CacheError, CacheWarning, warn

__all__ = ["DB_NAME", "PerfDB", "Autotuner", "Tuning"]

_log = get_logger("autotune")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS timings (
    key TEXT NOT NULL, variant TEXT NOT NULL, params TEXT NOT NULL, seconds REAL NOT NULL,
    label TEXT NOT NULL DEFAULT '', recorded REAL NOT NULL);
CREATE INDEX IF NOT EXISTS timings_key ON timings(key);
CREATE TABLE IF NOT EXISTS winners (
    key TEXT PRIMARY KEY, variant TEXT NOT NULL, label TEXT NOT NULL DEFAULT '',
    decided REAL NOT NULL);
"""
#: how long a connection waits for another's lock.  Asp's own transactions last milliseconds,
#: so even many processes storing at once are through within a second or two; a lock held
#: longer is another program's long transaction, and the store that waits for it runs on a
#: kernel's deciding call (30 s stalled the kernel for nothing more than a cache entry)
_BUSY_SECONDS = 10.0
#: the database's file name in a cache directory
DB_NAME = "perf.sqlite"
#: damaged databases kept beside the new one (for a bug report); older ones are removed
_KEEP_SET_ASIDE = 1


def _locked(exc: BaseException) -> bool:
    """Whether SQLite's error says another connection holds the lock ("locked"/"busy")."""
    msg = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg)


def _retry_locked(step: Callable[[], Any]) -> Any:
    """Run ``step``, retrying where SQLite answers "locked"/"busy" without its busy timeout."""
    deadline = time.monotonic() + _BUSY_SECONDS
    delay = 0.005
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (1.0 + random.random()))
        delay = min(delay * 2, 0.2)


def _measured_on() -> str:
    """A short hash of what a timing holds for: the CPU model and its instruction sets, the
    threads a kernel runs on (``OMP_NUM_THREADS``, else the usable cores: ``taskset``), the
    machine, the Asp version and the C compiler (the file it runs and its mtime;
    ``ASP_CFLAGS``). Stored with every key: the caller's tuning keys name the kernel
    and its inputs only, so a winner tuned on another node sharing the home directory, with
    another compiler, another Asp or another thread count was taken as this one's."""
    from asp_core._version import __version__
    from asp_core.hardware import available_cpus, cpu_features, cpu_model, omp_num_threads

    try:
        from asp_core.toolchain import _file_identity, _locate

        cc = _locate("c") or ""
        # the file it runs (cc and gcc, links to one file, had each its own winners)
        compiler = _file_identity(cc) if cc else "no compiler"
    except Exception:  # noqa: BLE001 - ASP_CC naming nothing: no compiler to tell apart
        compiler = "no compiler"
    threads = omp_num_threads() or available_cpus()
    ident = "|".join([platform.machine(), cpu_model() or "unknown-cpu", cpu_features(),
                      f"{threads} threads", __version__, compiler,
                      os.environ.get("ASP_CFLAGS", "")])
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


_F = TypeVar("_F", bound=Callable[..., Any])
_warned: set[str] = set()
#: databases whose write lock stayed held past :data:`_BUSY_SECONDS`: this process stores
#: nothing more there, since each new kernel's store waited the whole timeout again
_locked_out: set[str] = set()


def _stop_storing(path: Path, exc: sqlite3.OperationalError) -> None:
    """Give up storing in ``path`` for this process, with one warning; reads go on (under WAL
    they need no lock), and so do the tuning decisions kept in memory."""
    _locked_out.add(str(path))
    warn(f"asp: the tuning database {path} stayed locked by another connection for "
         f"{_BUSY_SECONDS:g} s ({exc}): its stored winners are used, new tuning results "
         "of this process are not stored", CacheWarning)


def _read_only(path: Path) -> bool:
    """Whether the database at ``path`` may only be read: its directory (where SQLite makes the
    ``-wal`` and ``-shm`` files, even to read a WAL database) or the file is not writable, as in
    a shared cache a site pre-populates and installs read-only (``chmod -R a-w``) or one on a
    read-only mount.  A missing directory is not: :meth:`PerfDB._connect` makes it."""
    if not path.parent.is_dir():
        return False
    return not os.access(path.parent, os.W_OK) or (path.exists() and
                                                   not os.access(path, os.W_OK))


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that reads ``path`` and writes nothing beside it.  A file without a ``-wal``
    log or a hot ``-journal`` is the whole database, opened ``immutable=1`` (no ``-shm``
    needed).  A log left behind (a writer killed, the files copied while in use) holds
    committed results that only SQLite's replay shows (or a journal, the pages a killed
    writer's uncommitted transaction replaced, which only its rollback restores: read
    ``immutable``, its uncommitted winner was served), and replaying writes: the file and its
    log are copied to a private temporary directory, replayed there and read into memory
    (``immutable=1`` would silently drop them, and ``mode=ro`` fails without a ``-shm``)."""
    logs = []
    for suffix in ("-wal", "-journal"):   # a rollback journal (a network file system's) too:
        try:                              # its writer's uncommitted pages, undone by SQLite
            if os.stat(f"{path}{suffix}").st_size > 0:
                logs.append(suffix)
        except OSError:
            pass
    if not logs:
        return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)
    with tempfile.TemporaryDirectory(prefix="asp-perf-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        for suffix in logs:
            shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
        memory = sqlite3.connect(":memory:")
        try:
            with closing(sqlite3.connect(copy)) as disk:
                disk.backup(memory)
        except BaseException:
            memory.close()
            raise
    return memory


def _set_aside_groups(path: Path) -> list[list[Path]]:
    """The damaged copies of ``path`` that :meth:`PerfDB._set_aside` made (each with its
    ``-wal`` and ``-shm``), newest first; only names of exactly that form, so no other file
    is ever taken for one."""
    pattern = re.compile(re.escape(path.name) + r"\.corrupt-(\d+)-(\d+)(?:-wal|-shm)?")
    groups: dict[tuple[int, int, str], list[Path]] = {}
    try:
        found = list(path.parent.iterdir())
    except OSError:
        return []
    for p in found:
        m = pattern.fullmatch(p.name)
        if m and p.is_file() and not p.is_symlink():   # named pid-time
            base = p.name[:m.end(2)]
            groups.setdefault((int(m.group(2)), int(m.group(1)), base), []).append(p)
    return [sorted(groups[k]) for k in sorted(groups, reverse=True)]


def _timing(row: tuple[Any, ...]) -> tuple[str, float, int] | None:
    """A ``timings`` row as ``(variant, seconds, count)``, or None when its cells are not
    what Asp stores (text where a time belongs: a cell damaged, or the row written by another
    program): SQLite keeps any type in any column, and one such row made the first call of
    every kernel tuned under that key fail with ``ValueError``."""
    variant, seconds, count = row
    if not isinstance(variant, str) or not isinstance(seconds, (int, float)):
        return None
    return variant, float(seconds), int(count)


def _corrupt(exc: BaseException) -> bool:
    """Whether SQLite's error says the file is damaged ("malformed", "not a database"): its
    subclasses (locked, read-only, full disk, a foreign schema) are about the moment or the
    place, not the file."""
    return type(exc) is sqlite3.DatabaseError


def _tolerant(default: Any) -> Callable[[_F], _F]:
    """Tuning data is an optimisation: an unusable database (foreign schema, read-only, full
    disk) makes the method return ``default`` and warn once per database; one found damaged
    only once read (a page past the first) is set aside and the method runs once more."""

    def wrap(method: _F) -> _F:
        @functools.wraps(method)
        def run(self: PerfDB, *args: Any, **kwargs: Any) -> Any:
            try:
                try:
                    return method(self, *args, **kwargs)
                except sqlite3.DatabaseError as exc:
                    # damage that opening does not see stayed for good: every later process
                    # warned, and stored nothing, and `asp cache clear --perf` failed on it
                    if not (_corrupt(exc) and self._set_aside()):
                        raise
                return method(self, *args, **kwargs)
            except (sqlite3.Error, OSError) as exc:
                if str(self.path) not in _warned:
                    _warned.add(str(self.path))
                    warn(f"asp: the tuning database {self.path} cannot be used "
                         f"({type(exc).__name__}: {exc}); tuning results are neither "
                         "read nor stored, kernels still run", CacheWarning)
                return default

        return run  # type: ignore[return-value]

    return wrap


#: file systems whose files processes on other hosts open too (``/proc/self/mountinfo``
#: names): SQLite's WAL keeps its index in memory shared by one host's processes only, so on
#: these the database keeps a rollback journal (a home directory on NFS is a cluster's
#: usual cache, ``~/.cache/asp``, shared by jobs on many nodes)
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "ncpfs", "9p", "lustre", "gpfs", "beegfs",
    "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.cephfs", "panfs", "orangefs",
    "pvfs2", "cvfs", "ocfs2", "gfs2", "fuse.s3fs", "fuse.rclone", "fuse.juicefs",
    "fuse.ceph-fuse", "wekafs", "fuse.mfs", "fuse.moosefs", "fuse.gcsfuse", "fuse.lizardfs",
    "davfs", "fuse.davfs2"})


def network_filesystem(path: Path, mountinfo: str = "/proc/self/mountinfo") -> str:
    """The type of the network file system ``path`` is on (:data:`NETWORK_FILESYSTEMS`), else
    "" (also where the mount table cannot be read: not Linux)."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ""
    target = os.path.realpath(path)
    kind = ""
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        # mount points escape blanks, tabs, newlines and backslashes as octal (\040)
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
        # the last mount (in mount order) holding the path is the one seen: a mount at a
        # parent made after one at /home/u/.cache hides it
        if target == point or target.startswith(point.rstrip("/") + "/"):
            kind = rest.split()[0]
    return kind if kind in NETWORK_FILESYSTEMS else ""


def _leave_wal(con: sqlite3.Connection) -> None:
    """Switch a WAL database to a rollback journal where no other connection has it open (the
    switch needs the database to itself); else leave it as it is, without waiting: each read
    and write waited out the busy timeout (10 s) and then gave up on the database."""
    con.execute("PRAGMA busy_timeout=0")
    try:
        con.execute("PRAGMA journal_mode=delete")
    except sqlite3.OperationalError:
        pass   # in use: the next open tries again
    finally:
        con.execute(f"PRAGMA busy_timeout={int(_BUSY_SECONDS * 1000)}")


@functools.lru_cache(maxsize=8)
def _journal_mode(directory: str) -> str:
    """The journal mode of a tuning database in ``directory`` (its mount looked up once)."""
    return "delete" if network_filesystem(Path(directory)) else "wal"


class PerfDB:
    """Timings and winners in SQLite (WAL + busy timeout: safe for concurrent processes);
    never raises for an unusable database, and waits out a write lock held by another
    connection once per process (:meth:`record_many`)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._path = Path(path) if path is not None else None

    @property
    def path(self) -> Path:
        """The database file: the given one, else the cache's (:func:`cache_file`), found on
        each use, so a tuner that never reads nor writes (``ASP_AUTOTUNE=off``) touches no
        directory. Not kept: a tuner lives for many calls, and the cache directory removed (or
        replaced) meanwhile was made again bare by the write, holding only ``perf.sqlite`` and
        no marker, so no later process took it for Asp's cache."""
        return self._path if self._path is not None else cache_file(DB_NAME)

    def _connect(self, path: Path | None = None) -> sqlite3.Connection:
        path = path or self.path
        if self._path is not None:  # the cache's own directory is made by cache_file
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if _read_only(path):  # opened as usual, WAL cannot make its -shm there: nothing reads
            return _open_read_only(path)
        try:
            return self._open(path)
        except sqlite3.DatabaseError as exc:
            if not _corrupt(exc):  # locked, read-only...: not corruption
                raise
            # A corrupted database only loses tuning results: keep it aside and start afresh.
            self._set_aside(path)
            return self._open(path)

    def _set_aside(self, path: Path | None = None) -> bool:
        """Move a damaged database aside (with its ``-wal`` and ``-shm``: a log left behind
        would be replayed into the new file); False when there was nothing to move, or it
        must not be (a read-only cache).  Only the newest ``_KEEP_SET_ASIDE`` damaged copies
        are kept: each process that met damage added one, and they piled up without bound."""
        path = path or self.path
        if _read_only(path):
            return False
        aside = path.with_name(f"{path.name}.corrupt-{os.getpid()}-{time.time():.0f}")
        moved = False
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
                moved = True
            except OSError:
                pass  # absent, or another process moved it first
        try:
            for group in _set_aside_groups(path)[_KEEP_SET_ASIDE:]:
                for old in group:
                    old.unlink(missing_ok=True)
        except OSError:
            pass  # the next one set aside tries again
        return moved

    def set_aside(self) -> list[Path]:
        """The damaged databases kept beside this one (``perf.sqlite.corrupt-PID-TIME``, without
        their ``-wal`` and ``-shm``), newest first: ``asp cache info`` lists them and ``asp
        cache clear --perf`` removes them."""
        return [group[0] for group in _set_aside_groups(self.path)]

    def _open(self, path: Path) -> sqlite3.Connection:
        # IMMEDIATE: writers take the lock up front, so they wait instead of deadlocking
        con = sqlite3.connect(path, timeout=_BUSY_SECONDS, isolation_level="IMMEDIATE")
        journal = _journal_mode(str(path.parent))
        try:
            _retry_locked(lambda: self._prepare(con, journal))
        except BaseException:
            con.close()
            raise
        return con

    @staticmethod
    def _prepare(con: sqlite3.Connection, journal: str) -> None:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0].lower()
        if mode != journal:
            if journal == "wal":
                # a new database only (switching answers "locked" at once under contention,
                # retried; it persists: set once). One kept with a rollback journal stays so:
                # on a network file system the server's own processes see a local one, and
                # switching it back and forth stalled the clients' opens on each other
                if not con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    con.execute("PRAGMA journal_mode=wal")
            else:
                _leave_wal(con)
        con.executescript(_SCHEMA)

    def record(self, key: str, variant: str, seconds: float, params: dict[str, Any] | None = None,
               label: str = "") -> None:
        self.record_many(key, [(variant, seconds, params)], label)

    @_tolerant(None)
    def record_many(self, key: str, rows: list[tuple[str, float, dict[str, Any] | None]],
                    label: str = "", winner: str | None = None) -> None:
        """Store ``(variant, seconds, params)`` rows and the winner in one transaction (a
        connection costs ~10 ms, more than many kernels).  Once the write lock could not be had
        within :data:`_BUSY_SECONDS`, later stores in this process skip the database (each new
        kernel waited the whole timeout again) and say nothing more."""
        now = time.time()
        key = f"{key}@{_measured_on()}"
        path = self.path
        if str(path) in _locked_out:
            return
        if _read_only(path):  # a read-only cache serves its winners; new ones are not kept
            if f"read-only {path}" not in _warned:
                _warned.add(f"read-only {path}")
                warn(f"asp: the tuning database {path} is read-only: its stored "
                     "winners are used, new tuning results are not stored",
                     CacheWarning)
            return
        try:
            with closing(self._connect(path)) as con, con:
                con.executemany("INSERT INTO timings VALUES (?, ?, ?, ?, ?, ?)",
                                [(key, v, json.dumps(p or {}, sort_keys=True, default=repr),
                                  float(t), label, now) for v, t, p in rows])
                if winner is not None:
                    con.execute("INSERT OR REPLACE INTO winners VALUES (?, ?, ?, ?)",
                                (key, winner, label, now))
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                raise
            _stop_storing(path, exc)

    def _select(self, sql: str, *args: Any) -> list[Any]:
        path = self.path
        if not path.exists():  # nothing stored yet: do not create the file to read it
            return []
        with closing(self._connect(path)) as con:
            return con.execute(sql, args).fetchall()

    @_tolerant([])
    def timings(self, key: str) -> list[tuple[str, float, int]]:
        """``(variant, best seconds, number of timings)`` for ``key``, fastest first."""
        rows = self._select(
            "SELECT variant, MIN(seconds), COUNT(*) FROM timings WHERE key=? GROUP BY variant "
            "ORDER BY MIN(seconds)", f"{key}@{_measured_on()}")
        return [row for row in map(_timing, rows) if row is not None]

    @_tolerant(None)
    def winner(self, key: str) -> str | None:
        rows = self._select("SELECT variant FROM winners WHERE key=?", f"{key}@{_measured_on()}")
        return rows[0][0] if rows else None

    def set_winner(self, key: str, variant: str, label: str = "") -> None:
        self.record_many(key, [], label, winner=variant)

    @_tolerant([])
    def summary(self) -> list[tuple[str, str, str]]:
        """``(key, label, winner)`` rows tuned here (:func:`_measured_on`), for ``asp cache
        info``."""
        here = f"@{_measured_on()}"
        return [(k[:-len(here)], label, variant) for k, label, variant in self._select(
            "SELECT key, label, variant FROM winners") if isinstance(k, str) and k.endswith(here)]

    @_tolerant(None)
    def clear(self) -> None:
        """Forget every timing and winner, and remove the damaged databases set aside beside
        it; :class:`CacheError` when that cannot be done (a read-only database): ``asp cache
        clear --perf`` must not report what did not happen."""
        path = self.path
        damaged = [old for group in _set_aside_groups(path) for old in group]
        if not (path.exists() or damaged):
            return
        if _read_only(path):
            raise CacheError(f"could not clear the tuning results in {path}: it is read-only")
        try:
            for old in damaged:
                old.unlink(missing_ok=True)
        except OSError as exc:
            raise CacheError(f"could not remove the damaged tuning database {exc.filename}: "
                             f"{exc.strerror}") from None
        if not path.exists():
            return
        try:
            with closing(self._connect(path)) as con, con:
                con.execute("DELETE FROM timings")
                con.execute("DELETE FROM winners")
        except (sqlite3.Error, OSError) as exc:
            if not (_corrupt(exc) and self._set_aside(path)):  # damaged: cleared by moving it
                raise CacheError(f"could not clear the tuning results in {path}: {exc}"
                                 ) from None


#: variants whose best time is within this factor of the best are timed ``repeats`` times more
#: before the tuner decides: one or two timings cannot order variants a few percent apart on a
#: busy machine, and those are the ones worth ordering right (a 15 % faster matrix-powers
#: kernel lost to a cold first timing)
CLOSE = 1.10


class Autotuner:
    """Picks the fastest of ``variants`` (default first) by timing real calls: :meth:`next`
    says what the coming call runs and :meth:`report` takes its time, or :meth:`tune` times all.
    Each variant is timed ``repeats`` times, then the close contenders (:data:`CLOSE`) as many
    times again; the fastest single timing wins.

    With ``comm`` (mpi4py) tuning is collective, so every rank runs the same winner: rank 0's
    stored winner decides, the slowest rank's time counts (what the job pays), only rank 0
    writes the database, and every rank must report the same variants in the same order.
    """

    def __init__(self, key: str, variants: list[str], *, params: dict[str, dict] | None = None,
                 label: str = "", mode: str | None = None, db: PerfDB | None = None,
                 repeats: int = 1, on_event: Callable[..., None] | None = None,
                 comm: Any = None) -> None:
        if not variants:
            raise ValueError("Autotuner needs at least one variant")
        self.comm = comm
        self._root = comm is None or comm.Get_rank() == 0
        self.key = key
        self.variants = list(variants)
        self.params = params or {}
        self.label = label
        self.mode = mode or config.autotune_mode()
        self.db = db or PerfDB()
        self.repeats = max(1, repeats)
        self.times: dict[str, list[float]] = {}
        self._on_event = on_event or (lambda *a, **k: None)
        self._started: float | None = None
        self._progress: Progress | None = None
        self._shown = 0  # variants already counted in the progress report
        self._pending: list[tuple[str, float, dict | None]] = []
        self.winner: str | None = None
        self.source = ""
        if self.mode == "off" or len(self.variants) == 1:
            self.winner, self.source = self.variants[0], (
                "only variant" if len(self.variants) == 1 else "ASP_AUTOTUNE=off: default")
        elif self.mode == "once" and self._root:
            stored = self.db.winner(key)
            if stored in self.variants:
                self.winner, self.source = stored, "perf database"
        if comm is not None:  # the same variants on every rank, then rank 0's winner everywhere
            from asp_core.mpi import check_same

            check_same(comm, self.variants, "autotuning variants")
            self.winner, self.source = comm.bcast((self.winner, self.source), root=0)
        if self.winner is not None:
            self._on_event("autotune", winner=self.winner, source=self.source,
                           timings=self.db.timings(key) if self.source == "perf database" else [])

    @property
    def done(self) -> bool:
        return self.winner is not None

    def next(self) -> str:
        """The variant the next call should run."""
        if self.winner is not None:
            return self.winner
        self._started = self._started or time.perf_counter()
        # round robin: a burst of load then slows one timing of several variants, not all of one
        fewest = min(self.variants, key=lambda v: len(self.times.get(v, ())))
        if len(self.times.get(fewest, ())) < self.repeats:
            return fewest
        close = self._contenders()
        if close:
            return min(close, key=lambda v: len(self.times[v]))
        return self._decide()

    def _timed(self) -> bool:
        """Whether every variant has its first ``repeats`` timings."""
        return all(len(self.times.get(v, ())) >= self.repeats for v in self.variants)

    def _contenders(self) -> list[str]:
        """Variants within :data:`CLOSE` of the best still short of ``2 * repeats`` timings
        (none while some variant lacks its first ``repeats``, or when one is clearly ahead)."""
        if not self._timed():
            return []
        best = {v: min(self.times[v]) for v in self.variants}
        top = min(best.values())
        close = [v for v in self.variants if best[v] <= CLOSE * top]
        if len(close) < 2:
            return []
        return [v for v in close if len(self.times[v]) < 2 * self.repeats]

    def exclude(self, variant: str, reason: str = "") -> None:
        """Drop ``variant`` (e.g. it failed to build; collectively: on every rank)."""
        if self.winner is not None or variant not in self.variants:
            return
        self.variants.remove(variant)
        self.times.pop(variant, None)
        self._pending = [row for row in self._pending if row[0] != variant]   # nothing stored
        self._on_event("autotune-excluded", variant=variant, reason=reason)
        if len(self.variants) == 1:
            self.winner, self.source = self.variants[0], "only variant left: the others were excluded"
            self._on_event("autotune", winner=self.winner, source=self.source, timings=[])
        elif self._timed() and not self._contenders():
            self._decide()

    def report(self, variant: str, seconds: float, *, agreed: bool = False) -> None:
        """Record one call's time of ``variant``; decides once all are timed. Over ``comm`` the
        slowest rank's time counts (an ``allreduce``) unless ``agreed`` says every rank already
        has the same ``seconds``."""
        if self.winner is not None:
            return
        if self.comm is not None and not agreed:
            from asp_core.mpi import import_mpi

            seconds = self.comm.allreduce(float(seconds), op=import_mpi().MAX)
        self.times.setdefault(variant, []).append(seconds)
        # stored with the winner: a write per call would cost more than the kernels it times
        self._pending.append((variant, seconds, self.params.get(variant)))
        elapsed = time.perf_counter() - (self._started or time.perf_counter())
        timed = sum(1 for v in self.variants if len(self.times.get(v, ())) >= self.repeats)
        if self._root and (elapsed > 1.0 or self._progress is not None):
            self._show(timed, variant)
        if timed == len(self.variants) and not self._contenders():
            self._decide()

    def _show(self, timed: int, variant: str) -> None:
        """Progress once tuning takes over a second: a step per fully timed variant."""
        if self._progress is None:
            self._progress = Progress(f"tuning {self.label or self.key[:12]}",
                                      len(self.variants), log=_log)
        if timed > self._shown:
            best = min(self.times[variant])
            self._progress.advance(f"{variant}: {best * 1e3:.2f} ms", steps=timed - self._shown)
            self._shown = timed

    def _decide(self) -> str:
        best = min(self.variants, key=lambda v: min(self.times.get(v, [float("inf")])))
        self.winner, self.source = best, "tuned now"
        pending, self._pending = self._pending, []
        if self._root:  # one rank stores what the job decided
            self.db.record_many(self.key, pending, self.label, winner=best)
        self._on_event("autotune", winner=best, source=self.source,
                       timings=[(v, min(t), len(t)) for v, t in sorted(
                           self.times.items(), key=lambda kv: min(kv[1]))])
        if self._progress is not None:
            self._progress.close(f"tuned {self.label or self.key[:12]}: {best}")
            self._progress = None
        return best

    def tune(self, run: Callable[[str], float]) -> str:
        """Time every variant with ``run(name) -> seconds`` now; return the winner."""
        while self.winner is None:
            name = self.next()
            if self.winner is not None:
                break
            self.report(name, run(name))
        return self.winner


class Tuning:
    """A specialisation whose variants are being timed on real calls, as plugins see it
    (:meth:`asp_core.Dispatcher.tuning`): a view of its :class:`Autotuner` and of the variants
    built so far, so a plugin can steer tuning (drop a candidate) without the core's internals."""

    __slots__ = ("_tuner", "built", "_variant")

    def __init__(self, tuner: Autotuner, built: Mapping[str, Callable[..., Any]],
                 variant: Callable[[str], Any]) -> None:
        self._tuner = tuner
        #: the variants built so far, name -> callable (read-only, default first)
        self.built = built
        self._variant = variant

    def prepare(self, name: str) -> None:
        """Run phase 4's ``materialise`` of candidate ``name`` now, on this thread (e.g. a
        plugin's background thread), so the call that first times it only builds it: a
        plan built there costs that call its time (asp-mpk: 0.5 s of BCSR blocks and PA1
        closures on a 1M-row matrix). Errors are left to that build, which reports them."""
        try:
            self._variant(name)
        except Exception:  # noqa: BLE001 - the build of the same variant raises it again
            pass

    @property
    def done(self) -> bool:
        """The winner is chosen (the next call binds it)."""
        return self._tuner.done

    @property
    def winner(self) -> str | None:
        """The chosen variant's name, None while timing."""
        return self._tuner.winner

    @property
    def candidates(self) -> tuple[str, ...]:
        """The variants still in the running (default first)."""
        return tuple(self._tuner.variants)

    @property
    def timings(self) -> dict[str, tuple[float, ...]]:
        """Seconds of each call timed so far, per variant timed."""
        return {name: tuple(t) for name, t in self._tuner.times.items()}

    def exclude(self, name: str, reason: str = "") -> None:
        """Drop candidate ``name`` for this process (recorded with ``reason`` for ``asp
        explain``; nothing is stored); the last one left wins, and once every remaining
        candidate is timed the fastest does. No effect once :attr:`done`."""
        self._tuner.exclude(name, reason)

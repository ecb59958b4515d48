"""MPI helpers shared by the distributed specializers: aborting the whole job when one rank
fails, collective argument checks, communication counters, the one halo exchange, the block
split. Asp runs on mpi4py over the user's MPI, imported on first use, never at import time.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import hashlib
import numbers
import os
import shutil
import sys
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Union, overload

import numpy as np

__all__ = ["MPI_INSTALL_HINT", "MPIUnavailable", "import_mpi", "world", "fatal_errors",
           "abort_on_uncaught", "abort_caught",
           "agree", "check_same", "check_root", "agree_call", "call_digest", "CommStats",
           "block_range", "find_mpiexec", "HaloExchange"]

MPI_INSTALL_HINT = "pip install 'asp-core[mpi]'  (installs mpi4py and the mpich wheel)"

class MPIUnavailable(ImportError):
    """mpi4py (or an MPI library under it) cannot be imported."""


def import_mpi() -> Any:
    """``mpi4py.MPI``, imported on first use; :class:`MPIUnavailable` names the fix."""
    try:
        from mpi4py import MPI
    except ImportError as exc:  # mpi4py missing, or its MPI library missing
        raise MPIUnavailable(f"distributed runs need mpi4py and an MPI library ({exc}); "
                             f"install them with: {MPI_INSTALL_HINT}") from exc
    return MPI


def world() -> Any:
    """``MPI.COMM_WORLD`` (and :func:`abort_on_uncaught` installed)."""
    comm = import_mpi().COMM_WORLD
    abort_on_uncaught(comm)
    return comm


_hook_comm: list[Any] = []


def abort_on_uncaught(comm: Any = None) -> None:
    """Make an uncaught exception on any rank end every rank within seconds (``comm.Abort``
    after the traceback), instead of leaving the others hanging in a collective until a batch
    timeout. Installed once per process, on the largest communicator it is given (one of
    ``COMM_SELF`` first must not leave a later ``COMM_WORLD`` run unguarded);
    ``ASP_MPI_ABORT_ON_ERROR=0`` keeps Python's default.
    """
    from asp_core import config

    if not config.flag("ASP_MPI_ABORT_ON_ERROR", default=True):
        return
    comm = comm if comm is not None else import_mpi().COMM_WORLD
    if _hook_comm:
        if _rank_size(comm)[1] > _rank_size(_hook_comm[0])[1]:
            _hook_comm[0] = comm
        return
    _hook_comm.append(comm)
    previous = sys.excepthook

    def hook(etype: Any, exc: BaseException, tb: Any) -> None:
        previous(etype, exc, tb)
        abort_caught(etype)

    sys.excepthook = hook


def abort_caught(etype: type[BaseException], detail: str = "") -> None:
    """What :func:`abort_on_uncaught`'s hook does, for an exception of type ``etype`` that a
    runner of the script caught instead of letting it end the process (``asp explain`` reports
    the kernels after it): end every rank (``comm.Abort``, after ``detail`` on stderr), since
    the others may wait for this one in a collective. Returns when the hook is not installed
    (or turned off), as Python would then hang too; does nothing on one rank. A Ctrl-C
    (``KeyboardInterrupt``) aborts too, with status 130: one reaching a single rank (a
    ``kill -INT`` of one process) left it waiting in ``MPI_Finalize`` and the others in the
    next halo exchange, for good."""
    if _hook_comm and _rank_size(_hook_comm[0])[1] > 1:
        interrupted = issubclass(etype, KeyboardInterrupt)
        _abort(_hook_comm[0], 130 if interrupted else 1, f"uncaught {etype.__name__}, "
               "aborting all ranks (ASP_MPI_ABORT_ON_ERROR=0 turns this off)\n" + detail)


def _rank_size(comm: Any) -> tuple[int, int]:
    try:
        return int(comm.Get_rank()), int(comm.Get_size())
    except Exception:  # pragma: no cover - a broken communicator object
        return -1, -1


def _abort(comm: Any, code: int, message: str) -> None:
    rank, size = _rank_size(comm)
    sys.stdout.flush()
    sys.stderr.write(f"asp[mpi] rank {rank}/{size}: {message}")
    sys.stderr.flush()
    # the launcher forwards a rank's output through a pipe and stops reading it when the job
    # aborts: give it a moment, or the traceback can be lost
    time.sleep(0.2)
    comm.Abort(code)  # does not return


class fatal_errors(contextlib.ContextDecorator):  # noqa: N801 - ``with fatal_errors(comm):``
    """Abort the whole job (``comm.Abort``, after the traceback) when the body raises on any
    rank, so no other rank waits forever in a collective; a context manager or, called, a
    decorator. ``SystemExit(0)`` passes through."""

    def __init__(self, comm: Any = None, exit_code: int = 1) -> None:
        self.comm = comm
        self.exit_code = int(exit_code)

    def __enter__(self) -> Any:
        if self.comm is None:
            self.comm = world()
        return self.comm

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            return
        _abort(self.comm, self.exit_code, f"fatal error, aborting all ranks: {etype.__name__}: "
               f"{exc}\n" + "".join(traceback.format_exception(etype, exc, tb)))


def agree(comm: Any, error: str | None, exc_type: type[Exception] = ValueError) -> None:
    """Collective: raise ``exc_type`` on every rank, naming each failing rank's message, if
    ``error`` (None when this rank's checks passed) is set on any rank."""
    bad = [(r, e) for r, e in enumerate(comm.allgather(error)) if e is not None]
    if bad:
        raise exc_type("; ".join(f"rank {r}: {e}" for r, e in bad))


def check_same(comm: Any, value: Any, what: str) -> Any:
    """Collective: ``value`` must be equal on all ranks, else ValueError on all ranks.

    Numbers compare by kind and value (``np.float64(0.1)`` on one rank agrees with ``0.1`` on
    another, nan with nan, so a bad value reaches its own check on every rank alike), tuples
    and lists item by item, strings by ``==``, anything else by its repr."""
    values = comm.allgather(value)
    first = _comparable(values[0])
    if any(_comparable(v) != first for v in values[1:]):
        listing = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
        raise ValueError(f"mismatched {what} across ranks ({listing}); every rank must pass "
                         f"the same {what}")
    return values[0]


@overload
def check_root(comm: Any, root: Any) -> int: ...
@overload
def check_root(comm: Any, root: Any, *, optional: Literal[True]) -> int | None: ...


def check_root(comm: Any, root: Any, *, optional: bool = False) -> int | None:
    """Collective: ``root`` the same rank of ``comm`` on every rank (or None on every rank,
    where ``optional``: "every rank"), else ValueError on all ranks (a gather to another root
    on each rank waited forever; MPI takes -1 as "no process" and would send nothing)."""
    root = check_same(comm, root, "root")
    if root is None and optional:
        return None
    if isinstance(root, (bool, np.bool_)) or not isinstance(root, numbers.Integral) \
            or not 0 <= int(root) < comm.Get_size():
        raise ValueError(f"root must be a rank in 0..{comm.Get_size() - 1}, got {root!r}")
    return int(root)


def _comparable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, numbers.Integral):
        return ("int", int(value))
    if isinstance(value, numbers.Real):
        return ("real", float(value).hex())
    return value if value is None or isinstance(value, (str, bytes)) else ("repr", repr(value))


def agree_call(comm: Any, items: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None,
               error: BaseException | None = None, *, what: str = "call",
               stats: CommStats | None = None, digest: int | None = None) -> None:
    """Collective, ONE small ``Allreduce`` when all is well: raise the same error on every rank
    when this call's arguments were refused on some rank or are not the same on all of them.

    For runners called many times with arguments that must agree across ranks (each sweep of a
    distributed stencil), where :func:`check_same`'s allgather of every value would cost a
    pickled message per rank per call. ``items`` maps a label to a value that must be the same
    on every rank (``None`` when the rank's own checks failed); ``error`` is the exception this
    rank's local checks raised. Each rank reduces a 62-bit digest of its items (and -digest,
    so one ``MIN`` gives the smallest and the largest) and a failure flag; only when they differ
    do the ranks allgather what they saw, to name it:

    * a local failure on any rank raises the first failing rank's exception type on every rank
      (``ValueError`` for one that is not built in), ``"<what>: rank 1: <message>"``, chained to
      the original on the rank that failed;
    * otherwise ``ValueError("<what>: mismatched <label> across ranks (rank 0: ..., rank 1:
      ...)")`` for each label whose values differ.

    Values compare exactly, as a specialisation key does: numbers by type and bits (a NumPy
    float32 constant and a Python float give different generated code), tuples and lists item
    by item, arrays by dtype, shape and contents, strings, bytes and None by value; any other
    object by its type only (its repr may hold an address, which differs per process). A string
    is shown as it is, so a long value that is exact as text (a repr) can travel as one, which
    is also the cheapest form to digest. Counts one reduction in ``stats``.

    A runner that keeps :func:`call_digest` of its items (memoised on a key it computes anyway)
    passes it as ``digest`` and ``items`` as a function returning them, called only when the
    ranks disagree.
    """
    if error is not None or items is None:
        digest = 0
    elif digest is None:
        digest = call_digest(items() if callable(items) else items)
    mpi = import_mpi()
    buf = np.array([digest, -digest, -int(error is not None or items is None)], dtype=np.int64)
    comm.Allreduce(mpi.IN_PLACE, buf, op=mpi.MIN)
    if stats is not None:
        stats.reduction()
    if buf[2] == 0 and buf[0] == -buf[1]:
        return
    # the error path: every rank learns what each one saw (cost no longer matters)
    if callable(items):
        try:
            items = items()
        except Exception as exc:  # noqa: BLE001 - it worked for the digest; report, not hang
            items = {"arguments": f"<{type(exc).__name__}: {exc}>"}
    seen = None if items is None else {k: (_shown(v), repr(_digestible(v)))
                                       for k, v in items.items()}
    mine = None if error is None else (type(error).__name__, str(error))
    if mine is None and items is None:
        mine = ("ValueError", "no arguments to check")
    gathered = comm.allgather((mine, seen))
    failed = [(r, m) for r, (m, _) in enumerate(gathered) if m is not None]
    if failed:
        by_message: dict[str, list[int]] = {}
        for r, (_, message) in failed:
            by_message.setdefault(message, []).append(r)
        kind = getattr(builtins, failed[0][1][0], None)
        if not (isinstance(kind, type) and issubclass(kind, Exception)):
            kind = ValueError
        raise kind(f"{what}: " + "; ".join(f"{_ranks(rs)}: {m}" for m, rs in by_message.items())
                   ) from error
    problems = []
    absent = ("(absent)", "")
    for label in dict.fromkeys(k for _, s in gathered for k in (s or {})):
        values = [(s or {}).get(label, absent) for _, s in gathered]
        if any(v[1] != values[0][1] for v in values[1:]):
            by_value: dict[str, list[int]] = {}
            for r, (text, key) in enumerate(values):
                by_value.setdefault(key, []).append(r)
            problems.append(f"mismatched {label} across ranks (" + ", ".join(
                f"{_ranks(rs)}: {values[rs[0]][0]}" for rs in by_value.values()) + ")")
    raise ValueError(f"{what}: " + "; ".join(problems) + "; every rank must make the same call")


def call_digest(items: Mapping[str, Any]) -> int:
    """The 62-bit digest :func:`agree_call` reduces: the same in every process for equal items
    (labels and values, in order)."""
    raw = repr(tuple((k, _digestible(v)) for k, v in items.items())).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little") >> 2


def _digestible(value: Any, depth: int = 0) -> Any:
    """``value`` as a structure whose repr is the same in every process for equal values (see
    :func:`agree_call`). The exact built-in types come first: this runs on every call. Dicts,
    ``SimpleNamespace`` and dataclass instances count by their contents (by their type alone,
    a kernel constant ``self.d["a"]`` that differed on one rank went unnoticed), to a depth."""
    t = type(value)
    if t is str or t is int or t is bool or value is None or t is bytes:
        return value   # their reprs are exact and tell the types apart
    if t is float:
        return ("float", value.hex())
    if depth > 8:   # nested deeper (or a cycle): by type
        return ("object", t.__module__, t.__qualname__)
    if t is tuple or t is list or isinstance(value, (tuple, list)):
        return tuple([_digestible(v, depth + 1) for v in value])
    if isinstance(value, dict):
        return ("dict", tuple(sorted(((repr(_digestible(k, depth + 1)), _digestible(v, depth + 1))
                                      for k, v in value.items()), key=lambda kv: kv[0])))
    if isinstance(value, types.SimpleNamespace):
        return (t.__module__, t.__qualname__, _digestible(vars(value), depth + 1))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (t.__module__, t.__qualname__, _digestible(
            {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, depth + 1))
    if isinstance(value, np.generic) and value.dtype.kind in "fc":
        return (t.__name__, value.tobytes())
    if isinstance(value, (bool, np.bool_)):
        return (t.__name__, bool(value))
    if isinstance(value, numbers.Integral):
        return (t.__name__, int(value))
    if isinstance(value, numbers.Real):
        return (t.__name__, float(value).hex())
    if isinstance(value, numbers.Complex):
        return (t.__name__, float(value.real).hex(), float(value.imag).hex())
    if isinstance(value, np.ndarray):
        contents = None if value.dtype.kind == "O" else hashlib.blake2b(
            np.ascontiguousarray(value).tobytes(), digest_size=16).digest()
        return ("ndarray", value.dtype.str, value.shape, contents)
    if isinstance(value, np.dtype):
        return ("dtype", value.str)
    if isinstance(value, (str, bytes)):
        return (t.__name__, str(value) if isinstance(value, str) else bytes(value))
    return ("object", t.__module__, t.__qualname__)


def _shown(value: Any, limit: int = 120) -> str:
    """``value`` for an error message (the repr, shortened; a string as it is)."""
    try:
        text = value if type(value) is str else repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real problem
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _ranks(ranks: list[int]) -> str:
    """``rank 1`` / ``ranks 0, 2`` (a long list shortened)."""
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    listed = ", ".join(map(str, ranks[:8]))
    return f"ranks {listed}" + (f", ... ({len(ranks)} ranks)" if len(ranks) > 8 else "")


@dataclass
class CommStats:
    """What one rank sent: messages and bytes, exchange rounds and global reductions, the
    figures communication-avoiding algorithms are judged by (counted by the algorithms, so
    set-up traffic is excluded)."""

    messages: int = 0
    bytes: int = 0
    exchanges: int = 0
    reductions: int = 0
    setup_messages: int = 0

    def message(self, nbytes: int) -> None:
        self.messages += 1
        self.bytes += int(nbytes)

    def reduction(self, n: int = 1) -> None:
        self.reductions += n


#: What a :class:`HaloExchange` message carries from (or into) each array: a box (tuple of
#: slices), or a 1-D integer array of positions along the last axis.
Selection = Union[tuple[slice, ...], np.ndarray]


class HaloExchange:
    """Collective: one rank's neighbour exchange, fixed once, run many times (stencil grids and
    MPK vectors both use it).

    ``sends[q]`` selects what goes to rank ``q``, ``recvs[q]`` where rank ``q``'s values land.
    All arrays of one exchange (one dtype) travel packed in ONE message per peer, so the message
    count does not grow with the number of arrays. :meth:`start` posts and returns, so work that
    needs no halo overlaps the transfer; :meth:`finish` waits and unpacks. Buffers are reused
    per dtype and shapes, so one exchange must finish before the next starts.
    """

    def __init__(self, comm: Any, sends: Mapping[int, Selection], recvs: Mapping[int, Selection],
                 *, tag: int = 7300) -> None:
        size = int(comm.Get_size())
        self.comm = comm
        self.tag = int(tag)
        self.sends = {self._peer(q, size): self._selection(sel) for q, sel in sends.items()}
        self.recvs = {self._peer(q, size): self._selection(sel) for q, sel in recvs.items()}
        self._buffers: dict[tuple, tuple[list, list]] = {}
        self._pending: tuple[list, list, tuple[np.ndarray, ...]] | None = None
        self._waitall: Any = None  # MPI.Request.Waitall, looked up at the first exchange

    @staticmethod
    def _peer(q: Any, size: int) -> int:
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 0 <= q < size:
            raise ValueError(f"HaloExchange: peer {q!r} is not a rank of this communicator "
                             f"(0..{size - 1})")
        return int(q)

    @staticmethod
    def _selection(sel: Any) -> Selection:
        if isinstance(sel, tuple) and all(isinstance(s, slice) for s in sel):
            return sel
        idx = np.asarray(sel)
        if idx.ndim != 1 or (idx.dtype.kind not in "iu" and idx.size):
            raise TypeError("HaloExchange: a selection is a tuple of slices or a 1-D integer "
                            f"array, got {type(sel).__name__} {getattr(idx, 'shape', '')}")
        return np.ascontiguousarray(idx, dtype=np.intp)

    @property
    def active(self) -> bool:
        """An exchange has started and not finished."""
        return self._pending is not None

    def _views(self, selections: dict[int, Selection], arrays: tuple[np.ndarray, ...],
               dtype: np.dtype) -> list:
        """Per peer: (peer, buffer, box or None, indices or None, a buffer view per array)."""
        out = []
        for q, sel in selections.items():
            box = sel if isinstance(sel, tuple) else None
            shapes = [a[sel].shape if box is not None else a.shape[:-1] + (len(sel),)
                      for a in arrays]
            sizes = [int(np.prod(s)) for s in shapes]
            buf = np.empty(sum(sizes), dtype=dtype)
            ends = np.cumsum(sizes)
            views = [buf[e - n:e].reshape(s) for s, n, e in zip(shapes, sizes, ends)]
            out.append((q, buf, box, None if box is not None else sel, views))
        return out

    def start(self, *arrays: np.ndarray, stats: CommStats | None = None) -> None:
        """Pack ``arrays`` and post the receives and sends (non-blocking)."""
        if self._pending is not None:
            raise RuntimeError("HaloExchange.start: the previous exchange has not finished; "
                               "call finish() first (its buffers are reused)")
        if not arrays:
            raise TypeError("HaloExchange.start needs at least one array")
        try:
            dtype = arrays[0].dtype
            # a mixed-dtype call makes a shorter key, which no stored key equals
            key = (len(arrays), dtype, *[a.shape for a in arrays if a.dtype == dtype])
        except AttributeError:
            key = ()
        bufs = self._buffers.get(key)
        if bufs is None:
            if len(key) != len(arrays) + 2 or not all(isinstance(a, np.ndarray) for a in arrays):
                raise TypeError("HaloExchange: one exchange moves numpy arrays of one dtype, "
                                f"got {[getattr(a, 'dtype', type(a).__name__) for a in arrays]}")
            bufs = self._buffers[key] = (self._views(self.recvs, arrays, dtype),
                                         self._views(self.sends, arrays, dtype))
            self._waitall = import_mpi().Request.Waitall
        recv, send = bufs
        comm, tag = self.comm, self.tag
        reqs = [comm.Irecv(buf, source=q, tag=tag) for q, buf, _, _, _ in recv]
        for q, buf, box, idx, views in send:
            if box is not None:
                for a, v in zip(arrays, views):  # pack straight into the message buffer
                    v[...] = a[box]
            else:
                for a, v in zip(arrays, views):
                    a.take(idx, axis=-1, out=v)
            reqs.append(comm.Isend(buf, dest=q, tag=tag))
            if stats is not None:
                stats.message(buf.nbytes)
        if stats is not None:
            stats.exchanges += 1
        self._pending = (reqs, recv, arrays)

    def finish(self) -> None:
        """Wait for the messages of :meth:`start` and unpack the received values."""
        if self._pending is None:
            raise RuntimeError("HaloExchange.finish: no exchange has started")
        reqs, recv, arrays = self._pending
        self._pending = None
        self._waitall(reqs)
        for _, _, box, idx, views in recv:
            if box is not None:
                for a, v in zip(arrays, views):
                    a[box] = v
            else:
                for a, v in zip(arrays, views):
                    a[..., idx] = v

    def exchange(self, *arrays: np.ndarray, stats: CommStats | None = None) -> None:
        """Collective: :meth:`start` then :meth:`finish`."""
        self.start(*arrays, stats=stats)
        self.finish()


def block_range(n: int, parts: int, index: int) -> tuple[int, int]:
    """``[lo, hi)`` of part ``index`` of ``range(n)`` split into ``parts`` near-equal blocks
    (the first ``n % parts`` get one more; blocks may be empty)."""
    if parts < 1 or not 0 <= index < parts:
        raise ValueError(f"block_range: need 0 <= index < parts, got index={index}, "
                         f"parts={parts}")
    base, extra = divmod(int(n), int(parts))
    lo = index * base + min(index, extra)
    return lo, lo + base + (1 if index < extra else 0)


def find_mpiexec() -> str | None:
    """``mpiexec`` next to the running Python (the mpich wheel puts it there), else on PATH."""
    here = Path(sys.executable).parent
    for cand in (here / "mpiexec", here / "mpirun"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which("mpiexec") or shutil.which("mpirun")

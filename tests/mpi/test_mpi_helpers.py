"""asp_core.mpi without mpiexec: partitioning, collective checks, the abort wrapper, imports."""

from __future__ import annotations

import builtins
import subprocess
import sys

import numpy as np
import pytest

from asp_core import mpi
from pytest_asp.mpi import run_mpi


class FakeComm:
    """Enough of a communicator for the helpers: allgather of preset values, Abort recorded."""

    def __init__(self, values=None, rank=0):
        self.values = values
        self.rank = rank
        self.aborted = None

    def allgather(self, value):
        return list(self.values) if self.values is not None else [value]

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return len(self.values) if self.values is not None else 1

    def Abort(self, code):
        self.aborted = code


@pytest.mark.parametrize("n,parts", [(10, 3), (2, 3), (0, 2), (7, 7), (100, 1)])
def test_mpi_block_range_tiles_the_range(n, parts):
    blocks = [mpi.block_range(n, parts, i) for i in range(parts)]
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    sizes = [hi - lo for lo, hi in blocks]
    assert max(sizes) - min(sizes) <= 1


def test_mpi_block_range_rejects_bad_index():
    with pytest.raises(ValueError, match="index"):
        mpi.block_range(5, 2, 2)


def test_mpi_agree_raises_the_same_message_everywhere():
    mpi.agree(FakeComm([None, None]), None)
    with pytest.raises(ValueError, match="rank 1: bad shard; rank 2: worse"):
        mpi.agree(FakeComm([None, "bad shard", "worse"]), None)


def test_mpi_check_same_names_every_rank():
    assert mpi.check_same(FakeComm([3, 3]), 3, "width") == 3
    with pytest.raises(ValueError, match=r"mismatched width across ranks \(rank 0: 3, rank 1: 4\)"):
        mpi.check_same(FakeComm([3, 4]), 3, "width")


def test_mpi_check_same_compares_numbers_by_value():
    """A NumPy scalar on one rank and a Python number on another agree (their reprs differ);
    nan agrees with nan, so the value's own check fails on every rank alike."""
    nan = float("nan")
    for values in ([np.float64(1e-3), 1e-3], [(2, np.int64(3)), (2, 3)], [nan, np.nan],
                   [("a", None), ["a", None]]):
        assert mpi.check_same(FakeComm(values), values[0], "value") is values[0]
    for values in ([True, 1], [1, 1.0], [1e-3, 1e-3 + 1e-18], ["a", "b"], [(1, 2), (1, 2, 3)]):
        with pytest.raises(ValueError, match="mismatched value"):
            mpi.check_same(FakeComm(values), values[0], "value")


def test_mpi_fatal_errors_aborts_with_a_message(capsys):
    comm = FakeComm([0, 1], rank=1)
    with pytest.raises(RuntimeError):  # the fake Abort returns; a real one ends the process
        with mpi.fatal_errors(comm, exit_code=5):
            raise RuntimeError("shard is corrupt")
    assert comm.aborted == 5
    err = capsys.readouterr().err
    assert "asp[mpi] rank 1/2: fatal error, aborting all ranks: RuntimeError: shard is corrupt" \
        in err


def test_mpi_fatal_errors_as_decorator_and_clean_exit():
    comm = FakeComm([0])

    @mpi.fatal_errors(comm)
    def fine():
        return 42

    assert fine() == 42
    with pytest.raises(SystemExit):
        with mpi.fatal_errors(comm):
            raise SystemExit(0)  # a clean exit passes through: it is not a fault
    assert comm.aborted is None


def test_mpi_missing_mpi4py_names_the_install_command(monkeypatch):
    real_import = builtins.__import__

    def no_mpi(name, *args, **kwargs):
        if name.startswith("mpi4py"):
            raise ImportError("No module named 'mpi4py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpi)
    with pytest.raises(mpi.MPIUnavailable, match=r"pip install 'asp-core\[mpi\]'"):
        mpi.import_mpi()


def test_mpi_plugins_do_not_import_mpi4py():
    code = ("import sys, asp_core, asp_core.mpi, asp_stencil.distributed, asp_gmm.distributed, "
            "asp_mpk.distributed; from asp_core.plugins import get_registry; get_registry(); "
            "print('mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_mpi_find_mpiexec_and_bad_nprocs(monkeypatch):
    path = mpi.find_mpiexec()
    if path is None:
        with pytest.raises(mpi.MPIUnavailable, match="mpiexec not found"):
            run_mpi("x.py", 2)
    else:
        with pytest.raises(ValueError, match="nprocs"):
            run_mpi("x.py", 0)


def test_mpi_comm_stats_counts():
    st = mpi.CommStats()
    st.message(80)
    st.message(16)
    st.reduction()
    assert (st.messages, st.bytes, st.reductions) == (2, 96, 1)


def test_mpi_halo_exchange_rejects_bad_peers_and_selections():
    comm = FakeComm([0, 0])
    with pytest.raises(ValueError, match="peer 2 is not a rank"):
        mpi.HaloExchange(comm, {2: (slice(0, 1),)}, {})
    with pytest.raises(TypeError, match="tuple of slices or a 1-D integer array"):
        mpi.HaloExchange(comm, {1: [[1, 2]]}, {})
    with pytest.raises(TypeError, match="tuple of slices or a 1-D integer array"):
        mpi.HaloExchange(comm, {}, {1: np.array([0.5])})
    halo = mpi.HaloExchange(comm, {}, {})
    with pytest.raises(RuntimeError, match="no exchange has started"):
        halo.finish()
    with pytest.raises(TypeError, match="at least one array"):
        halo.start()


def test_mpi_call_digest_compares_exactly():
    """The digest agree_call reduces: equal items give equal digests in any process; a number
    of another type or sign, another order, or another array content gives another one; an
    object without a value semantics counts by its type (its repr may hold an address)."""
    d = mpi.call_digest
    assert d({"a": 0.1, "n": [[(0, 1)]]}) == d({"a": 0.1, "n": [[(0, 1)]]})
    assert d({"a": 0.1}) != d({"a": np.float64(0.1)}) != d({"a": np.float32(0.1)})
    assert d({"a": 0.0}) != d({"a": -0.0})
    assert d({"a": 1}) != d({"a": True}) != d({"a": 1.0})
    assert d({"a": 1, "b": 2}) != d({"b": 2, "a": 1})
    assert d({"w": np.arange(3.0)}) == d({"w": np.arange(3.0)}) != d({"w": np.ones(3)})
    assert d({"o": object()}) == d({"o": object()})
    assert 0 <= d({}) < 2 ** 62


def test_mpi_call_digest_sees_into_dicts_namespaces_and_dataclasses():
    """A kernel constant held in a dict (``self.d["a"]``), a ``SimpleNamespace`` or a
    dataclass counted by its type alone: 0.5 on one rank and 0.9 on another went unnoticed."""
    import dataclasses
    import types

    @dataclasses.dataclass
    class Params:
        alpha: float

    d = mpi.call_digest
    assert d({"k": {"a": 0.5}}) != d({"k": {"a": 0.9}})
    assert d({"k": {"a": 1, "b": 2}}) == d({"k": {"b": 2, "a": 1}})   # a dict's order is not
    assert d({"k": types.SimpleNamespace(alpha=0.5)}) != d({"k": types.SimpleNamespace(alpha=0.9)})
    assert d({"k": Params(0.5)}) != d({"k": Params(0.9)}) and d({"k": Params(0.5)}) == \
        d({"k": Params(0.5)})
    cycle: dict = {}
    cycle["self"] = cycle
    assert d({"k": cycle}) == d({"k": cycle})   # nested too deep: by type, no recursion error


class ReduceComm(FakeComm):
    """One rank: Allreduce leaves the buffer as it is."""

    def Allreduce(self, sendbuf, recvbuf, op=None):
        pass


def test_mpi_agree_call_raises_the_local_error_naming_the_rank():
    stats = mpi.CommStats()
    mpi.agree_call(ReduceComm(), {"alpha": 0.1}, stats=stats)
    assert stats.reductions == 1
    with pytest.raises(TypeError, match=r"^sweep: rank 0: bad grid$"):
        mpi.agree_call(ReduceComm(), None, TypeError("bad grid"), what="sweep")

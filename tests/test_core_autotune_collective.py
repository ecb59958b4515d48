"""Autotuner(comm=...): collective tuning as one rank of a 2-rank job sees it (no mpiexec)."""

from __future__ import annotations

import pytest

from asp_core.autotune import Autotuner, PerfDB


@pytest.fixture
def db(tmp_path):
    return PerfDB(tmp_path / "perf.sqlite")


class _RankComm:
    """Rank ``rank`` of a 2-rank job as the collective Autotuner sees it: rank 0's decision
    arrives by ``bcast``; the other rank's times by ``allreduce``."""

    def __init__(self, rank, root_state=(None, ""), other_times=None, other_variants=None):
        self.rank, self.root_state = rank, root_state
        self.other_times = other_times or {}
        self.other_variants = other_variants
        self.reported = []

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return 2

    def allgather(self, value):
        return [value, value if self.other_variants is None else self.other_variants]

    def bcast(self, value, root=0):
        return value if self.rank == 0 else self.root_state

    def allreduce(self, value, op=None):
        self.reported.append(value)
        return max(value, self.other_times[len(self.reported) - 1])


def test_autotuner_collective_takes_rank0s_decision_and_the_slowest_time(db):
    pytest.importorskip("mpi4py")
    db.set_winner("k", "b")  # rank 1's own stored winner must not desynchronise the ranks
    t = Autotuner("k", ["a", "b"], mode="once", db=db, comm=_RankComm(1, (None, "")))
    assert t.comm is not None and not t.done
    assert Autotuner("k", ["a", "b"], mode="once", db=db,
                     comm=_RankComm(1, ("a", "perf database"))).winner == "a"
    # fast here, slow on the other rank: the slowest rank's time decides
    comm = _RankComm(1, other_times=[1.0, 5.0])
    t = Autotuner("k2", ["a", "b"], mode="once", db=db, comm=comm)
    t.report(t.next(), 2.0)
    t.report(t.next(), 0.5)
    assert comm.reported == [2.0, 0.5] and t.winner == "a" and t.times == {"a": [2.0], "b": [5.0]}
    assert db.timings("k2") == [] and db.winner("k2") is None  # only rank 0 writes
    root = Autotuner("k3", ["a", "b"], mode="once", db=db, comm=_RankComm(0, other_times=[]))
    root.report("a", 3.0, agreed=True)  # already agreed by the caller: no reduction
    root.report("b", 1.0, agreed=True)
    assert root.winner == "b" and db.winner("k3") == "b"


def test_autotuner_collective_needs_the_same_variants_everywhere(db):
    with pytest.raises(ValueError, match="mismatched autotuning variants"):
        Autotuner("k", ["a", "b"], db=db, comm=_RankComm(0, other_variants=["a"]))

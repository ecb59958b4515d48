"""asp_core.mpi.HaloExchange on a ring of ranks: boxes and index arrays, several arrays per
message, start/finish overlap, reused buffers, statistics. Rank 0 prints HALO-ALL-OK."""

from __future__ import annotations

import numpy as np

from asp_core.mpi import CommStats, HaloExchange, fatal_errors


@fatal_errors()
def main() -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    left, right = (rank - 1) % size, (rank + 1) % size

    # boxes: a (6, 5) block, rows 1..4 owned, row 0 from the left rank's row 4, row 5 from the
    # right rank's row 1 (on 2 ranks both are the same peer; on 1 rank it is this rank)
    sends_l = {left: (slice(1, 2), slice(None))}
    sends_r = {right: (slice(4, 5), slice(None))}
    recvs_l = {left: (slice(0, 1), slice(None))}
    recvs_r = {right: (slice(5, 6), slice(None))}
    to_left = HaloExchange(comm, sends_l, recvs_r, tag=11)   # row 1 goes left, row 5 from right
    to_right = HaloExchange(comm, sends_r, recvs_l, tag=12)  # row 4 goes right, row 0 from left
    stats = CommStats()
    a = np.zeros((6, 5))
    b = np.zeros((6, 5))
    for it in range(3):  # reused buffers: the values change, the result follows
        a[1:5] = 100 * rank + 10 * it + np.arange(4)[:, None]
        b[1:5] = -a[1:5]
        to_left.start(a, b, stats=stats)
        assert to_left.active
        try:
            to_left.start(a, b)
            raise AssertionError("second start accepted")
        except RuntimeError as exc:
            assert "finish" in str(exc)
        to_left.finish()
        to_right.exchange(a, b, stats=stats)
        assert np.array_equal(a[5], np.full(5, 100 * right + 10 * it + 0.0)), a
        assert np.array_equal(a[0], np.full(5, 100 * left + 10 * it + 3.0)), a
        assert np.array_equal(b, -a)
    assert stats.exchanges == 6 and stats.messages == 6, stats
    assert stats.bytes == 6 * 2 * 5 * 8, stats

    # index arrays along the last axis: an (nvec, 4) block with 2 owned entries and 2 ghosts
    # (positions 2 and 3) holding the left rank's entries 0 and 1; float32 this time
    v = np.zeros((3, 4), dtype=np.float32)
    v[:, :2] = rank + np.arange(6, dtype=np.float32).reshape(3, 2) / 10
    idx = HaloExchange(comm, {right: np.array([1, 0])}, {left: np.array([3, 2])}, tag=13)
    st = CommStats()
    idx.exchange(v, stats=st)
    want = (left + np.arange(6, dtype=np.float32).reshape(3, 2) / 10)
    assert np.array_equal(v[:, 2:], want), v
    assert (st.messages, st.bytes, st.exchanges) == (1, 3 * 2 * 4, 1), st
    v64 = np.zeros((2, 4))
    try:
        idx.start(v, v64)
        raise AssertionError("mixed dtypes accepted")
    except TypeError as exc:
        assert "of one dtype" in str(exc)
    done = comm.gather((stats.messages, stats.bytes, st.messages), root=0)
    if rank == 0:  # one writer: mpiexec may interleave the lines of several ranks
        print(f"HALO-ALL-OK ranks={len(done)} counts={sorted(set(done))}", flush=True)


if __name__ == "__main__":
    main()

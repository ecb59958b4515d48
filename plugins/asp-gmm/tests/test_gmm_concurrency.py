"""asp-gmm used from several threads at once: concurrent fits share the process's state (BLAS
thread pools, the engine's dispatchers), which they must leave as they found it."""

from __future__ import annotations

import threading

from asp_gmm import engine


class _Pools:
    """A stand-in for threadpoolctl's controller with its semantics: BLAS threads are
    process-wide, and a limiter restores, on exit, the count it found when made."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def limit(self, *, limits: int, user_api: str) -> _Limiter:
        assert user_api == "blas"
        return _Limiter(self, limits)


class _Limiter:
    def __init__(self, pools: _Pools, limits: int) -> None:
        self.pools, self.original = pools, pools.threads
        pools.threads = limits

    def restore_original_limits(self) -> None:
        self.pools.threads = self.original

    def __enter__(self) -> _Limiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore_original_limits()


def test_overlapping_numpy_passes_give_blas_its_threads_back(monkeypatch):
    """Two fits' NumPy passes overlapping (thread A's pass starts, B's starts, A's ends, then
    B's): each limited BLAS to one thread with threadpoolctl's context, which restores what it
    found on entry, so B restored A's limit and BLAS stayed on one thread for the rest of the
    process (after three concurrent fits, every later NumPy product ran on one core)."""
    pools = _Pools(threads=4)
    monkeypatch.setattr(engine, "_controller", lambda: pools)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def pass_a() -> None:
        a_in.set()
        assert b_in.wait(30)

    def pass_b() -> None:
        b_in.set()
        assert a_out.wait(30)
        seen.append(pools.threads)   # A's pass ended, B's still runs: still one thread

    def fit_a() -> None:
        engine.while_compiling(pass_a)
        a_out.set()

    first = threading.Thread(target=fit_a)
    first.start()
    assert a_in.wait(30)
    second = threading.Thread(target=engine.while_compiling, args=(pass_b,))
    second.start()
    first.join(60)
    second.join(60)
    assert not first.is_alive() and not second.is_alive()
    assert seen == [1] and pools.threads == 4

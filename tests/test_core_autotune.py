"""Autotuning: the perf database, the Autotuner's modes, and tuning through the dispatcher."""

from __future__ import annotations

import itertools
import logging

import types

import numpy as np
import pytest

from asp_core import Dispatcher
from asp_core import autotune as autotune_mod
from asp_core.autotune import Autotuner, PerfDB
from asp_core.cache import CodeCache
from asp_core.pipeline import TuningCallable
from pytest_asp import requires_compiler


@pytest.fixture
def db(tmp_path):
    return PerfDB(tmp_path / "perf.sqlite")


def test_perfdb_record_timings_winner(db, tmp_path):
    assert db.timings("k") == [] and db.winner("k") is None and db.summary() == []
    assert not (tmp_path / "perf.sqlite").exists()  # reading does not create it
    db.record("k", "a", 3.0, {"tile": 8}, label="lbl")
    db.record("k", "b", 1.0)
    db.record("k", "a", 2.0)
    db.record("other", "a", 0.1)
    assert db.timings("k") == [("b", 1.0, 1), ("a", 2.0, 2)]
    db.set_winner("k", "b", label="lbl")
    assert db.winner("k") == "b"
    db.set_winner("k", "a", label="lbl")  # replaced, not duplicated
    assert db.winner("k") == "a" and db.summary() == [("k", "lbl", "a")]
    assert PerfDB(tmp_path / "perf.sqlite").winner("k") == "a"  # persisted
    db.clear()
    assert db.winner("k") is None and db.timings("k") == []


def test_a_tuning_database_on_a_network_file_system_keeps_a_rollback_journal(tmp_path,
                                                                            monkeypatch):
    """SQLite's WAL index lives in memory one host's processes share: jobs on the nodes of a
    cluster, tuning into a cache in a home directory on NFS (the default ``~/.cache/asp``),
    wrote through separate indexes into one log."""
    import sqlite3
    from contextlib import closing

    mountinfo = tmp_path / "mountinfo"
    point = str(tmp_path / "home dir").replace(" ", "\\040")
    mountinfo.write_text(f"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                         f"30 22 0:40 / {point} rw,relatime - nfs4 server:/home rw,vers=4.2\n"
                         f"31 30 0:41 / {point}/local rw - ext4 /dev/sdb1 rw\n")
    home = tmp_path / "home dir"
    assert autotune_mod.network_filesystem(home / "u/.cache/asp", str(mountinfo)) == "nfs4"
    assert autotune_mod.network_filesystem(home / "local/asp", str(mountinfo)) == ""
    assert autotune_mod.network_filesystem(tmp_path, str(mountinfo)) == ""
    assert autotune_mod.network_filesystem(tmp_path, str(tmp_path / "absent")) == ""

    def journal(path):
        with closing(sqlite3.connect(path)) as con:
            return con.execute("PRAGMA journal_mode").fetchone()[0]

    (home / "u").mkdir(parents=True)
    local = PerfDB(tmp_path / "perf.sqlite")
    local.record("k", "a", 1.0)
    assert journal(local.path) == "wal"
    real = autotune_mod.network_filesystem
    monkeypatch.setattr(autotune_mod, "network_filesystem", lambda path: real(path, str(mountinfo)))
    autotune_mod._journal_mode.cache_clear()
    try:
        shared = PerfDB(home / "u" / "perf.sqlite")
        shared.record("k", "a", 1.0)
        assert journal(shared.path) == "delete" and shared.timings("k") == [("a", 1.0, 1)]
        # one made with WAL where the mount table could not say is switched back
        (tmp_path / "perf.sqlite").rename(home / "u" / "wal.sqlite")
        PerfDB(home / "u" / "wal.sqlite").record("k", "b", 2.0)
        assert journal(home / "u" / "wal.sqlite") == "delete"
    finally:
        autotune_mod._journal_mode.cache_clear()


def test_perfdb_default_location(fresh_cache):
    assert PerfDB().path == fresh_cache / "perf.sqlite"


def _times(mapping):
    return lambda name: mapping[name]


def test_autotuner_off_uses_default(db):
    t = Autotuner("k", ["a", "b"], mode="off", db=db)
    assert t.done and t.winner == "a" and t.next() == "a"
    assert t.source.startswith("ASP_AUTOTUNE=off")
    assert db.timings("k") == []


def test_autotuner_once_tunes_then_reuses(db):
    events = []
    t = Autotuner("k", ["a", "b", "c"], mode="once", db=db, repeats=2,
                  on_event=lambda e, **d: events.append((e, d)))
    assert not t.done
    order = []
    while not t.done:
        name = t.next()
        order.append(name)
        t.report(name, {"a": 3.0, "b": 1.0, "c": 2.0}[name])
    assert order == ["a", "b", "c", "a", "b", "c"]  # interleaved
    assert t.winner == "b" and t.source == "tuned now"
    assert db.winner("k") == "b" and len(db.timings("k")) == 3
    assert events[-1][0] == "autotune" and events[-1][1]["winner"] == "b"
    again = Autotuner("k", ["a", "b", "c"], mode="once", db=db)
    assert again.done and again.winner == "b" and again.source == "perf database"
    # a stored winner that is no longer among the variants is ignored
    assert not Autotuner("k", ["a", "c"], mode="once", db=db).done


def test_autotuner_times_close_contenders_again_before_deciding(db):
    """Variants within 10 % of the best get ``repeats`` more timings, so that a cold first
    timing does not decide between two a few percent apart; a clear winner needs none."""
    times = {"a": iter([1.05, 0.95]), "b": iter([1.00, 0.98]), "c": iter([5.0])}
    t = Autotuner("k", ["a", "b", "c"], mode="once", db=db)
    order = []
    while not t.done:
        name = t.next()
        order.append(name)
        t.report(name, next(times[name]))
    assert order == ["a", "b", "c", "a", "b"]   # c is out of the race after one timing
    assert t.winner == "a" and db.winner("k") == "a"
    clear = Autotuner("k2", ["a", "b"], mode="once", db=db, repeats=2)
    assert clear.tune(lambda name: {"a": 2.0, "b": 1.0}[name]) == "b"
    assert [len(v) for v in clear.times.values()] == [2, 2]


def test_autotuner_always_ignores_stored_winner(db):
    db.set_winner("k", "a")
    t = Autotuner("k", ["a", "b"], mode="always", db=db)
    assert not t.done
    assert t.tune(_times({"a": 2.0, "b": 1.0})) == "b"
    assert db.winner("k") == "b"


def test_autotuner_mode_from_environment(db, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    assert Autotuner("k", ["a", "b"], db=db).winner == "a"
    monkeypatch.setenv("ASP_AUTOTUNE", "sometimes")
    with pytest.raises(ValueError, match="ASP_AUTOTUNE='sometimes'"):
        Autotuner("k", ["a", "b"], db=db)


def test_autotuner_single_variant_and_no_variant(db):
    assert Autotuner("k", ["only"], mode="always", db=db).winner == "only"
    with pytest.raises(ValueError):
        Autotuner("k", [], db=db)


def test_autotuner_exclude(db):
    t = Autotuner("k", ["a", "b", "c"], mode="once", db=db)
    t.report(t.next(), 1.0)  # a
    t.exclude("b", "failed to build")
    assert not t.done and t.next() == "c"
    t.report("c", 0.5)
    assert t.winner == "c"
    t2 = Autotuner("k2", ["a", "b"], mode="once", db=db)
    t2.exclude("b")
    assert t2.winner == "a" and t2.source == "only variant left: the others were excluded"


def test_an_excluded_variants_timings_are_not_stored(db):
    """``exclude`` stores nothing of the variant: a timing taken before it was excluded was
    still written with the winner's, and ``asp explain`` listed it."""
    t = Autotuner("k", ["a", "b", "c"], mode="once", db=db)
    for name in ("a", "b"):
        t.report(name, 1.0 if name == "a" else 0.1)
    t.exclude("b", "wrong results")
    t.report("c", 0.5)
    assert t.winner == "c"
    assert sorted(v for v, _, _ in db.timings("k")) == ["a", "c"]


def test_progress_is_logged_once_per_variant_when_tuning_is_slow(db, monkeypatch, caplog):
    """Through the ``asp`` logger; each variant counted once, however many repeats it gets."""
    clock = itertools.count(100.0, 0.7)
    monkeypatch.setattr(autotune_mod, "time", types.SimpleNamespace(
        perf_counter=lambda: next(clock), time=lambda: 0.0, monotonic=lambda: 0.0,
        sleep=lambda _s: None))
    t = Autotuner("k", ["a", "b", "c"], mode="once", db=db, label="mykernel", repeats=3)
    with caplog.at_level(logging.INFO, logger="asp"):
        t.tune(_times({"a": 0.8, "b": 0.9, "c": 1.0}))
    lines = [r.getMessage() for r in caplog.records if r.name == "asp.autotune"]
    assert lines[0] == "tuning mykernel (3 steps)" and lines[-1] == "tuned mykernel: a"
    steps = [line for line in lines if line.strip().startswith("[")]
    assert [s.split("]")[0].strip() for s in steps] == ["[1/3", "[2/3", "[3/3"], lines
    assert "b: 900.00 ms" in steps[1]


def test_no_progress_when_tuning_is_quick(db, caplog):
    with caplog.at_level(logging.DEBUG, logger="asp"):
        Autotuner("k", ["a", "b"], mode="once", db=db).tune(_times({"a": 1e-6, "b": 2e-6}))
    assert not [r for r in caplog.records if r.name == "asp.autotune"]


def _k(a, b):
    return a * b - 1.0


@requires_compiler
def test_dispatcher_tunes_then_binds_winner(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "once")
    d = Dispatcher("elementwise", _k)
    a, b = np.linspace(0, 1, 500), np.linspace(1, 2, 500)
    seen = []
    for _ in range(14):
        np.testing.assert_array_equal(d(a, b), a * b - 1.0)
        seen.append(d.specializations[(2,)])
    assert isinstance(seen[0], TuningCallable)
    tuner = seen[0].tuner
    assert tuner.variants == ["parallel-simd", "serial"]
    assert tuner.done and not isinstance(seen[-1], TuningCallable)
    # every variant timed `repeats` times, close ones up to twice that (fewer when a later
    # timing puts one clearly ahead), then the winner is bound directly
    n = sum(len(t) for t in tuner.times.values())
    assert n <= 2 * tuner.repeats * len(tuner.variants) < len(seen)
    assert [isinstance(f, TuningCallable) for f in seen] == [True] * (n - 1) + [False] * (15 - n)
    assert all(tuner.repeats <= len(t) <= 2 * tuner.repeats for t in tuner.times.values())
    assert seen[-1] is seen[0]._built[tuner.winner]
    assert PerfDB().winner(tuner.key) == tuner.winner
    events = [e for n, e in d.last_context.events if n == "autotune"]
    assert events[-1]["winner"] == tuner.winner and events[-1]["source"] == "tuned now"
    assert {v for v, _, _ in events[-1]["timings"]} == {"parallel-simd", "serial"}
    # a new dispatcher in this process reuses the stored winner without tuning
    d2 = Dispatcher("elementwise", _k)
    d2(a, b)
    assert not isinstance(d2.specializations[(2,)], TuningCallable)
    assert [e["source"] for n, e in d2.last_context.events if n == "autotune"] == [
        "perf database"]


@requires_compiler
def test_tuning_handle_shows_and_steers_tuning(elementwise, fresh_cache, monkeypatch):
    """``Dispatcher.tuning`` is the plugins' view of a key being tuned: candidates, timings and
    built variants as the calls go, and ``exclude`` ends tuning with the one left."""
    monkeypatch.setenv("ASP_AUTOTUNE", "once")
    d = Dispatcher("elementwise", _k)
    a, b = np.linspace(0, 1, 64), np.linspace(1, 2, 64)
    assert d.keys() == [] and d.tuning((2,)) is None
    d(a, b)
    t = d.tuning((2,))
    assert d.keys() == [(2,)] and d.tuned((2,)) is None
    assert t is not None and not t.done and t.winner is None
    assert t.candidates == ("parallel-simd", "serial")
    assert list(t.timings) == ["parallel-simd"] and len(t.timings["parallel-simd"]) == 1
    assert list(t.built) == ["parallel-simd"]  # the others are built when they are timed
    with pytest.raises(TypeError):
        t.built["x"] = _k  # read-only
    t.exclude("serial", "not wanted here")
    assert t.done and t.winner == "parallel-simd" and t.candidates == ("parallel-simd",)
    assert d.last_context.decision("variant").choice == "parallel-simd"
    assert ("autotune-excluded", "not wanted here") in [
        (n, e.get("reason")) for n, e in d.last_context.events]
    np.testing.assert_array_equal(d(a, b), a * b - 1.0)  # binds the winner
    assert d.tuning((2,)) is None and d.tuned((2,)) is t.built["parallel-simd"]
    t.exclude("parallel-simd")  # no effect once done
    assert t.winner == "parallel-simd"
    assert PerfDB().summary() == []  # an exclusion is this process's choice: nothing stored


@requires_compiler
def test_variant_that_fails_to_build_leaves_tuning(elementwise, derived, fresh_cache,
                                                   monkeypatch):
    from asp_core import CompileError
    from tests.specializers.elementwise import CBackend

    class FlakyBackend(CBackend):
        def build(self, variant, ctx):
            if variant.name == "serial":
                raise CompileError("injected", command=["cc"], log="boom", source_path="x.c")
            return super().build(variant, ctx)

    name = derived("ew-flaky", replace={("backend", "c"): FlakyBackend()})
    d = Dispatcher(name, _k)
    a, b = np.ones(10), np.full(10, 2.0)
    for _ in range(8):
        np.testing.assert_array_equal(d(a, b), np.ones(10))
    fn = d.specializations[(2,)]
    assert not isinstance(fn, TuningCallable)
    events = [(n, e) for n, e in d.last_context.events if n.startswith("autotune")]
    assert events[0][0] == "autotune-excluded" and events[0][1]["variant"] == "serial"
    assert events[-1][1]["winner"] == "parallel-simd"


def test_corrupted_perf_database_is_set_aside(tmp_path):
    path = tmp_path / "perf.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    db = PerfDB(path)
    assert db.winner("k") is None
    db.set_winner("k", "a")
    assert db.winner("k") == "a"
    assert [p.name.startswith("perf.sqlite.corrupt-") for p in tmp_path.iterdir()
            if p.name.startswith("perf.sqlite.c")] == [True]


@requires_compiler
def test_corrupted_perf_database_does_not_break_kernels(elementwise, fresh_cache, monkeypatch):
    CodeCache(fresh_cache).ensure()
    (fresh_cache / "perf.sqlite").write_bytes(b"\0garbage" * 512)
    d = Dispatcher("elementwise", _k)
    a, b = np.ones(4), np.arange(4.0)
    np.testing.assert_array_equal(d(a, b), a * b - 1.0)
    tuning = d.specializations[(2,)]
    assert isinstance(tuning, TuningCallable)
    # enough calls for the slowest decision: every variant timed twice `repeats` times
    for _ in range(2 * tuning.tuner.repeats * len(tuning.tuner.variants)):
        np.testing.assert_array_equal(d(a, b), a * b - 1.0)
    assert not isinstance(d.specializations[(2,)], TuningCallable)


def _hammer_perfdb(path: str, start: float, worker: int) -> int:
    """Open a fresh database at the same moment as the other workers, then write to it."""
    import time as _time

    while _time.time() < start:
        pass
    db = PerfDB(path)
    for i in range(60):
        db.record(f"key-{i % 3}", f"v{worker}", 1e-3 * (worker + 1) + i * 1e-6)
        db.set_winner(f"key-{i % 3}", f"v{worker}")
        db.winner(f"key-{i % 3}")
    return len(db.timings("key-0"))


def test_perfdb_concurrent_first_use_from_eight_processes(tmp_path):
    """Eight processes creating the same database at once and writing to it all succeed
    (switching it to WAL answers "locked" without SQLite's busy wait: retried)."""
    import multiprocessing as mp
    import time as _time

    path = str(tmp_path / "perf.sqlite")
    start = _time.time() + 1.0
    with mp.get_context("spawn").Pool(8) as pool:
        counts = pool.starmap(_hammer_perfdb, [(path, start, w) for w in range(8)])
    assert all(c >= 1 for c in counts)
    assert sum(n for _, _, n in PerfDB(path).timings("key-0")) == 8 * 20
    assert PerfDB(path).winner("key-1") in {f"v{w}" for w in range(8)}


def test_tuning_calls_do_not_touch_the_database(tmp_path):
    """Opening SQLite costs about as much as a kernel call: timings are written with the winner."""
    db = PerfDB(tmp_path / "perf.sqlite")
    t = Autotuner("k", ["a", "b"], mode="once", db=db, repeats=2)
    for name in ("a", "b", "a"):
        assert t.next() == name
        t.report(name, {"a": 2.0, "b": 1.0}[name])
        assert not db.path.exists()
    t.report(t.next(), 1.5)
    assert t.winner == "b" and db.winner("k") == "b"
    assert db.timings("k") == [("b", 1.0, 2), ("a", 2.0, 2)]


def test_a_winner_holds_for_the_thread_count_and_cpu_it_was_timed_on(fresh_cache, monkeypatch):
    """A winner tuned on 2 threads was used on 1 (``OMP_NUM_THREADS=1``, ``taskset``) and on a
    CPU without the instruction sets it was timed with, without tuning again."""
    from asp_core import hardware

    db = PerfDB()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    db.set_winner("k" * 64, "dynamic", label="demo:kernel")
    assert db.winner("k" * 64) == "dynamic"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert db.winner("k" * 64) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert db.winner("k" * 64) == "dynamic"
    monkeypatch.setattr(hardware, "cpu_features", lambda: "sse2 avx2")
    assert db.winner("k" * 64) is None


def test_a_wal_database_in_use_is_left_as_it_is_without_waiting(tmp_path, monkeypatch):
    """On a network file system a WAL database is switched to a rollback journal, which needs
    it to itself: with another connection open, each read and write waited out the busy
    timeout (10 s) and then gave up on the database."""
    import sqlite3
    import time
    from contextlib import closing

    path = tmp_path / "perf.sqlite"
    PerfDB(path).record("k", "a", 1.0)   # local: WAL
    monkeypatch.setattr(autotune_mod, "network_filesystem", lambda path: "nfs4")
    autotune_mod._journal_mode.cache_clear()
    try:
        with closing(sqlite3.connect(path)) as other:
            other.execute("SELECT count(*) FROM timings").fetchall()
            start = time.monotonic()
            db = PerfDB(path)
            db.record("k", "b", 2.0)
            assert db.timings("k") == [("a", 1.0, 1), ("b", 2.0, 1)]
            assert time.monotonic() - start < 5
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        PerfDB(path).record("k", "c", 3.0)   # now alone: switched
        with closing(sqlite3.connect(path)) as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        autotune_mod._journal_mode.cache_clear()


def test_a_read_only_database_with_a_hot_journal_serves_what_was_committed(tmp_path,
                                                                           monkeypatch):
    """A writer killed within a transaction leaves a rollback journal (the database's mode on
    a network file system); opened ``immutable``, the read-only view served its uncommitted
    winner."""
    import subprocess
    import sys

    path = tmp_path / "perf.sqlite"
    monkeypatch.setattr(autotune_mod, "network_filesystem", lambda path: "nfs4")
    autotune_mod._journal_mode.cache_clear()
    try:
        PerfDB(path).set_winner("k", "fast")
    finally:
        autotune_mod._journal_mode.cache_clear()
    code = f"""
import os, sqlite3
con = sqlite3.connect({str(path)!r}, isolation_level=None)
con.execute('PRAGMA cache_size=1')
con.execute('BEGIN IMMEDIATE')
con.execute("UPDATE winners SET variant='UNCOMMITTED'")
for i in range(3000):
    con.execute('INSERT INTO timings VALUES (?,?,?,?,?,?)', ('x' * 200 + str(i), 'v', '{{}}',
                1.0, '', 0.0))
os._exit(9)
"""
    subprocess.run([sys.executable, "-c", code], timeout=60)
    assert (tmp_path / "perf.sqlite-journal").stat().st_size > 0
    with autotune_mod.closing(autotune_mod._open_read_only(path)) as con:
        assert con.execute("SELECT variant FROM winners").fetchall() == [("fast",)]
        assert con.execute("SELECT count(*) FROM timings").fetchone() == (0,)
    assert (tmp_path / "perf.sqlite-journal").stat().st_size > 0   # nothing written beside it


def test_one_compiler_run_by_two_names_shares_its_winners(tmp_path, monkeypatch):
    """``ASP_CC=cc`` and ``ASP_CC=gcc`` (links to one file) shared compiled code but each
    tuned its own winners: timings were keyed by the name, not the file it runs."""
    import asp_core.toolchain as toolchain

    real = tmp_path / "gcc-12"
    real.write_text("#!/bin/sh\n")
    (tmp_path / "cc").symlink_to(real)
    idents = set()
    for name in ("cc", "gcc-12"):
        monkeypatch.setattr(toolchain, "_locate", lambda lang, name=name: str(tmp_path / name))
        idents.add(autotune_mod._measured_on())
    assert len(idents) == 1

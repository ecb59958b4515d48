"""Storage robustness hunt: caches shared between machines, and `asp cache` on a cache that
kernels cannot use."""

from __future__ import annotations

import functools
import json
import sqlite3
import warnings

import pytest

from asp_core import CacheWarning, hardware
from asp_core.toolchain import Toolchain
from pytest_asp import requires_compiler

X86 = "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i9-12900K\nflags\t\t: fpu sse2 avx avx2 {}\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd {}\nCPU part\t: 0xd40\n"


def _clear_hardware_memos() -> None:
    for value in vars(hardware).values():
        if isinstance(value, functools._lru_cache_wrapper):
            value.cache_clear()


@pytest.fixture
def cpuinfo(monkeypatch):
    """``cpuinfo(text)`` makes ``/proc/cpuinfo`` read ``text`` (the memos of the real one are
    forgotten before and after)."""
    def use(text: str) -> None:
        monkeypatch.setattr(hardware, "_read",
                            lambda path: text if path == "/proc/cpuinfo" else "")
        _clear_hardware_memos()

    yield use
    monkeypatch.undo()
    _clear_hardware_memos()


@pytest.mark.parametrize("template, extensions", [(X86, "avx512f avx512bw"), (ARM, "sve sve2")],
                         ids=["x86-same-model-name", "arm-no-model-name"])
def test_a_cpu_of_the_same_name_with_other_extensions_does_not_share_libraries(
        cpuinfo, template, extensions):
    """``-march=native`` code built where an extension is present dies with SIGILL where it is
    absent. The cache key told CPUs apart by model name only, which one model with AVX-512
    switched off in firmware shares, and which Arm's /proc/cpuinfo does not give: a node of a
    shared cache loaded another node's library."""
    tc = Toolchain("c", "/usr/bin/cc", "gcc", "13.2.0", ("-O3", "-march=native", "-fPIC"))
    cpuinfo(template.format(extensions))
    with_extensions = tc.abi_id()
    cpuinfo(template.format(""))
    assert tc.abi_id() != with_extensions
    cpuinfo(template.format(extensions))
    assert tc.abi_id() == with_extensions   # the same CPU keeps its entries


def test_asp_cache_clear_perf_clears_the_caches_own_database_when_kernels_cannot_use_it(
        fresh_cache):
    """A cache that kernels refuse (here group-writable) makes ``PerfDB()`` fall back to this
    process's private cache: ``asp cache clear --perf`` cleared that empty one and reported
    "the tuning results" removed while the cache's stayed, and ``asp cache info`` listed none."""
    from click.testing import CliRunner

    from asp_core.autotune import PerfDB
    from asp_core.cache import CodeCache
    from asp_core.cli import cli

    CodeCache(fresh_cache).ensure()
    db = PerfDB(fresh_cache / "perf.sqlite")
    db.set_winner("k", "fast", label="my kernel")
    fresh_cache.chmod(0o770)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        info = CliRunner().invoke(cli, ["cache", "info"], catch_exceptions=False)
        assert "my kernel: fast" in info.output
        result = CliRunner().invoke(cli, ["cache", "clear", "--perf"], catch_exceptions=False)
    assert result.exit_code == 0 and "tuning results" in result.output
    assert db.summary() == []


def test_a_stream_measurement_the_cache_cannot_keep_is_still_reported(fresh_cache, monkeypatch):
    """``hardware.json`` only saves the next STREAM measurement; one that could not be written
    (here it is a directory; a read-only cache, a full disk) made the measurement just taken
    fail: ``asp doctor`` said "could not measure", ``asp bench`` died after its whole run."""
    stream = pytest.importorskip("asp_bench.stream")
    from asp_core.cache import CodeCache
    from asp_core.cli.doctor import stream_copy_gbs

    CodeCache(fresh_cache).ensure()
    (fresh_cache / "hardware.json").mkdir()
    monkeypatch.setattr(stream, "measure_stream_copy", lambda nbytes: 12.5)
    assert stream_copy_gbs(hardware.query(), refresh=True) == 12.5
    assert not list(fresh_cache.glob("*.tmp"))   # no partial memo left behind


@requires_compiler
@pytest.mark.parametrize("field, value", [("command", None), ("command", "cc -O3 -shared"),
                                          ("command", [1, 2]), ("name", 7)])
def test_a_meta_json_with_fields_of_other_types_is_rebuilt(fresh_cache, field, value):
    """The checksums cover an entry's files but not ``meta.json``; one whose fields had other
    types than Asp writes made every later process's first call of the kernel raise
    ``TypeError`` (blamed on the plugin) instead of rebuilding the entry."""
    from asp_core.build import compile_library

    source = "int asp_seven(void) { return 7; }\n"
    first = compile_library(source, openmp=False, name="seven")
    meta_path = first.path.parent / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, field: value}))
    again = compile_library(source, openmp=False, name="seven")
    assert not again.cached and again.function("asp_seven")() == 7
    assert again.command and all(isinstance(part, str) for part in again.command)
    assert type(json.loads(meta_path.read_text())[field]) is type(meta[field])


class _CountsLockWaits(sqlite3.Connection):
    """A connection that counts its statements that waited out the busy timeout."""

    waits = 0

    def execute(self, *args):
        return self._counted(super().execute, *args)

    def executemany(self, *args):
        return self._counted(super().executemany, *args)

    def _counted(self, statement, *args):
        try:
            return statement(*args)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                type(self).waits += 1
            raise


def test_a_write_lock_held_elsewhere_is_waited_for_once_per_process(tmp_path, monkeypatch):
    """Another connection holding the tuning database's write lock (a long transaction) made
    every kernel's deciding call wait the whole busy timeout (30 s) to store its winner, again
    for each new kernel after the one warning: many kernels stalled the program that long each.
    Now the first wait gives up storing for the process; stored winners are still read."""
    from asp_core import autotune as autotune_mod
    from asp_core.autotune import Autotuner, PerfDB

    monkeypatch.setattr(autotune_mod, "_BUSY_SECONDS", 0.2)
    monkeypatch.setattr(autotune_mod, "_warned", set())
    monkeypatch.setattr(_CountsLockWaits, "waits", 0)
    db = PerfDB(tmp_path / "perf.sqlite")
    db.set_winner("stored", "b")
    monkeypatch.setattr(sqlite3, "connect",
                        functools.partial(sqlite3.connect, factory=_CountsLockWaits))
    holder = sqlite3.connect(db.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")   # the write lock, held until the test ends
    times = {"a": 2.0, "b": 1.0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        winners = [Autotuner(key, ["a", "b"], mode="once", db=db).tune(times.__getitem__)
                   for key in ("first kernel", "second kernel")]
        assert db.winner("stored") == "b"   # reads need no write lock
    holder.rollback()
    holder.close()
    assert winners == ["b", "b"]            # the decisions in memory are unaffected
    assert _CountsLockWaits.waits == 1
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1

"""Tuning-database faults (issue 14): a perf.sqlite that is a directory, has a foreign schema
or cannot be written is ignored with one warning; kernels still run."""

from __future__ import annotations

import sqlite3
import warnings

import numpy as np
import pytest

from asp_core import CacheError, CacheWarning, Dispatcher, SpecializationWarning
from asp_core.autotune import Autotuner, PerfDB
from asp_core.cache import CodeCache
from asp_core.cli.doctor import perf_db_problem
from pytest_asp import requires_compiler


def _axpy(a, b):
    return a + 3.0 * b


def _as_directory(root):
    (root / "perf.sqlite").mkdir()


def _foreign_schema(root):
    con = sqlite3.connect(root / "perf.sqlite")
    con.execute("CREATE TABLE timings (id INTEGER PRIMARY KEY, note TEXT)")
    con.execute("CREATE TABLE winners (who TEXT)")
    con.commit()
    con.close()


def _read_only(root, monkeypatch):
    def refuse(*a, **k):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(PerfDB, "_open", refuse)
    (root / "perf.sqlite").write_bytes(b"")


FAULTS = {"directory": _as_directory, "foreign-schema": _foreign_schema}


@pytest.fixture(params=["directory", "foreign-schema", "read-only"])
def broken_db(request, fresh_cache, monkeypatch):
    import asp_core.autotune as autotune_mod

    monkeypatch.setattr(autotune_mod, "_warned", set())
    CodeCache(fresh_cache).ensure()   # Asp's cache, then its database breaks
    if request.param == "read-only":
        _read_only(fresh_cache, monkeypatch)
    else:
        FAULTS[request.param](fresh_cache)
    return fresh_cache / "perf.sqlite"


def test_perfdb_methods_never_raise(broken_db):
    db = PerfDB(broken_db)
    with pytest.warns(CacheWarning, match="tuning database .* cannot be used"):
        db.record("k", "v", 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per database, not one per call
        assert db.winner("k") is None
        assert db.timings("k") == []
        db.set_winner("k", "v")
        assert db.summary() == []
    with pytest.raises(CacheError, match="could not clear the tuning results"):
        db.clear()   # `asp cache clear --perf` must not report what did not happen
    assert perf_db_problem(db) is not None


def test_autotuner_decides_without_the_database(broken_db):
    with pytest.warns(CacheWarning):
        tuner = Autotuner("k", ["a", "b"], db=PerfDB(broken_db), mode="once")
        assert tuner.tune(lambda name: {"a": 2.0, "b": 1.0}[name]) == "b"


@requires_compiler
@pytest.mark.parametrize("autotune", ["off", "once", "always"])
def test_kernels_run_with_a_broken_tuning_database(elementwise, broken_db, monkeypatch,
                                                  autotune):
    monkeypatch.setenv("ASP_AUTOTUNE", autotune)
    d = Dispatcher("elementwise", _axpy)
    a, b = np.ones(16), np.arange(16.0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(8):
            np.testing.assert_array_equal(d(a, b), a + 3.0 * b)
    assert not any(issubclass(w.category, SpecializationWarning) for w in seen)
    assert len([w for w in seen if issubclass(w.category, CacheWarning)]) <= 1


def test_doctor_reports_an_unusable_tuning_database(broken_db):
    from asp_core.cli.doctor import checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = [c for c in checks(measure_stream=False) if c[0] == "tuning data"][0]
    assert not found[1] and "perf.sqlite" in found[2]


# -- a read-only cache ----------------------------------------------------------------------------
def _stored_winners(root, log: str):
    """A cache whose database holds winners ``fast`` for ``k`` and ``late`` for ``k2``: the
    second, unless ``log`` is ``"none"``, only in a ``-wal`` log left beside the file (with or
    without its ``-shm``), as a writer killed, or the files copied while in use, leave it."""
    import shutil

    CodeCache(root).ensure()
    work = root.parent / "work"
    work.mkdir()
    PerfDB(work / "perf.sqlite").set_winner("k", "fast")
    hold = sqlite3.connect(work / "perf.sqlite")   # no checkpoint while another is open
    hold.execute("SELECT * FROM winners").fetchall()
    PerfDB(work / "perf.sqlite").set_winner("k2", "late")
    names = {"none": [""], "wal": ["", "-wal"], "wal-and-shm": ["", "-wal", "-shm"]}[log]
    if log == "none":
        hold.close()
    for suffix in names:
        shutil.copyfile(work / f"perf.sqlite{suffix}", root / f"perf.sqlite{suffix}")
    hold.close()
    assert (root / "perf.sqlite-wal").exists() == (log != "none")


def _snapshot(root):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("log", ["none", "wal", "wal-and-shm"])
def test_a_read_only_cache_serves_its_winners_and_writes_nothing(fresh_cache, monkeypatch, log):
    """A site's pre-populated cache installed read-only (``chmod -R a-w``): SQLite's WAL mode
    writes ``-wal`` and ``-shm`` files even to read, so opening the database failed, the stored
    winners were ignored and every process tuned again.

    Tests run as root, who writes wherever permissions say not to, so the directory is made
    read-only where Asp (like any program) asks: ``os.access``, which also answers for
    read-only mounts.  What the cache must do then is checked on the files themselves: not one
    byte or time stamp in it changes, a winner still in a ``-wal`` log is seen, and the new
    results are not stored, with one warning.  The permissions themselves are enforced in
    ``test_a_read_only_cache_directory_serves_its_winners``."""
    import os

    import asp_core.autotune as autotune_mod

    _stored_winners(fresh_cache, log)
    before = _snapshot(fresh_cache)
    real = os.access

    def access(path, mode, **kw):
        if mode & os.W_OK and str(path).startswith(str(fresh_cache)):
            return False
        return real(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(autotune_mod, "_warned", set())
    db = PerfDB()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert db.winner("k") == "fast"
        assert db.winner("k2") == "late"
        assert db.summary()[0] == ("k", "", "fast")
        assert Autotuner("k", ["slow", "fast"], mode="once").source == "perf database"
        tuner = Autotuner("k3", ["a", "b"], mode="once")
        assert tuner.tune(lambda name: {"a": 2.0, "b": 1.0}[name]) == "b"
        db.set_winner("k4", "x")
        assert db.winner("k3") is None and db.winner("k4") is None
    assert [str(w.message) for w in seen] == [
        f"asp: the tuning database {fresh_cache / 'perf.sqlite'} is read-only: its stored "
        "winners are used, new tuning results are not stored"]
    with pytest.raises(CacheError, match="could not clear .* read-only"):
        db.clear()
    assert _snapshot(fresh_cache) == before


def _without_root_powers() -> list[str]:
    """The command that runs Python with file permissions enforced: as root, ``setpriv`` drops
    the capabilities that let root write into a read-only directory."""
    import os
    import shutil
    import sys

    if os.geteuid() != 0:
        return [sys.executable]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only directory is writable")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner",
            "--inh-caps=-all", sys.executable]


_READER = """
import json, warnings
from asp_core.autotune import Autotuner, PerfDB
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    db = PerfDB()
    out = {"k": db.winner("k"), "k2": db.winner("k2"),
           "source": Autotuner("k", ["slow", "fast"], mode="once").source}
    Autotuner("k3", ["a", "b"], mode="once").tune(lambda name: {"a": 2.0, "b": 1.0}[name])
    out["k3"] = db.winner("k3")
out["warnings"] = [str(w.message) for w in seen]
print(json.dumps(out))
"""


@pytest.mark.parametrize("log", ["none", "wal"])
def test_a_read_only_cache_directory_serves_its_winners(fresh_cache, log):
    """The same with the permissions enforced (``chmod -R a-w``, then a process that cannot
    override them: :func:`_without_root_powers`), so SQLite itself meets the read-only
    directory: before, opening the database failed with "attempt to write a readonly
    database" ("unable to open database file" with a ``-wal`` left behind) and the stored
    winners were ignored."""
    import json
    import os
    import subprocess
    from pathlib import Path

    _stored_winners(fresh_cache, log)
    command = _without_root_powers()
    before = _snapshot(fresh_cache)
    paths = [fresh_cache, *fresh_cache.rglob("*")]
    for p in paths:
        p.chmod(0o500 if p.is_dir() else 0o400)
    try:
        env = dict(os.environ, ASP_CACHE_DIR=str(fresh_cache), ASP_DISABLE_PLUGIN_AUTOLOAD="1",
                   PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        proc = subprocess.run([*command, "-c", _READER], env=env, capture_output=True,
                              text=True, timeout=120)
    finally:
        for p in paths:
            p.chmod(0o700 if p.is_dir() else 0o600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["k"] == "fast" and out["source"] == "perf database"
    assert out["k2"] == "late" and out["k3"] is None
    assert len(out["warnings"]) == 1 and "is read-only" in out["warnings"][0]
    assert _snapshot(fresh_cache) == before


def test_cache_clear_perf_says_what_it_removed_before_failing(fresh_cache):
    """``perf.sqlite`` a folder: ``asp cache clear --perf`` removed every entry, then failed
    with "could not clear the tuning results" and no word of the entries it had removed."""
    from click.testing import CliRunner

    from asp_core.cache import get_cache
    from asp_core.cli import cli

    get_cache().ensure()
    _as_directory(fresh_cache)
    result = CliRunner().invoke(cli, ["cache", "clear", "--perf"])
    assert result.exit_code == 1
    assert "removed 0 entries, but: " in result.output
    assert "could not clear the tuning results" in result.output

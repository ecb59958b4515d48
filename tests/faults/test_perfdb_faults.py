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

"""Edge cases of the benchmark harness: ``BenchContext.compare``, ``write_results`` and the
``asp bench`` command (option and ``--path`` handling). Nothing here is timed."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from click.testing import CliRunner

from asp_bench import BenchContext, Measurement, write_results
from asp_core import plugins as plugins_mod
from asp_core.cli import cli

SUITE = '''
from asp_core import hookimpl


def run(bench):
    bench.compare("noop", {"a": lambda: None, "b": lambda: None}, anchor="a", repeats=1)


@hookimpl
def asp_register_benchmarks(register):
    register.benchmark(name="edgesuite", func=run, description="edge test suite")
'''


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty cache, only the suites under test, no roof measurements (nothing compiled)."""
    import asp_bench
    from asp_bench import stream

    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setattr(stream, "measure_stream_copy", lambda *a, **k: 20.0)
    monkeypatch.setattr(asp_bench, "measure_peak_gflops", lambda *a, **k: None)
    plugins_mod.reset()
    yield tmp_path
    plugins_mod.reset()


def _bench(*args: str):
    return CliRunner().invoke(cli, ["bench", *args])


def test_check_returning_false_is_a_failure_not_a_ratio():
    ctx = BenchContext("s", repeats=1, echo=lambda s: None)
    with pytest.raises(AssertionError, match="check returned"):
        ctx.compare("x", {"a": lambda: None, "b": lambda: None}, anchor="a",
                    check=lambda: np.allclose(np.ones(3), np.zeros(3)))
    assert ctx.results == []
    ctx.compare("y", {"a": lambda: None}, anchor="a", check=lambda: True)  # a passing predicate
    assert len(ctx.results) == 1


def test_compare_refuses_repeats_below_one():
    ctx = BenchContext("s", repeats=2, echo=lambda s: None)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="repeats must be at least 1"):
            ctx.compare("x", {"a": lambda: None}, anchor="a", repeats=bad)
    assert ctx.results == []


def test_results_json_is_strict_json_without_inf_or_nan(tmp_path):
    rows = [Measurement("s", "c", "a", 1.0, 1.0, "a"),
            Measurement("s", "c", "b", float("inf"), float("nan"), "a", ratio=0.0)]
    write_results(rows, tmp_path / "results.json")

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    data = json.loads((tmp_path / "results.json").read_text(), parse_constant=refuse)
    assert data[1]["best"] is None and data[1]["median"] is None and data[1]["ratio"] == 0.0


def test_interrupted_write_keeps_the_previous_results(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text('[{"old": 1}]')
    real = pathlib.Path.write_text

    def interrupted(self, data, *args, **kwargs):  # Ctrl-C half-way through the write
        real(self, data[: len(data) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pathlib.Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_results([Measurement("s", "c", "a", 1.0, 1.0, "a")], path)
    monkeypatch.undo()
    assert json.loads(path.read_text()) == [{"old": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left


def test_unknown_name_is_an_error_even_with_no_suites(isolated):
    empty = isolated / "nothing"
    empty.mkdir()
    (empty / "bench_none.py").write_text("X = 1\n")  # a bench file without the hook
    result = _bench("no-such-suite", "--path", str(empty), "--out", str(isolated / "out"))
    assert result.exit_code == 2 and "unknown suite(s) no-such-suite" in result.output


def test_path_without_bench_files_is_refused(isolated):
    empty = isolated / "empty"
    empty.mkdir()
    result = _bench("--path", str(empty), "--list")
    assert result.exit_code == 2 and "no bench_*.py files in" in result.output, result.output


DATACLASS = '''
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Case:  # string annotations: dataclasses looks the module up in sys.modules
    n: int
'''


def test_suite_file_with_a_dataclass_loads(isolated):
    (isolated / "bench_edge.py").write_text(DATACLASS + SUITE)
    result = _bench("--path", str(isolated / "bench_edge.py"), "--list")
    assert result.exit_code == 0, result.output
    assert "edgesuite" in result.output


def test_a_name_given_twice_runs_once(isolated):
    (isolated / "bench_edge.py").write_text(SUITE)
    out = isolated / "out"
    result = _bench("edgesuite", "edgesuite", "--path", str(isolated), "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["impl"] for r in rows) == ["a", "b"]

"""Edge cases of the benchmark harness: ``BenchContext.compare``, ``write_results`` and the
``asp bench`` command (option and ``--path`` handling). Nothing here is timed."""

from __future__ import annotations

import json
import math
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


COUNTING = '''
from asp_core import hookimpl

calls = []


def run(bench):
    bench.note("before any case")
    bench.compare("counted", {"a": lambda: calls.append(1)}, anchor="a", repeats=3)
    bench.note("calls=%d" % len(calls))  # one warm-up round, then the repeats


@hookimpl
def asp_register_benchmarks(register):
    register.benchmark(name="countsuite", func=run, description="counts its calls")
'''


def test_repeats_option_wins_over_a_suites_own_count(isolated):
    """``compare(..., repeats=3)`` in a suite is its default: ``--repeats 7`` times the case 7
    times (it was timed 3 times whatever the user asked)."""
    (isolated / "bench_count.py").write_text(COUNTING)
    given = _bench("--path", str(isolated), "--out", str(isolated / "o1"), "--repeats", "7")
    assert given.exit_code == 0, given.output
    assert "calls=8" in given.output  # 1 warm-up + 7
    plugins_mod.reset()
    default = _bench("--path", str(isolated), "--out", str(isolated / "o2"))
    assert default.exit_code == 0, default.output
    assert "calls=4" in default.output  # the suite's own 3


def test_repeats_for_is_the_suites_count_unless_the_user_gave_one():
    assert BenchContext("s").repeats_for(3) == 3 and BenchContext("s").repeats == 5
    assert BenchContext("s", repeats=7).repeats_for(3) == 7
    seen = []
    ctx = BenchContext("s", repeats=2, echo=lambda s: None)
    ctx.compare("x", {"a": lambda: seen.append(1)}, anchor="a", repeats=9)
    assert len(seen) == 1 + 2


def _strict(path):
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_notes_are_saved_in_results_json_and_plots_still_drawn(isolated):
    """The figures a suite only notes (the mpk suite's "as users call it" rows) were printed
    but missing from results.json; they are rows of their own there, after the measurements,
    and the measurement rows and the plots are as before."""
    pytest.importorskip("matplotlib")
    (isolated / "bench_count.py").write_text(COUNTING.replace(
        '{"a": lambda: calls.append(1)}', '{"a": lambda: calls.append(1), "asp": lambda: None}')
        .replace('anchor="a"', 'anchor="a", bytes=8, flops=2'))
    out = isolated / "out"
    result = _bench("--path", str(isolated), "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = _strict(out / "results.json")
    measured = [r for r in rows if "impl" in r]
    assert sorted(r["impl"] for r in measured) == ["a", "asp"]
    assert all("kind" not in r for r in measured)  # the measurement rows are unchanged
    assert [r for r in rows if "impl" not in r] == [
        {"kind": "note", "suite": "countsuite", "case": None, "note": "before any case"},
        {"kind": "note", "suite": "countsuite", "case": "counted", "note": "calls=4"}]
    for name in ("roofline.png", "ratios.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


FAILS_AFTER_A_CASE = '''
from asp_core import hookimpl


def run(bench):
    bench.compare("noop", {"a": lambda: None}, anchor="a", repeats=1)
    raise RuntimeError("suite bug")


@hookimpl
def asp_register_benchmarks(register):
    register.benchmark(name="halfsuite", func=run)
'''


def test_a_failed_suite_is_marked_in_results_json(isolated):
    """A suite that raised after some cases left those rows in results.json as if it had run
    to the end; a ``"kind": "failed"`` row now says where it stopped and why."""
    (isolated / "bench_half.py").write_text(FAILS_AFTER_A_CASE)
    out = isolated / "out"
    result = _bench("--path", str(isolated), "--out", str(out))
    assert result.exit_code == 1 and "suite(s) failed: halfsuite" in result.output
    rows = _strict(out / "results.json")
    assert [r["impl"] for r in rows if "impl" in r] == ["a"]
    assert rows[-1] == {"kind": "failed", "suite": "halfsuite", "case": "noop",
                        "note": "RuntimeError: suite bug"}


def test_no_ratio_against_an_anchor_without_a_time(tmp_path):
    """An anchor timed inf (a child that gave up) made every other row "x inf" faster, and a
    0 time (a coarse clock) ended the suite with ZeroDivisionError: no ratio (NaN, null in
    results.json) instead."""
    lines = []
    ctx = BenchContext("s", echo=lines.append)
    gave_up = {m.impl: m for m in ctx.record("c", {"ref": [math.inf], "asp": [1.0]}, "ref")}
    assert math.isnan(gave_up["asp"].ratio) and math.isnan(gave_up["ref"].ratio)
    assert "no ratio vs ref" in lines[1] and "inf" not in lines[1]
    zero = {m.impl: m for m in ctx.record("d", {"ref": [1.0], "asp": [0.0, 1e-9]}, "ref",
                                          bytes=8)}
    assert math.isnan(zero["asp"].ratio) and zero["asp"].gbs is None
    assert zero["ref"].ratio == 1.0 and zero["ref"].gbs == pytest.approx(8e-9)
    write_results(ctx.results, tmp_path / "r.json")
    assert [r["ratio"] for r in _strict(tmp_path / "r.json")] == [None, None, 1.0, None]
    with pytest.raises(ValueError, match=r"d: no times for \['asp'\]"):
        ctx.record("d", {"ref": [1.0], "asp": []}, "ref")


def test_a_note_that_is_not_a_string_does_not_fail_the_write(tmp_path):
    ctx = BenchContext("s", echo=lambda s: None)
    ctx.note(pathlib.Path("/some/where"))  # type: ignore[arg-type]
    write_results([], tmp_path / "r.json", ctx.note_rows)
    assert _strict(tmp_path / "r.json")[0]["note"] == "/some/where"


def test_no_suite_checks_its_results_with_assert():
    """The suites' correctness checks were ``assert`` statements, which ``python -O`` strips:
    ``asp bench`` run that way timed a wrong answer as readily as a right one. Checks return
    False or raise instead (also in the scripts the suites run in new processes)."""
    import re

    import asp_gmm.bench
    import asp_mpk.bench
    import asp_stencil.bench

    root = pathlib.Path(__file__).resolve().parents[3]
    files = [pathlib.Path(m.__file__) for m in (asp_gmm.bench, asp_mpk.bench, asp_stencil.bench)]
    files += sorted((root / "benchmarks").glob("bench_*.py"))
    found = [f"{f.name}:{n}" for f in files
             for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
             if re.match(r"\s*assert\b", line)]
    assert len(files) > 8 and found == []

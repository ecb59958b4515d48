"""Benchmark helpers: interleaving, ratios against the anchor, results and roofline files."""

from __future__ import annotations

import json

import pytest

from asp_bench import peak as peak_module
from pytest_asp import requires_compiler
from asp_bench import (
    BenchContext,
    BenchmarkRegistry,
    Measurement,
    interleaved,
    write_results,
    write_ratio_chart,
    write_roofline,
)


def test_interleaved_alternates_implementations():
    order = []
    samples = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                          repeats=3, warmup=1)
    assert order == ["a", "b"] * 4  # one warm-up round, then a, b, a, b, ...
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3}


def test_record_reports_times_measured_elsewhere():
    """Times taken inside subprocesses (first calls with an empty cache) are reported like
    compare's: best, median and the ratio against the anchor."""
    lines = []
    ctx = BenchContext("s", echo=lines.append)
    rows = ctx.record("first call", {"asp": [0.5, 0.7], "ref": [2.0, 3.0]}, anchor="ref")
    by = {m.impl: m for m in rows}
    assert by["asp"].ratio == pytest.approx(4.0) and by["asp"].median == pytest.approx(0.6)
    assert ctx.results == rows and lines[0] == "  first call"
    with pytest.raises(ValueError, match="anchor"):
        ctx.record("x", {"asp": [1.0]}, anchor="ref")


def test_compare_ratios_against_anchor(monkeypatch):
    lines = []
    ctx = BenchContext("s", repeats=2, echo=lines.append)
    fake = {"slow": 0.02, "fast": 0.005}
    monkeypatch.setattr("asp_bench.compare.interleaved",
                        lambda fns, repeats: {k: [fake[k], fake[k] * 2] for k in fns})
    rows = ctx.compare("case", {"slow": lambda: None, "fast": lambda: None}, anchor="slow",
                       bytes=1e6, flops=2e6)
    by = {m.impl: m for m in rows}
    assert by["slow"].ratio == 1.0 and by["fast"].ratio == pytest.approx(4.0)
    assert by["fast"].gbs == pytest.approx(1e6 / 0.005 / 1e9)
    assert by["fast"].gflops == pytest.approx(2e6 / 0.005 / 1e9)
    assert by["fast"].median == pytest.approx(0.0075)
    assert ctx.results == rows
    assert lines[0] == "  case" and "fast" in lines[1] and "x   4.00 vs slow" in lines[1]


def test_compare_checks_first_and_needs_anchor():
    ctx = BenchContext("s", echo=lambda s: None)
    with pytest.raises(ValueError, match="anchor 'c' is not among"):
        ctx.compare("x", {"a": lambda: None}, anchor="c")

    def wrong():
        raise AssertionError("implementations disagree")

    with pytest.raises(AssertionError, match="disagree"):
        ctx.compare("x", {"a": lambda: None}, anchor="a", check=wrong)
    assert ctx.results == []  # a wrong answer is never reported


def test_registry_refuses_duplicates():
    reg = BenchmarkRegistry()
    reg.benchmark("x", func=lambda b: None)
    with pytest.raises(ValueError, match="'x' is already registered"):
        reg.benchmark("x", func=lambda b: None)


def test_results_and_roofline_files(tmp_path):
    ctx = BenchContext("s", repeats=1, echo=lambda s: None)
    ctx.compare("c", {"asp": lambda: None, "numpy": lambda: None}, anchor="numpy", bytes=1e3,
                flops=250)
    write_results(ctx.results, tmp_path / "r.json")
    assert [r["impl"] for r in json.loads((tmp_path / "r.json").read_text())] == ["asp", "numpy"]
    for peak in (None, 80.0):
        assert write_roofline(ctx.results, 10.0, tmp_path / "r.png", peak) == tmp_path / "r.png"
        assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert write_ratio_chart(ctx.results, tmp_path / "q.png") == tmp_path / "q.png"
    bytes_only = BenchContext("t", repeats=1, echo=lambda s: None)
    bytes_only.compare("c", {"a": lambda: None}, anchor="a", bytes=1e3)
    # no flop count: no point on a roofline; only an anchor: no ratio to draw
    assert write_roofline(bytes_only.results, 10.0, tmp_path / "none.png") is None
    assert write_ratio_chart(bytes_only.results, tmp_path / "none.png") is None


def test_roofline_places_points_by_intensity_and_draws_both_roofs(tmp_path, monkeypatch):
    """Each point sits at (flops / bytes, GFLOP/s); the memory roof is STREAM × intensity up to
    the ridge, the compute roof the measured peak."""
    import matplotlib.pyplot as plt

    saved = {}
    monkeypatch.setattr(plt, "close", lambda fig: saved.setdefault("fig", fig))
    rows = [Measurement("s", "lap", "asp", 1e-3, 1e-3, "numpy", 2.0, gbs=16.0, gflops=8.0),
            Measurement("s", "lap", "numpy", 2e-3, 2e-3, "numpy", 1.0, gbs=8.0, gflops=4.0)]
    write_roofline(rows, 20.0, tmp_path / "r.png", peak_gflops=80.0)
    ax = saved["fig"].axes[0]
    points = sorted(tuple(map(float, p)) for c in ax.collections for p in c.get_offsets())
    assert points == [(0.5, 4.0), (0.5, 8.0)]
    roof_x, roof_y = ax.lines[0].get_data()
    for x, y in zip(roof_x, roof_y):
        assert y == pytest.approx(min(20.0 * x, 80.0))
    assert roof_x[0] < 0.5 < 4.0 < roof_x[-1]  # the points and the ridge (80 / 20) are shown


@requires_compiler
def test_peak_gflops_is_measured_with_a_register_resident_fma_loop(tmp_path, monkeypatch):
    """The compute roof: a positive figure, and the loop really uses fma() on many independent
    accumulators (the generated C goes through the printer like every kernel)."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    src = peak_module._peak_source()
    assert "fma(acc[j]" in src and "#pragma omp parallel" in src and "acc[64]" in src
    gflops = peak_module.measure_peak_gflops(repeats=1)
    assert gflops is not None and gflops > 0.1

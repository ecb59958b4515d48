"""Benchmark helpers: interleaving, ratios against the anchor, results and roofline files."""

from __future__ import annotations

import json

import pytest

from asp_core.bench import (
    BenchContext,
    BenchmarkRegistry,
    interleaved,
    write_results,
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
    monkeypatch.setattr("asp_core.bench.interleaved",
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
    ctx.compare("c", {"asp": lambda: None, "numpy": lambda: None}, anchor="numpy", bytes=1e3)
    write_results(ctx.results, tmp_path / "r.json")
    assert [r["impl"] for r in json.loads((tmp_path / "r.json").read_text())] == ["asp", "numpy"]
    assert write_roofline(ctx.results, 10.0, tmp_path / "r.png") == tmp_path / "r.png"
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    no_rates = BenchContext("t", repeats=1, echo=lambda s: None)
    no_rates.compare("c", {"a": lambda: None}, anchor="a")
    assert write_roofline(no_rates.results, 10.0, tmp_path / "none.png") is None

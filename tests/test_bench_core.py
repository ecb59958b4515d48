"""The core's benchmark suite (``benchmarks/bench_core.py``) as ``asp bench core`` runs it: the
first-call case reads the typed ``ctx.compiles`` of a new process and reports through
asp-bench's public API only."""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

import pytest

from pytest_asp import requires_compiler

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
asp_bench = pytest.importorskip("asp_bench", reason="the benchmarks need asp-bench")


def _bench_core():
    spec = importlib.util.spec_from_file_location("bench_core_under_test",
                                                  BENCHMARKS / "bench_core.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@requires_compiler
def test_cold_and_warm_first_calls_are_reported_against_the_import(tmp_path):
    lines: list[str] = []
    bench = asp_bench.BenchContext("core", quick=True, echo=lines.append)
    env = dict(os.environ)
    env.pop("ASP_MODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    # each new process asserts its compile was (cold) or was not (warm) a cache hit
    _bench_core()._cold_warm(bench, env, repeats=1)
    rows = {m.impl: m for m in bench.results}
    assert set(rows) == {"import (anchor)", "cold first call", "warm first call"}
    assert rows["import (anchor)"].ratio == 1.0
    assert all(m.anchor == "import (anchor)" and m.best > 0 for m in rows.values())
    assert lines[0] == "  new process: first call of a kernel"
    assert sum("vs import (anchor)" in line for line in lines) == 3
    assert "cold first call (empty cache: compile + load)" in bench.notes[-1]


def test_benchmarks_use_only_the_public_bench_api():
    """No suite reaches a private attribute of asp-bench's ``BenchContext`` (``bench._x``)."""
    private = []
    for path in sorted(BENCHMARKS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "bench" and node.attr.startswith("_")):
                private.append(f"{path.name}:{node.lineno}: bench.{node.attr}")
    assert private == []


def test_repeats_option_wins_over_the_suites_own_count(monkeypatch):
    """``asp bench core --repeats 2`` timed each case max(5, 2) = 5 times (3 with --quick,
    whatever the option); the suite's 3/5 is only its default."""
    module = _bench_core()
    seen: list[tuple[str, int]] = []
    for part in ("_startup", "_cold_warm"):
        monkeypatch.setattr(module, part, lambda bench, env, repeats, part=part:
                            seen.append((part, repeats)))
    monkeypatch.setattr(module, "_dispatch", lambda bench, repeats: seen.append(("_dispatch",
                                                                                 repeats)))
    for kwargs, expected in (({"repeats": 2}, 2), ({"repeats": 2, "quick": True}, 2),
                             ({}, 5), ({"quick": True}, 3)):
        seen.clear()
        module.run_core_benchmarks(asp_bench.BenchContext("core", echo=lambda s: None,
                                                          **kwargs))
        assert seen == [("_startup", expected), ("_dispatch", expected),
                        ("_cold_warm", expected)], kwargs

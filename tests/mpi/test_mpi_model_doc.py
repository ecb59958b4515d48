"""The scaling model in docs/guides/mpi.md is the one benchmarks/bench_mpi.py computes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_mpi_for_test",
                                                  ROOT / "benchmarks" / "bench_mpi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mpi_guide_tables_match_the_model():
    table = _bench_module().scaling_table()
    doc = (ROOT / "docs" / "guides" / "mpi.md").read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| ")]
    assert len(rows) == 2 * 6  # header + 5 node counts, strong and weak
    for row in rows:
        assert row in doc, f"docs/guides/mpi.md is out of date with the model: {row}"


def test_mpi_model_communication_avoidance_pays_at_scale():
    m = _bench_module()
    one = m.model_times(1, weak=False)
    big = m.model_times(4096, weak=False)
    # no communication on one node: deeper halos only add nothing there
    assert one["stencil s=1"] == one["stencil s=4"]
    # at 4096 nodes latency dominates: fewer, deeper exchanges and one reduction per s steps win
    assert big["stencil s=4"] < big["stencil s=1"]
    assert big["cg CA s=8"] < big["cg plain"]

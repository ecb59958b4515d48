"""Standalone run of the ``stencil-temporal`` suite (same code as ``asp bench stencil-temporal``).

Usage: ``python benchmarks/bench_stencil_temporal.py [--quick]``
"""

from __future__ import annotations

import sys

from asp_bench import BenchContext
from asp_stencil.temporal.bench import run_temporal_benchmarks


def main(argv: list[str]) -> int:
    bench = BenchContext("stencil-temporal", quick="--quick" in argv)
    print(f"stencil-temporal{' (quick)' if bench.quick else ''}")
    run_temporal_benchmarks(bench)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Standalone runner of the asp-mpk benchmark (same code as ``asp bench mpk``).

    python benchmarks/bench_mpk.py [--quick]
"""

from __future__ import annotations

import sys

from asp_bench import BenchContext

from asp_mpk.bench import run_benchmarks


def main(argv: list[str]) -> None:
    bench = BenchContext("mpk", quick="--quick" in argv)
    print("mpk: matrix powers (PA1) and s-step CG vs SciPy (ratios: higher is faster)")
    run_benchmarks(bench)


if __name__ == "__main__":
    main(sys.argv[1:])

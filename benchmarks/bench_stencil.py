"""Standalone runner of the stencil benchmarks (same code as ``asp bench stencil``).

    python benchmarks/bench_stencil.py [--quick]
"""

import sys

from asp_bench import BenchContext
from asp_stencil.bench import run_stencil_benchmarks

if __name__ == "__main__":
    bench = BenchContext("stencil", quick="--quick" in sys.argv)
    run_stencil_benchmarks(bench)

"""Standalone runner of the NumPy-platform benchmarks (same code as ``asp bench stencil-numpy``).

    python benchmarks/bench_stencil_numpy.py [--quick]
"""

import sys

from asp_stencil_numpy.bench import run_stencil_numpy_benchmarks

from asp_bench import BenchContext

if __name__ == "__main__":
    bench = BenchContext("stencil-numpy", quick="--quick" in sys.argv)
    run_stencil_numpy_benchmarks(bench)

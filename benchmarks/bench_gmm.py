"""Standalone runner of the asp-gmm benchmark (same code as ``asp bench gmm``).

    python benchmarks/bench_gmm.py [--quick]
"""

from __future__ import annotations

import sys

from asp_gmm.bench import run_gmm_benchmarks

from asp_bench import BenchContext


def main(argv: list[str]) -> None:
    bench = BenchContext("gmm", quick="--quick" in argv)
    print("gmm: GaussianMixture.fit as users call it, and one EM iteration, vs scikit-learn")
    run_gmm_benchmarks(bench)


if __name__ == "__main__":
    main(sys.argv[1:])

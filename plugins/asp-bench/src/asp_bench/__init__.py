"""asp-bench: the helpers behind ``asp bench``, for plugins that register benchmark suites.

Plugins register suites through the ``asp_register_benchmarks`` hook (its ``register`` is a
:class:`BenchmarkRegistry`); ``asp bench`` collects and runs them, each receiving a
:class:`BenchContext` whose :meth:`~BenchContext.compare` times the implementations of one case
interleaved and reports ratios against the anchor, then writes ``results.json``, a roofline
(roofs measured in the same run: :func:`measure_stream_copy`, :func:`measure_peak_gflops`) and a
ratio chart. Kept out of ``asp-core``: specialising a
kernel needs none of it.
"""

from asp_bench.charts import write_ratio_chart, write_results, write_roofline
from asp_bench.compare import BenchContext, Measurement, Note, interleaved
from asp_bench.peak import measure_peak_gflops
from asp_bench.registry import Benchmark, BenchmarkRegistry, collect_benchmarks
from asp_bench.stream import measure_stream_copy, stream_copy_kernel

__version__ = "0.1.0"

__all__ = ["Benchmark", "BenchmarkRegistry", "BenchContext", "Measurement", "Note", "interleaved",
           "collect_benchmarks", "measure_peak_gflops", "measure_stream_copy", "stream_copy_kernel",
           "write_results", "write_roofline", "write_ratio_chart", "__version__"]

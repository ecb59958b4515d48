"""The suites ``asp bench`` can run: what plugins register through ``asp_register_benchmarks``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from asp_bench.compare import BenchContext

__all__ = ["Benchmark", "BenchmarkRegistry", "collect_benchmarks"]


@dataclass
class Benchmark:
    name: str
    func: Callable[[BenchContext], None]
    specializer: str = ""
    description: str = ""
    plugin: str = ""


@dataclass
class BenchmarkRegistry:
    """Passed to ``asp_register_benchmarks`` as ``register``."""

    benchmarks: dict[str, Benchmark] = field(default_factory=dict)
    #: the plugin whose hook is running (set by :func:`asp_core.plugins.call_per_plugin`)
    plugin: str = ""

    def benchmark(self, name: str, func: Callable[[BenchContext], None], specializer: str = "",
                  description: str = "") -> None:
        if name in self.benchmarks:
            raise ValueError(f"benchmark {name!r} is already registered by plugin "
                             f"{self.benchmarks[name].plugin!r}")
        self.benchmarks[name] = Benchmark(name, func, specializer, description, self.plugin)


def collect_benchmarks() -> BenchmarkRegistry:
    """Every suite registered by installed plugins (and benchmark files loaded as plugins)."""
    from asp_core.plugins import call_per_plugin

    reg = BenchmarkRegistry()
    call_per_plugin("asp_register_benchmarks", register=reg)
    return reg

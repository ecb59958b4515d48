"""Benchmarks that compare Asp against an anchor in the same process run.

Plugins register suites through ``asp_register_benchmarks``; ``asp bench`` runs them. A suite
calls :meth:`BenchContext.compare` with the implementations of one case; repetitions are
interleaved (a, b, c, a, b, c, ...) so that the noise of a shared machine hits all of them alike,
and the result is reported as ratios against the anchor, never as bare absolute times.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["Benchmark", "BenchmarkRegistry", "BenchContext", "Measurement", "interleaved",
           "collect_benchmarks", "write_roofline", "write_ratio_chart"]


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
    _plugin: str = ""

    def benchmark(self, name: str, func: Callable[[BenchContext], None], specializer: str = "",
                  description: str = "") -> None:
        if name in self.benchmarks:
            raise ValueError(f"benchmark {name!r} is already registered by plugin "
                             f"{self.benchmarks[name].plugin!r}")
        self.benchmarks[name] = Benchmark(name, func, specializer, description, self._plugin)


@dataclass
class Measurement:
    """One implementation of one case: best and median time, and derived rates."""

    suite: str
    case: str
    impl: str
    best: float
    median: float
    anchor: str
    ratio: float = 1.0  # anchor best / this best: > 1 means faster than the anchor
    gbs: float | None = None
    gflops: float | None = None
    note: str = ""


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1,
                min_time: float = 0.0) -> dict[str, list[float]]:
    """Time each callable ``repeats`` times, interleaving them; returns the samples."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < repeats or (time.perf_counter() - start < min_time and rounds < 100 * repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
        rounds += 1
    return samples


class BenchContext:
    """What a suite gets: problem-size hints, the machine, and :meth:`compare`."""

    def __init__(self, suite: str, quick: bool = False, repeats: int = 5,
                 echo: Callable[[str], None] = print) -> None:
        self.suite = suite
        self.quick = quick
        self.repeats = repeats
        self.results: list[Measurement] = []
        self.notes: list[str] = []
        self._echo = echo
        self._stream: float | None = None

    @property
    def hardware(self) -> Any:
        from asp_core.hardware import query

        return query()

    def stream_copy_gbs(self) -> float:
        """STREAM copy bandwidth measured now (same run as the suite)."""
        if self._stream is None:
            from asp_core.hardware import measure_stream_copy

            self._stream = measure_stream_copy(max(4 * self.hardware.last_level_cache, 64 << 20))
        return self._stream

    def note(self, text: str) -> None:
        """A free-form line printed with the results (e.g. a cold-start time)."""
        self.notes.append(text)
        self._echo(f"  {text}")

    def compare(self, case: str, impls: dict[str, Callable[[], Any]], anchor: str, *,
                bytes: float | None = None, flops: float | None = None,
                repeats: int | None = None, check: Callable[[], None] | None = None
                ) -> list[Measurement]:
        """Time ``impls`` interleaved; ratios are against ``impls[anchor]``'s best time.

        ``bytes``/``flops`` per call give GB/s and GFLOP/s columns; ``check`` runs first
        (e.g. asserting all implementations agree) so a fast wrong answer is never reported.
        """
        if anchor not in impls:
            raise ValueError(f"anchor {anchor!r} is not among the implementations {list(impls)}")
        if check is not None:
            check()
        return self.record(case, interleaved(impls, repeats or self.repeats), anchor,
                           bytes=bytes, flops=flops)

    def record(self, case: str, samples: dict[str, list[float]], anchor: str, *,
               bytes: float | None = None, flops: float | None = None) -> list[Measurement]:
        """Report times measured elsewhere (e.g. inside fresh subprocesses, for first calls
        with an empty cache) exactly as :meth:`compare` reports its own."""
        if anchor not in samples:
            raise ValueError(f"anchor {anchor!r} is not among the implementations "
                             f"{list(samples)}")
        ref = min(samples[anchor])
        out = []
        for impl, ts in samples.items():
            best = min(ts)
            out.append(Measurement(self.suite, case, impl, best, statistics.median(ts), anchor,
                                   ref / best, bytes / best / 1e9 if bytes else None,
                                   flops / best / 1e9 if flops else None))
        self.results.extend(out)
        self._print(case, out)
        return out

    def _print(self, case: str, rows: list[Measurement]) -> None:
        self._echo(f"  {case}")
        for m in sorted(rows, key=lambda m: m.best):
            extra = "".join([f"  {m.gbs:7.1f} GB/s" if m.gbs else "",
                             f"  {m.gflops:7.1f} GFLOP/s" if m.gflops else ""])
            self._echo(f"    {m.impl:<22} {m.best * 1e3:10.3f} ms  "
                       f"x{m.ratio:7.2f} vs {m.anchor}{extra}")


def collect_benchmarks() -> BenchmarkRegistry:
    """Every suite registered by installed plugins (and benchmark files loaded as plugins)."""
    from asp_core.plugins import _call_per_plugin

    reg = BenchmarkRegistry()
    _call_per_plugin("asp_register_benchmarks", register=reg)
    return reg


def write_results(results: list[Measurement], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in results], indent=1))


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("the plots need matplotlib: pip install 'asp-core[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _is_asp(impl: str) -> bool:
    return impl.startswith("asp")


def write_roofline(results: list[Measurement], stream_gbs: float, path: Path,
                   peak_gflops: float | None = None) -> Path | None:
    """A roofline PNG: each implementation of each case that reports both ``bytes`` and
    ``flops`` is a point at (arithmetic intensity in flop/byte, achieved GFLOP/s), under the
    memory roof (STREAM copy GB/s × intensity) and the compute roof (``peak_gflops``), both
    measured in the same run. ``None`` when no case counts its flops."""
    import math

    rows = [r for r in results if r.gbs and r.gflops]
    if not rows:
        return None
    plt = _pyplot()
    ai = [r.gflops / r.gbs for r in rows]  # type: ignore[operator]
    ridge = peak_gflops / stream_gbs if peak_gflops else max(ai)
    lo, hi = min(min(ai), ridge) / 4, max(max(ai), ridge) * 4
    fig, ax = plt.subplots(figsize=(8, 5.5))
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    roof = [min(stream_gbs * x, peak_gflops or math.inf) for x in xs]
    ax.plot(xs, roof, color="k", linewidth=1.5)
    ax.annotate(f"memory: STREAM copy {stream_gbs:.1f} GB/s", (xs[20], roof[20]),
                rotation=0, fontsize=8, xytext=(4, 6), textcoords="offset points")
    if peak_gflops:
        ax.annotate(f"compute: FMA peak {peak_gflops:.1f} GFLOP/s", (ridge, peak_gflops),
                    fontsize=8, xytext=(4, 4), textcoords="offset points")
    markers = "osD^vP*Xh<>"
    impls = sorted({r.impl for r in rows}, key=lambda i: (not _is_asp(i), i))
    for k, impl in enumerate(impls):
        pts = [(a, r.gflops) for a, r in zip(ai, rows) if r.impl == impl]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=markers[k % len(markers)],
                   s=60 if _is_asp(impl) else 40, zorder=3, label=impl,
                   edgecolors="k" if _is_asp(impl) else "none")
    for case in dict.fromkeys(r.case for r in rows):  # one label per case, at its best point
        a, r = max(((a, r) for a, r in zip(ai, rows) if r.case == case),
                   key=lambda ar: ar[1].gflops or 0.0)
        ax.annotate(case, (a, r.gflops), fontsize=7, xytext=(6, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    achieved = [r.gflops or 0.0 for r in rows]  # every row has gflops (filtered above)
    ax.set_ylim(min(achieved) / 4, max([peak_gflops or 0.0, *achieved]) * 2)
    ax.set_xlabel("arithmetic intensity (flop / byte of compulsory memory traffic)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("Roofline: every implementation, roofs measured in the same run")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_ratio_chart(results: list[Measurement], path: Path) -> Path | None:
    """A bar chart PNG of every implementation's speed ratio against its case's anchor (log
    scale; right of 1 is faster than the anchor), asp's bars highlighted."""
    rows = [r for r in results if r.impl != r.anchor]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(rows) + 1.5))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [r.ratio for r in rows],
            color=["tab:orange" if _is_asp(r.impl) else "tab:blue" for r in rows])
    ax.axvline(1.0, color="k", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r.suite}: {r.case} [{r.impl}] vs {r.anchor}" for r in rows],
                       fontsize=7)
    ax.set_xlabel("speed-up over the anchor (anchor time / time; > 1 is faster)")
    ax.set_title("Ratios against the anchor of each case, measured interleaved in one run")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

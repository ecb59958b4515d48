"""What ``asp bench`` writes: the measurements as JSON, a roofline and a ratio chart (PNG)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from asp_bench.compare import Measurement, Note

__all__ = ["write_results", "write_roofline", "write_ratio_chart"]


def write_results(results: list[Measurement], path: Path, notes: Sequence[Note] = ()) -> None:
    """``results.json``: a list with one object per measurement, then one per note
    (``{"kind": "note", "suite", "case", "note"}``, ``"kind": "failed"`` for a suite that
    raised), so the figures a suite only notes are saved too. A note row has no ``impl``:
    readers of the measurements keep the rows that have one."""
    # inf/NaN (e.g. a time recorded as inf by a child that gave up) would be written as the
    # non-JSON tokens Infinity/NaN, which strict readers refuse: they become null
    rows: list[dict[str, Any]] = [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v
         for k, v in asdict(r).items()} for r in results]
    rows += [{"kind": n.kind, "suite": n.suite, "case": n.case, "note": n.text} for n in notes]
    text = json.dumps(rows, indent=1, allow_nan=False)
    # written aside then renamed: Ctrl-C during the write must not leave a truncated
    # results.json in place of the previous one
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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

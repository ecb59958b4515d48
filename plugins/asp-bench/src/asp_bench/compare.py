"""Timing a case: implementations interleaved, reported as ratios against the anchor.

A suite calls :meth:`BenchContext.compare` with the implementations of one case; repetitions
are interleaved (a, b, c, a, b, c, ...) so that the noise of a shared machine hits all of them
alike, and the result is reported as ratios against the anchor, never as bare absolute times.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["BenchContext", "Measurement", "Note", "interleaved"]


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


@dataclass
class Note:
    """A line a suite noted (:meth:`BenchContext.note`), kept for ``results.json``: suites put
    figures there that no ratio row carries (a first call in a new process, the cost of the
    public call beyond its kernel)."""

    suite: str
    text: str
    case: str | None = None  # the case recorded last before it (None: before any)
    kind: str = "note"  # "failed": the suite raised here, its remaining cases are missing


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

    def __init__(self, suite: str, quick: bool = False, repeats: int | None = None,
                 echo: Callable[[str], None] = print) -> None:
        self.suite = suite
        self.quick = quick
        # ``repeats`` is the user's (``asp bench --repeats``) and wins over the count a suite
        # asks for (``compare(..., repeats=3)``, :meth:`repeats_for`): it used to be the other
        # way round, so ``--repeats 20`` silently timed such a case 3 times. None: not given,
        # each suite's own count, else 5
        self.repeats = 5 if repeats is None else repeats
        self._user_repeats = repeats
        self.results: list[Measurement] = []
        self.note_rows: list[Note] = []  # the notes with their place, as results.json keeps them
        self._echo = echo
        self._stream: float | None = None

    @property
    def notes(self) -> list[str]:
        """The lines the suite noted so far (:meth:`note`)."""
        return [n.text for n in self.note_rows if n.kind == "note"]

    @property
    def hardware(self) -> Any:
        from asp_core.hardware import query

        return query()

    def stream_copy_gbs(self) -> float:
        """STREAM copy bandwidth measured now (same run as the suite)."""
        if self._stream is None:
            from asp_bench import stream

            self._stream = stream.measure_stream_copy(max(4 * self.hardware.last_level_cache, 64 << 20))
        return self._stream

    def repeats_for(self, default: int) -> int:
        """How many times to repeat a measurement the suite would repeat ``default`` times:
        ``default`` unless the user gave ``--repeats``, whose count wins."""
        return default if self._user_repeats is None else self._user_repeats

    def note(self, text: str) -> None:
        """A free-form line printed with the results (e.g. a cold-start time) and saved with
        them in results.json (it was only printed, so the saved results lost such figures)."""
        text = str(text)  # a non-str note would fail the JSON write after every suite ran
        self.note_rows.append(Note(self.suite, text, self.results[-1].case if self.results
                                   else None))
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
        # ``repeats=0`` used to fall back to the default silently and a negative count failed on
        # min() of no timings: refused here with the reason (also where --repeats overrides it)
        if repeats is not None and repeats < 1:
            raise ValueError(f"repeats must be at least 1, not {repeats}")
        n = self.repeats_for(self.repeats if repeats is None else repeats)
        if n < 1:
            raise ValueError(f"repeats must be at least 1, not {n}")
        if check is not None:
            # a check written as a predicate (``check=lambda: np.allclose(a, b)``) that returns
            # False must fail like one that raises: a wrong answer is never timed
            ok = check()
            if ok is not None and not ok:
                raise AssertionError(f"{case}: check returned {ok!r}")
        return self.record(case, interleaved(impls, n), anchor, bytes=bytes, flops=flops)

    def record(self, case: str, samples: dict[str, list[float]], anchor: str, *,
               bytes: float | None = None, flops: float | None = None) -> list[Measurement]:
        """Report times measured elsewhere (e.g. inside fresh subprocesses, for first calls
        with an empty cache) exactly as :meth:`compare` reports its own."""
        if anchor not in samples:
            raise ValueError(f"anchor {anchor!r} is not among the implementations "
                             f"{list(samples)}")
        empty = [impl for impl, ts in samples.items() if not ts]
        if empty:  # else min() of no timings, a message that names nothing
            raise ValueError(f"{case}: no times for {empty}")
        ref = min(samples[anchor])
        # an anchor without a usable time (inf from a child that gave up, 0 from a coarse
        # clock) gives no ratio: NaN (null in results.json), not x inf or x 0.00 for the others
        anchored = 0.0 < ref < math.inf
        out = []
        for impl, ts in samples.items():
            best = min(ts)
            timed = best > 0.0  # a 0 time was a ZeroDivisionError that ended the suite
            out.append(Measurement(self.suite, case, impl, best, statistics.median(ts), anchor,
                                   ref / best if anchored and timed else math.nan,
                                   bytes / best / 1e9 if bytes and timed else None,
                                   flops / best / 1e9 if flops and timed else None))
        self.results.extend(out)
        self._print(case, out)
        return out

    def _print(self, case: str, rows: list[Measurement]) -> None:
        self._echo(f"  {case}")
        for m in sorted(rows, key=lambda m: m.best):
            extra = "".join([f"  {m.gbs:7.1f} GB/s" if m.gbs else "",
                             f"  {m.gflops:7.1f} GFLOP/s" if m.gflops else ""])
            ratio = f"x{m.ratio:7.2f}" if math.isfinite(m.ratio) else "no ratio"
            self._echo(f"    {m.impl:<22} {m.best * 1e3:10.3f} ms  "
                       f"{ratio} vs {m.anchor}{extra}")

"""Which way :func:`asp_mpk.cg` runs its next s steps on one matrix, decided by timing them.

Three modes do the same s CG steps: ``stored`` (the basis written by the matrix-powers kernel,
then combined), ``stream`` (the basis recomputed block by block, never stored) and ``classical``
(s iterations of classical CG in fused generated passes).  Which is fastest depends on the
machine, so each is timed on the solve's own outer steps.

A single timing cannot be trusted: the first step of a mode touches fresh pages, and early in a
process's life gcc (the background specialisation) or other programs compete for the cores.
Taken once and kept, such a sample made a slow mode look fast for the rest of the process.  So
a mode's time is the best of its samples, every mode is sampled :data:`ModeTimes.SAMPLES` times
(a rival at most once every :data:`ModeTimes.RETRY_AFTER` outer steps, so exploring costs a few
outer steps in hundreds), and samples taken while asp-mpk compiles in the background are not
recorded.  While the variants of the stored basis are still being tuned, its steps are
provisional samples: the solve runs the fastest mode so far and tunes in between.  A rival
whose best time, after :data:`ModeTimes.TRIES_BEFORE_GIVING_UP` tries, is still more than
:data:`ModeTimes.GIVE_UP` times the fastest's is not tried again on this matrix: no variant a
further tuning step could find closes such a gap, and each try costs the solve that much.  A
rival more than :data:`ModeTimes.GIVE_UP_AT_ONCE` times the fastest is given up after one try:
fresh pages cost a first try far less than that, and a second try of it would cost more than
all the tuning it could still win back in the solve.  The caller's default (the first mode it
offers: classical CG, cheap to try again) is never given up on one try: on a busy machine one
try of its two-thread passes waited for a descheduled thread at a barrier (0.15 s for 4 steps
that take 40 us), and the solver then ran a mode twice as slow for the rest of the process.

A mode never tried on a matrix, other than the caller's default (the first it offers), is first
tried in its :attr:`ModeTimes.explore_from_solve`-th
solve (counted by :meth:`ModeTimes.begin_solve`), one such mode per solve, once some mode is
timed: a faster mode found during a solve pays back only over later solves, while a losing try
costs the solve its whole excess (the stored basis ran 16x a classical step on 3-D Poisson 100³
on the Intel AVX-512 machine, a third of that solve), so a process solving with a matrix once
or twice never pays for exploring, and one that keeps solving with it does, once.
"""

from __future__ import annotations

import math
import threading

__all__ = ["ModeTimes"]


class ModeTimes:
    """Best seconds per s CG steps of each mode on one matrix (kept across solves)."""

    #: samples a mode gets before only the fastest runs
    SAMPLES = 3
    #: outer steps between two samples of a mode that is not the fastest
    RETRY_AFTER = 8
    #: a rival this many times slower than the fastest (by best times) is given up ...
    GIVE_UP = 3.0
    #: ... once it has been tried this often (its first try may touch fresh pages)
    TRIES_BEFORE_GIVING_UP = 2
    #: ... or after one try when it is this many times slower
    GIVE_UP_AT_ONCE = 6.0

    #: the solve in which modes never tried are first tried (MatrixPowers' solves)
    EXPLORE_FROM_SOLVE = 3

    def __init__(self, *, explore_from_solve: int = 0) -> None:
        #: the solve (see :meth:`begin_solve`) from which a mode never tried may be tried, once
        #: some mode is timed, one per solve (0: at once, no limit)
        self.explore_from_solve = int(explore_from_solve)
        self._solve = 0
        self._explored_in = -1      # the solve in which a new mode was last tried
        self.best: dict[str, float] = {}
        self.samples: dict[str, int] = {}
        self._tried_at: dict[str, int] = {}
        self._tries: dict[str, int] = {}
        self._steps = 0
        self._lock = threading.Lock()

    def begin_solve(self) -> None:
        """A solve with this matrix starts (counts solves for :attr:`explore_from_solve`)."""
        with self._lock:
            self._solve += 1

    def choose(self, modes: list[str]) -> str:
        """The mode of the next outer step: one never timed (a mode never tried other than
        ``modes[0]``, the caller's default: only when none is timed, or from solve
        :attr:`explore_from_solve` on, one per solve), else a rival still short of samples
        whose turn has come and not given up, else the fastest."""
        with self._lock:
            self._steps += 1
            timed = [m for m in modes if m in self.best]
            for mode in modes:
                if mode in self.best or self._steps - self._tried_at.get(mode, -1) <= 1:
                    continue
                if mode in self._tried_at or not timed or mode == modes[0]:
                    return mode
                if self.explore_from_solve == 0:
                    return mode
                if self._solve >= self.explore_from_solve and self._explored_in != self._solve:
                    self._explored_in = self._solve
                    return mode
            if not timed:
                return modes[0]
            fastest = min(timed, key=self.best.__getitem__)
            for mode in timed:
                if mode != fastest and self.samples[mode] < self.SAMPLES and \
                        self._steps - self._tried_at.get(mode, 0) >= self.RETRY_AFTER and \
                        not self._hopeless(mode, fastest, at_once=mode != modes[0]):
                    return mode
            return fastest

    def _hopeless(self, mode: str, fastest: str, *, at_once: bool) -> bool:
        tries, ratio = self._tries.get(mode, 0), self.best[mode] / self.best[fastest]
        return (tries >= self.TRIES_BEFORE_GIVING_UP and ratio > self.GIVE_UP) or \
            (at_once and tries >= 1 and ratio > self.GIVE_UP_AT_ONCE)

    def record(self, mode: str, seconds: float, *, trusted: bool = True,
               final: bool = True) -> None:
        """One outer step of ``mode`` took ``seconds``.  ``trusted=False``: taken while asp-mpk
        compiled in the background (dropped; the mode is tried again later).  ``final=False``:
        the mode is still being tuned (the time bounds it from above, but does not count as
        one of its samples, so it keeps being tried, every :data:`RETRY_AFTER` steps)."""
        with self._lock:
            self._tried_at[mode] = self._steps
            if not trusted or not math.isfinite(seconds):
                return
            self.best[mode] = min(self.best.get(mode, math.inf), float(seconds))
            self._tries[mode] = self._tries.get(mode, 0) + 1
            if final:
                self.samples[mode] = self.samples.get(mode, 0) + 1
            else:
                self.samples.setdefault(mode, 0)

    def seconds(self) -> dict[str, float]:
        """The best time of each mode timed so far."""
        with self._lock:
            return dict(self.best)

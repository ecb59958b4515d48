"""What ``StencilKernel.iterate`` runs: plain sweeps, temporal blocking or the GPU device loop.

:func:`iterate` runs sweeps through the kernel's dispatcher (that validates the grids,
specialises, picks the platform, tunes the single sweep, or falls back to Python with the
core's warning) until the dispatcher has bound its tuned callable, then hands the remaining
sweeps on:

* the tuned callable runs on CUDA (a :class:`~asp_stencil.cuda.backend.DeviceSweep`): all
  sweeps run on the device with one upload and one download;
* it runs on OpenMP: an :class:`~asp_core.autotune.Autotuner` picks between *plain sweeps* (the
  tuned single-sweep callable in a loop) and the temporally blocked variants (block depth and
  tile sizes): those of the ``openmp-temporal`` platform, which :mod:`.runner` gets through the
  core's phases like any specialisation's. Each is timed on chunks of the real iteration.
  Splitting an iteration into chunks is exact (blocked sweeps are bitwise equal to plain ones),
  so tuning costs no extra sweep; the winner is kept in the perf database, so a later process
  runs it from its first call. No cache size decides: a virtual machine may report its host's
  L3.

The blocked library is built once it can pay off (ski rental): its compile takes several
times the single sweep's (1.2-2.7 s against 0.2-1 s), which short iterations never earn back.
Until the plain sweeps of a grid signature have taken, or one call foresees from its first
sweep, the seconds the build is foreseen to take (:data:`BLOCKED_COMPILE_FACTOR` times the
single sweep's longest compile, as compiled here or by the process that cached it), ``iterate``
runs plain sweeps; then it builds the blocked variants and times them. Where the code cache
holds the blocked library, an iteration foreseen to take :data:`WORTH_ASKING_SECONDS` or more
builds (loads) it at once.

Kernels the blocked code cannot take (the platform's lowering raises the reason
:func:`~.analysis.temporal_plan` gives) and other platforms (pure Python, NumPy, a fallback)
always run plain sweeps. ``ASP_STENCIL_TEMPORAL`` or the kernel option ``temporal`` (``auto``,
``on``: blocked variants only, ``off``) overrides the choice; ``ASP_AUTOTUNE=off`` keeps plain
sweeps (the default variant), and then builds no blocked code: nothing would time it.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any, Callable

from asp_core import config
from asp_core.autotune import Autotuner
from asp_core.decisions import PLATFORM, Decision

from ..cuda.backend import DeviceSweep
from ..kernel import STATE_PREFIX, object_memo
from ..signature import check_arity, stencil_signature
from .runner import Blocked, build_is_cached, built_iterator, get_iterator, iterators

__all__ = ["iterate", "iterate_decision", "temporal_mode", "prune_slow", "IterateChoice",
           "ITERATE", "PLAIN", "PRUNE_FACTOR", "BUILD_AFTER_COMPILES", "BLOCKED_COMPILE_FACTOR",
           "WORTH_ASKING_SECONDS"]

#: the name of the plain-sweep candidate among the blocked ones
PLAIN = "plain"
#: the kind of the typed decision (:class:`~asp_core.decisions.Decision`) the choice records
ITERATE = "iterate"


def temporal_mode(kernel: Any) -> str:
    """``auto`` (time plain and blocked sweeps), ``on`` (blocked only, where possible) or
    ``off``, from the kernel option ``temporal``, else ``ASP_STENCIL_TEMPORAL``."""
    from ..kernel import kernel_options, temporal_choice

    options = kernel_options(kernel)
    if "temporal" in options:
        return temporal_choice(options["temporal"], "the kernel option temporal")
    return temporal_choice(os.environ.get("ASP_STENCIL_TEMPORAL", "").strip() or "auto",
                           "ASP_STENCIL_TEMPORAL")


def _swap(gs: list, steps: int) -> None:
    if steps % 2:
        gs[-1], gs[-2] = gs[-2], gs[-1]


def _plain(fn: Callable[..., Any], gs: list, steps: int) -> None:
    for _ in range(steps):
        fn(*gs)
        gs[-1], gs[-2] = gs[-2], gs[-1]


#: after one timing of every candidate, those slower than this many times the fastest are not
#: timed again (each timing is a chunk of a real call: a slow candidate costs the user time)
PRUNE_FACTOR = 1.5


def prune_slow(tuner: Autotuner, factor: float = PRUNE_FACTOR) -> list[str]:
    """Once every candidate of ``tuner`` has one timing, exclude those slower than ``factor``
    times the fastest (successive halving, one round), keeping at least two, so that the
    winner is still decided by the tuner's repeated timings; returns the excluded names."""
    times = tuner.times
    if tuner.done or any(not times.get(v) for v in tuner.variants):
        return []
    ranked = sorted(tuner.variants, key=lambda v: min(times[v]))
    best = min(times[ranked[0]])
    slow = [v for v in ranked[2:] if min(times[v]) > factor * best]
    for v in slow:
        tuner.exclude(v, f"first timing over {factor}x the fastest")
    return slow


class IterateChoice:
    """Plain sweeps against the blocked variants of one :class:`~.runner.Blocked`.

    Candidates are timed per sweep on chunks of ``chunk`` sweeps of real ``iterate`` calls (at
    most deep enough for the deepest block; shorter iterations get their own, shorter chunks,
    since blocking gains less on them). The rest of an iteration shorter than a chunk runs the
    winner, or plain sweeps while tuning. After one timing of each, candidates slower than
    :data:`PRUNE_FACTOR` times the fastest are dropped (:func:`prune_slow`). While undecided,
    concurrent iterations run one at a time: a chunk timed beside another thread's sweeps
    shared the cores with them (two OpenMP teams on two cores: timings tens of times too
    long), and the candidate timed so lost.
    """

    def __init__(self, blocked: Blocked, chunk: int, mode: str, label: str) -> None:
        self.blocked = blocked
        self.chunk = chunk
        names = ([] if mode == "on" else [PLAIN]) + list(blocked.runs)
        self.pruned = False
        self._timing = threading.Lock()
        _CHOICES.add(self)
        self.tuner = Autotuner(f"{blocked.key}:iterate:{chunk}:{mode}", names,
                               params=blocked.params, label=label, repeats=2,
                               on_event=blocked.ctx.tuning_events(ITERATE, chunk=chunk,
                                                                  mode=mode))

    def run(self, sweep: Callable[..., Any], gs: list, steps: int) -> None:
        """``steps`` sweeps on ``gs`` (swapped in place as plain sweeps would leave them)."""
        if not self.tuner.done:
            with self._timing:
                steps = self._tune(sweep, gs, steps)
        if steps > 0:
            self._sweeps(sweep, gs, steps, tuning=False)

    def _tune(self, sweep: Callable[..., Any], gs: list, steps: int) -> int:
        """This iteration's sweeps while undecided, a timed chunk at a time and plain sweeps for
        a rest shorter than a chunk (the caller holds ``_timing``: another thread's sweeps,
        timed or not, would share the cores with a timed chunk); returns the sweeps left for
        the winner once decided."""
        while not self.tuner.done and steps >= self.chunk:
            self._sweeps(sweep, gs, self.chunk, tuning=True)
            steps -= self.chunk
        if self.tuner.done or steps == 0:
            return steps
        self._sweeps(sweep, gs, steps, tuning=False)
        return 0

    def _sweeps(self, sweep: Callable[..., Any], gs: list, n: int, tuning: bool) -> None:
        """``n`` sweeps of the candidate to time (``tuning``), else of the winner, or plain
        ones while undecided."""
        name = self.tuner.next() if tuning or self.tuner.done else PLAIN
        start = time.perf_counter()
        if name == PLAIN:
            _plain(sweep, gs, n)
        else:
            self.blocked.runs[name](*gs, steps=n)
            _swap(gs, n)
        if tuning:
            self.tuner.report(name, (time.perf_counter() - start) / n)
            if not self.pruned and all(self.tuner.times.get(v) for v in self.tuner.variants):
                prune_slow(self.tuner)
                self.pruned = True


#: every plain-vs-blocked choice, for the reset of their locks in a forked child
_CHOICES: weakref.WeakSet[IterateChoice] = weakref.WeakSet()


def _after_fork() -> None:
    """A forked child has none of the parent's threads: the timing lock of an iteration under
    way in one of them would never be released, and the child's iterations would wait."""
    for choice in list(_CHOICES):
        choice._timing = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _chosen_platform(dispatcher: Any) -> str | None:
    """The platform the dispatcher's latest specialisation selected (``None`` if unknown)."""
    ctx = getattr(dispatcher, "last_context", None)
    chosen = ctx.decision(PLATFORM) if ctx is not None else None
    return chosen.choice if chosen is not None else None


def iterate_decision(kernel: Any) -> Decision | None:
    """What ``kernel.iterate`` chose for its longest tuned iterations in this process (``plain``
    or a blocked variant's label), as the typed decision its tuner recorded; None while
    undecided or where blocking never applied."""
    found = [d for it in iterators(kernel) for d in it.ctx.decisions if d.what == ITERATE]
    return max(found, key=lambda d: d.params.get("chunk", 0)) if found else None


def _blocking_mode(mode: str, dispatcher: Any) -> str | None:
    """``mode`` (:func:`temporal_mode`'s ``auto`` or ``on``) where blocked sweeps may run, None
    where only plain sweeps apply (turned off, or another platform chosen)."""
    if mode == "off":
        return None
    requested, _ = config.phase_choice("stencil", "platform_selection",
                                       getattr(dispatcher, "options", None))
    if requested not in (None, "openmp") or _chosen_platform(dispatcher) not in (None, "openmp"):
        return None  # the user or the selection chose another platform
    return mode


#: how many times the single sweep's longest compile (of its variants) the blocked library's
#: compile is foreseen to take (one program of wider loops and every tuning point's code):
#: measured 3.2x and 8.6x where blocking pays (heat 2048^2 and 128^3), 18x and 35x on grids a
#: cache holds (256^2, 48^3), where plain sweeps win the tuning anyway (1.2-2.7 s against
#: 0.07-0.45 s; AMD Zen 5, gcc 12). The longest, not the sum: a process that tuned compiled
#: every variant, a later one loads only the winner, and the sum swung 10-30x between them.
#: Too high, and long iterations on large grids wait for their blocking (a ski rental pays
#: up to 1 + this error factor of the best choice)
BLOCKED_COMPILE_FACTOR = 5.0
#: the seconds a blocked build is foreseen to take where no compile of the kernel is known
UNKNOWN_BUILD_SECONDS = 1.0
#: scales the build cost foreseen (0: build at once)
BUILD_AFTER_COMPILES = 1.0
#: plain seconds an iteration must be foreseen to take before the code cache is asked whether
#: it holds the blocked library (phases 1-4 of the blocked code run for that: 20-200 ms, once
#: per grid signature and kernel object)
WORTH_ASKING_SECONDS = 0.25

#: where a kernel object keeps the seconds of plain sweeps run while its blocked variants
#: were not built, per key (concurrent iterations may lose one another's additions: an
#: estimate, and no lock a child forked mid-update could inherit held)
_PLAIN_SECONDS = f"{STATE_PREFIX}plain_seconds"


def _build_cost(dispatcher: Any) -> float:
    """The seconds a blocked build not in the code cache is foreseen to take:
    :data:`BLOCKED_COMPILE_FACTOR` times the single sweep's longest compile (of any grids: the
    kernel's last specialisation; its time as compiled, here or by the process that cached
    it), times :data:`BUILD_AFTER_COMPILES`. It was the sweep's compiles of these grids in
    this process alone: nothing for another grid shape called last or a sweep from the code
    cache, so a smoother used on two grid sizes (a multigrid cycle) built the blocked library
    (1.7 s) for iterations of milliseconds; and the blocked compile takes several times the
    sweep's."""
    ctx = getattr(dispatcher, "last_context", None)
    sweep = max((c.library.compile_seconds for c in ctx.compiles), default=0.0) \
        if ctx is not None else 0.0
    return BUILD_AFTER_COMPILES * (BLOCKED_COMPILE_FACTOR * sweep if sweep > 0
                                   else UNKNOWN_BUILD_SECONDS)


def _plain_while_not_worth_building(kernel: Any, dispatcher: Any, key: Any,
                                    fn: Callable[..., Any], gs: list, steps: int) -> int:
    """Plain sweeps while building the blocked variants of ``key`` would not pay off yet (ski
    rental): the first sweep is timed; an iteration foreseen to take more than
    :data:`WORTH_ASKING_SECONDS` builds them at once where that costs no compile (the code
    cache has their library), else only once the plain seconds spent on ``key`` and foreseen
    for the rest of this call reach the build's foreseen cost (:func:`_build_cost`), so a
    process never pays much more than twice what knowing its iterations in advance would
    have cost. Returns the sweeps left to the plain-vs-blocked choice (0: all ran)."""
    spent: dict[Any, float] = object_memo(kernel, _PLAIN_SECONDS, dict)
    if spent.get(key, 0.0) >= _build_cost(dispatcher):
        return steps
    start = time.perf_counter()
    _plain(fn, gs, 1)
    took = time.perf_counter() - start
    ahead = spent.get(key, 0.0) + took * steps
    if ahead >= _build_cost(dispatcher) or (
            took * steps >= WORTH_ASKING_SECONDS and build_is_cached(kernel, tuple(gs))):
        spent[key] = spent.get(key, 0.0) + took
        return steps - 1
    _plain(fn, gs, steps - 1)
    spent[key] = spent.get(key, 0.0) + time.perf_counter() - start
    return 0


def _choice(kernel: Any, dispatcher: Any, gs: list, steps: int, mode: str
            ) -> IterateChoice | None:
    """The plain-vs-blocked choice (``mode``: :func:`_blocking_mode`'s) for iterations of
    ``steps`` sweeps on these grids, or None where the blocked code cannot be built."""
    blocked = get_iterator(kernel, tuple(gs))
    if isinstance(blocked, str):
        return None
    # a power of two below ``steps`` (few tuners, whatever the iteration lengths), at most
    # deep enough for the deepest block, and two or more chunks per call of 32 steps or more
    depth = max(int(p.get("K", 1)) for p in blocked.params.values())
    chunk = min(1 << (steps.bit_length() - 1), max(16, 2 * depth))
    if steps >= 32:
        chunk = min(chunk, steps // 2)
    per = blocked.choices
    hit = per.get((chunk, mode))
    if hit is None:
        label = f"{dispatcher.specializer}:{dispatcher.name} iterate {gs[-1].data.shape}"
        # the first stored wins: concurrent iterations each timing their own tuner timed
        # the candidates side by side
        hit = per.setdefault((chunk, mode), IterateChoice(blocked, chunk, mode, label))
    return hit


def iterate(kernel: Any, grids: tuple, steps: int) -> Any:
    """``steps`` Jacobi sweeps of ``kernel`` (see the module docstring); returns the grid
    holding the last result."""
    gs = list(grids)
    temporal = temporal_mode(kernel)   # read once; an invalid setting refused whatever ``steps``
    if steps == 0:   # no sweep: the state is where it was (the grids are checked all the same,
        # their number too: a sweep's call checks it where the grids themselves are refused)
        stencil_signature(tuple(gs), {}, kernel)
        check_arity(tuple(gs), kernel)
        return gs[-2]
    dispatcher = kernel.kernel
    # a plain callable (``k.kernel = f``, or ``K.kernel = f`` after the class statement) is
    # what the kernel's calls run: so do these
    specialising = hasattr(dispatcher, "tuned")
    total = steps
    while steps > 0:
        key = stencil_signature(tuple(gs), {}, kernel)
        fn = dispatcher.tuned(key) if specialising and config.mode() != "python" else None
        if fn is None and temporal == "on" and specialising and \
                dispatcher.tuning(key) is not None:
            fn = dispatcher  # still timing the sweep's variants: no need to wait for blocking
        if fn is None:  # not yet specialised, still tuning the sweep, or plain Python
            dispatcher(*gs)
            gs[-1], gs[-2] = gs[-2], gs[-1]
            steps -= 1
            continue
        swapped = (*gs[:-2], gs[-1], gs[-2])
        try:
            same = stencil_signature(swapped, {}, kernel) == key
        except (TypeError, ValueError):
            # the swapped grids are refused (a read-only state, a state sharing memory with
            # another input): the sweeps before the swap are still valid, so plain sweeps run
            # and raise where the calls by hand do (raising here failed even ``steps=1``)
            same = False
        if not same:
            # state and output described differently: each swap changes the specialisation
            _plain(dispatcher, gs, steps)
            break
        if isinstance(fn, DeviceSweep) and steps > 1:
            try:
                fn.iterate(tuple(gs), steps)
                _swap(gs, steps)
                return gs[-2]
            except TypeError:  # state and output not interchangeable: plain sweeps
                pass
        mode = _blocking_mode(temporal, dispatcher) if steps > 1 else None
        if mode == "auto" and built_iterator(kernel, key) is None:
            if config.autotune_mode() == "off":
                # untuned, auto runs its default candidate, plain sweeps: a build never used
                _plain(fn, gs, steps)
                break
            steps = _plain_while_not_worth_building(kernel, dispatcher, key, fn, gs, steps)
        # one sweep left builds too: the ski rental left it where a build is due or cached
        # (the lowering it looked the library up with is kept on the kernel until built)
        choice = _choice(kernel, dispatcher, gs, total, mode) if mode and steps > 0 else None
        if choice is None:
            _plain(fn, gs, steps)
        else:
            choice.run(fn, gs, steps)
        break
    return gs[-2]

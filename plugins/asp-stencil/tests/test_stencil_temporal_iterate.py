"""``StencilKernel.iterate`` picks plain sweeps, temporal blocking or the GPU device loop.

Every path must give what ``steps`` plain calls give, bit for bit, in both ping-pong grids and
return the grid holding the last result; the choice between plain and blocked sweeps is made by
the autotuner (plain sweeps are a candidate), never by a cache size.
"""

from __future__ import annotations

import dataclasses
import gc
import weakref

import numpy as np
import pytest

from asp_core import SpecializationWarning, hookimpl
from asp_core.autotune import PerfDB
from pytest_asp import requires_compiler
from asp_stencil import StencilKernel
from asp_stencil import dast as D
from asp_stencil.bench import Heat
from asp_stencil.temporal import iterate as iterate_mod
from asp_stencil.temporal import runner, temporal_plan
from asp_stencil.cuda.backend import DeviceSweep
from asp_stencil.temporal.iterate import ITERATE, PLAIN, iterate_decision, temporal_mode
from asp_stencil.kernel import object_memo
from asp_stencil.testing import assert_bitwise, clone_grids, make_grids


@pytest.fixture(autouse=True)
def build_at_once(monkeypatch):
    """The grids here are small: their plain sweeps would never pay for the blocked build, so
    ``iterate`` builds it at once, as when the single sweep came from the code cache (the
    ski rental itself is tested below, with its own costs)."""
    monkeypatch.setattr(iterate_mod, "BUILD_AFTER_COMPILES", 0.0)


def _heat(dim: int) -> Heat:
    k = Heat()
    k.centre = -2.0 * dim
    return k


def _python_sweeps(k, grids, steps):
    gs = list(grids)
    for _ in range(steps):
        k.pure_python(*gs)
        gs[-1], gs[-2] = gs[-2], gs[-1]
    return gs[-2]   # the state: the first grid when no step ran


def _choices(k):
    return [c for it in object_memo(k, runner._ITERATORS, dict).values() if not isinstance(it, str)
            for c in it.choices.values()]


def _check(k, shape, steps, seed=0, grids=None):
    """``k.iterate`` on ``grids`` (default: random ones of ``shape``) equals Python's sweeps."""
    grids = make_grids(shape, 1, seed=seed) if grids is None else grids
    ref = clone_grids(grids)
    expected = _python_sweeps(k, ref, steps)
    got = k.iterate(*grids, steps=steps)
    assert got is grids[ref.index(expected)]
    for r, t in zip(ref, grids):
        assert_bitwise(r.data, t.data, what=f"{shape} T={steps}")


@requires_compiler
@pytest.mark.parametrize("shape", [(11, 12, 13), (37, 19), (53,)], ids=["3d", "2d", "1d"])
def test_iterate_equals_python_sweeps_while_tuning_and_after(monkeypatch, shape):
    """Ragged sizes; the first calls time plain and blocked candidates on chunks of one call."""
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "auto")
    k = _heat(len(shape))
    for i, steps in enumerate([0, 1, 2, 3, 7, 64, 64, 64, 7, 3]):
        _check(k, shape, steps, seed=i)
    choices = _choices(k)
    assert choices, "the plain-vs-blocked choice was never made"
    assert all(PLAIN in c.tuner.variants and len(c.tuner.variants) > 1 for c in choices)


@requires_compiler
@pytest.mark.parametrize("steps", [2, 3, 7, 64])
def test_blocked_only_when_forced(monkeypatch, steps):
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    k = _heat(3)
    _check(k, (10, 9, 17), steps, seed=steps)
    choices = _choices(k)
    if steps > 2:  # one sweep warms the dispatcher, so T=2 leaves one step: plain
        assert choices and all(PLAIN not in c.tuner.variants for c in choices)


@requires_compiler
def test_the_winner_is_stored_and_reused_by_a_new_kernel(monkeypatch):
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "auto")
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    k = _heat(2)
    shape = (23, 29)
    for i in range(40):
        _check(k, shape, 17, seed=i)
        if _choices(k) and _choices(k)[0].tuner.done:
            break
    (choice,) = _choices(k)  # one tuner per iteration length (rounded down to a power of 2)
    assert choice.chunk == 16
    assert choice.tuner.done and choice.tuner.source == "tuned now"
    assert PerfDB().winner(choice.tuner.key) == choice.tuner.winner
    decided = iterate_decision(k)  # the typed record, not a parse of the event log
    assert decided is not None and decided.what == ITERATE
    assert (decided.choice, decided.source) == (choice.tuner.winner, "tuned now")
    assert dict(decided.params) == {"chunk": 16, "mode": "auto"}
    k2 = _heat(2)
    _check(k2, shape, 17, seed=99)
    (again,) = _choices(k2)
    assert again.tuner.source == "perf database" and again.tuner.winner == choice.tuner.winner
    assert iterate_decision(k2).source == "perf database"


@requires_compiler
def test_not_used_when_not_wanted(monkeypatch):
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "off")
    k = _heat(3)
    _check(k, (9, 10, 11), 9)
    assert not _choices(k) and not object_memo(k, runner._ITERATORS, dict)
    # untuned, auto would run its default candidate, plain sweeps: no blocked code is built
    # (it was, 1-2 s, for nothing)
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "auto")
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    k0 = _heat(3)
    _check(k0, (9, 10, 11), 9)
    assert not _choices(k0) and not object_memo(k0, runner._ITERATORS, dict)
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")   # forced: the first blocked variant
    _check(k0, (9, 10, 11), 9)
    assert _choices(k0)
    monkeypatch.delenv("ASP_AUTOTUNE")
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "auto")
    monkeypatch.setenv("ASP_MODE", "python")
    k1 = _heat(2)
    _check(k1, (9, 10), 5)
    assert not object_memo(k1, runner._ITERATORS, dict)
    monkeypatch.delenv("ASP_MODE")
    k2 = _heat(3)
    k2.asp_options = {"platform_selection": "python"}  # the user chose pure Python
    _check(k2, (9, 10, 11), 5)
    assert not object_memo(k2, runner._ITERATORS, dict)
    k3 = _heat(2)
    k3.asp_options = {"temporal": "sometimes"}
    with pytest.raises(ValueError, match="temporal"):
        temporal_mode(k3)


@requires_compiler
def test_not_used_for_a_kernel_that_fell_back(monkeypatch):
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")

    def helper(v):
        return v * 0.5

    class UsesHelper(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = helper(u[x])

    k = UsesHelper()
    with pytest.warns(SpecializationWarning, match="helper"):
        _check(k, (8, 9), 4)
    assert not object_memo(k, runner._ITERATORS, dict)


@requires_compiler
def test_kernels_the_blocked_code_cannot_take_run_plain_sweeps(monkeypatch):
    """Figure 2 reads its output: the plan declines and iterate still equals plain sweeps."""
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")

    class Fig2(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                for y in u.neighbors(x, 1):
                    out[x] = out[x] + u[y]

    k = Fig2()
    _check(k, (12, 13), 5)
    assert all(isinstance(v, str) for v in object_memo(k, runner._ITERATORS, dict).values())


@requires_compiler
def test_state_and_output_described_differently(monkeypatch):
    """Ghost depths 1 and 2: every swap changes the specialisation, and each sweep must use
    the code specialised for the grids it gets."""
    from asp_stencil import StencilGrid

    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "auto")
    k = _heat(2)
    rng = np.random.default_rng(4)
    for steps in (1, 2, 5, 20):
        grids = [StencilGrid((19, 23), ghost_depth=1), StencilGrid((19, 23), ghost_depth=2)]
        for g in grids:
            g.data[...] = rng.random(g.data.shape)
        _check(k, (19, 23), steps, grids=grids)


def test_unknown_grid_or_loop_properties_make_the_plan_decline():
    """A DSL feature the generator does not know (say mirrored grids) must not be blocked."""
    prog = _heat(2).kernel.analyse(*make_grids((8, 9), 1))[1]
    assert not isinstance(temporal_plan(prog), str)
    Mirrored = dataclasses.make_dataclass(
        "Mirrored", [("mirrored", tuple, dataclasses.field(default=()))], bases=(D.GridParam,),
        frozen=True)
    grids = tuple(Mirrored(**{f.name: getattr(g, f.name) for f in dataclasses.fields(g)},
                           mirrored=(True, False)) for g in prog.grids)
    reason = temporal_plan(dataclasses.replace(prog, grids=grids))
    assert isinstance(reason, str) and "mirrored=(True, False)" in reason
    same = tuple(Mirrored(**{f.name: getattr(g, f.name) for f in dataclasses.fields(g)})
                 for g in prog.grids)
    assert not isinstance(temporal_plan(dataclasses.replace(prog, grids=same)), str)


def test_periodic_grids_are_not_blocked():
    """Periodic grids refill their ghosts before every sweep: the blocked path cannot."""
    prog = _heat(2).kernel.analyse(*make_grids((8, 9), 1))[1]
    grids = tuple(dataclasses.replace(g, periodic=True) for g in prog.grids)
    reason = temporal_plan(dataclasses.replace(prog, grids=grids))
    assert isinstance(reason, str) and "periodic" in reason


class _FakeDispatcher:
    """Stands in for a kernel's dispatcher whose selection chose ``platform`` and bound ``fn``."""

    def __init__(self, fn, platform):
        from asp_core.context import SpecializationContext
        from asp_core.decisions import PLATFORM

        self.fn = fn
        self.fallback = None
        self.options = {}
        self.last_context = SpecializationContext("stencil", None)
        self.last_context.decide(PLATFORM, platform)

    def tuned(self, key):
        return self.fn

    def __call__(self, *grids):
        return self.fn(*grids)


def test_device_loop_is_used_when_the_kernel_runs_on_cuda(monkeypatch):
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    k = _heat(3)
    grids = tuple(make_grids((6, 7, 8), 1))
    calls = []

    def sweep(*gs):
        raise AssertionError("single sweeps must not run")

    bound = DeviceSweep(sweep, lambda gs, steps: calls.append((gs, steps)), "fake")
    k.__dict__["kernel"] = _FakeDispatcher(bound, "cuda")
    assert k.iterate(*grids, steps=5) is grids[-1]  # odd: result in the output grid
    assert k.iterate(*grids, steps=4) is grids[-2]
    assert [c[1] for c in calls] == [5, 4] and calls[0][0] == grids


def test_cpu_blocking_is_not_used_while_cuda_is_the_platform(monkeypatch):
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    k = _heat(3)
    grids = tuple(make_grids((6, 7, 8), 1))
    sweeps = []
    k.__dict__["kernel"] = _FakeDispatcher(lambda *gs: sweeps.append(gs), "cuda")
    assert k.iterate(*grids, steps=5) is grids[-1]
    assert len(sweeps) == 5 and not object_memo(k, runner._ITERATORS, dict)


def test_bad_steps_are_refused():
    k = _heat(2)
    grids = make_grids((6, 7), 1)
    for bad in (-1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="steps"):
            k.iterate(*grids, steps=bad)
    with pytest.raises(TypeError, match="output grid"):
        k.iterate(grids[0], steps=2)
    with pytest.raises(TypeError, match="output grid"):
        k.iterate(grids[0], "not a grid", steps=0)   # checked even when nothing runs
    extra = make_grids((6, 7), 2)
    for steps in (1, 0):   # the number of grids too (steps=0 returned the second of three)
        with pytest.raises(TypeError, match="takes 2 grid arguments .*, got 3"):
            k.iterate(*extra, steps=steps)


def test_steps_are_counted_as_by_hand():
    """``u = k.iterate(u, v, steps=n)`` is ``for _ in range(n): k(u, v); u, v = v, u``: with
    no step the state stays in the input, untouched; NumPy integers count too."""
    k = _heat(2)
    grids = make_grids((6, 7), 1)
    before = [g.data.copy() for g in grids]
    assert k.iterate(*grids, steps=0) is grids[0]
    assert all(np.array_equal(b, g.data) for b, g in zip(before, grids))
    assert k.iterate(*grids, steps=np.int64(1)) is grids[1]
    assert k.iterate(*grids, steps=np.uint8(2)) is grids[0]


@requires_compiler
def test_asp_explain_shows_the_blocked_iteration_and_its_decision(monkeypatch):
    from asp_core import recording

    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    k = _heat(2)
    recording.start()
    try:
        for i in range(60):
            _check(k, (21, 26), 17, seed=i)
            if iterate_decision(k) is not None:
                break
    finally:
        records = recording.stop()
    (blocked,) = [r for r in records if "temporal blocking" in r.kernel]
    assert blocked.fallback is None and blocked.of("compile")
    assert blocked.of("decision")[-1]["what"] == ITERATE  # recorded after the record was added
    assert blocked.of("decision")[-1]["choice"] == iterate_decision(k).choice


def test_slow_candidates_are_dropped_after_one_timing_each(monkeypatch, tmp_path):
    from asp_core.autotune import Autotuner

    from asp_stencil.temporal.iterate import prune_slow

    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    tuner = Autotuner("prune-test", ["plain", "a", "b", "c"], repeats=2)
    first = {"plain": 4.0, "a": 1.0, "b": 1.4, "c": 1.6}
    for v in ("plain", "a", "b"):
        assert tuner.next() == v
        tuner.report(v, first[v])
        assert prune_slow(tuner, 1.5) == []  # not every candidate timed yet
    tuner.report(tuner.next(), first["c"])
    assert sorted(prune_slow(tuner, 1.5)) == ["c", "plain"]
    assert tuner.variants == ["a", "b"] and not tuner.done
    while not tuner.done:
        v = tuner.next()
        tuner.report(v, first[v])
    assert tuner.winner == "a" and tuner.source == "tuned now"
    # one clear winner: the runner-up stays, so the tuner still decides by its timings
    lone = Autotuner("prune-test-lone", ["plain", "a", "b"], repeats=2)
    for v, t in (("plain", 4.0), ("a", 1.0), ("b", 3.0)):
        assert lone.next() == v
        lone.report(v, t)
    assert prune_slow(lone, 1.5) == ["plain"]
    assert lone.variants == ["a", "b"] and not lone.done


class _OnePoint:
    """Another plugin's phase 4 for the blocked iteration: one tuning point of its own."""

    name = "one-point"
    platforms = ("openmp-temporal",)

    def variants(self, program, ctx):
        from asp_core.components import Variant
        from asp_stencil.temporal.variants import TemporalParams

        tp = TemporalParams(3, 4, 2)
        return [Variant(tp.label, program, tp.as_dict())]

    @hookimpl
    def asp_register_specializers(self, register):
        register.component(specializer="stencil", phase="platform_optimization",
                           name=self.name, obj=self, priority=10,
                           platforms=self.platforms)


@requires_compiler
def test_another_plugin_replaces_a_phase_of_the_blocked_iteration(monkeypatch):
    """The blocked iteration's phases are the registry's choice, as for a call."""
    from asp_core import plugins

    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    name = plugins.register_plugin(_OnePoint(), name="test-one-point")
    try:
        k = _heat(2)
        _check(k, (13, 17), 9)
        (choice,) = _choices(k)
        assert choice.tuner.variants == ["K3-B0_4-B1_2"]
        (it,) = runner.iterators(k)
        assert it.ctx.decision("platform_optimization").choice == "one-point"
        assert it.ctx.decision("backend").choice == "c-temporal"
    finally:
        plugins.unregister_plugin(name)


class _SweepClock:
    """A clock on which each plain sweep takes ``dt`` seconds: the ski rental's arithmetic
    without the machine's timings."""

    def __init__(self, monkeypatch, dt: float) -> None:
        from types import SimpleNamespace

        self.now = 0.0
        real = iterate_mod._plain

        def plain(fn, gs, n):
            self.now += n * dt
            real(fn, gs, n)

        monkeypatch.setattr(iterate_mod, "_plain", plain)
        monkeypatch.setattr(iterate_mod, "time", SimpleNamespace(perf_counter=lambda: self.now))


def _key(k, shape):
    from asp_stencil.signature import stencil_signature

    return stencil_signature(tuple(make_grids(shape, 1)), {}, k)


@requires_compiler
def test_blocked_build_waits_until_plain_sweeps_pay_for_it(monkeypatch):
    """Ski rental: plain sweeps until those of the signature have taken (or one call foresees
    from its first sweep) the build's cost; then the blocked variants are built and timed.
    The first call of 64 sweeps of a 2048^2 heat grid took 1.9 s with the build, 0.9 s
    without (Intel Xeon, AVX-512, 2 cores), its plain sweeps 0.1 s of that."""
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "auto")
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    monkeypatch.setattr(iterate_mod, "BUILD_AFTER_COMPILES", 1.0)
    monkeypatch.setattr(iterate_mod, "_build_cost", lambda dispatcher: 1.0)
    monkeypatch.setattr(iterate_mod, "build_is_cached", lambda kernel, grids: False)
    k, shape = _heat(2), (23, 29)
    key = _key(k, shape)
    _check(k, shape, 3, seed=1)          # sweeps until the single sweep is tuned
    _SweepClock(monkeypatch, 0.01)
    _check(k, shape, 20, seed=2)         # 0.2 s foreseen: plain
    _check(k, shape, 50, seed=3)         # 0.2 s spent + 0.5 s foreseen: plain
    assert runner.built_iterator(k, key) is None and not _choices(k)
    _check(k, shape, 40, seed=4)         # 0.7 s spent + 0.4 s foreseen: built and timed
    assert isinstance(runner.built_iterator(k, key), runner.Blocked) and _choices(k)
    # a long first call foresees the cost from its first sweep
    k2 = _heat(2)
    _check(k2, shape, 3, seed=5)
    _check(k2, shape, 120, seed=6)       # 1.2 s foreseen
    assert _choices(k2)


@requires_compiler
def test_the_build_cost_is_the_blocked_compile_foreseen_unless_the_cache_has_it(
        monkeypatch, tmp_path):
    """The build's cost foreseen is the blocked compile's: BLOCKED_COMPILE_FACTOR times the
    single sweep's longest compile, of any grids, as compiled (a sweep from the code cache
    too). It
    took the sweep's compiles of these grids in this process alone: a smoother used on two
    grid sizes, or one whose sweep came from the cache, built the blocked library (1.5-4 s)
    for iterations of milliseconds. Where the code cache holds the blocked library, a long
    enough iteration builds (loads) it at once."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "auto")
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    monkeypatch.setattr(iterate_mod, "BUILD_AFTER_COMPILES", 1.0)
    shape, other = (17, 19), (13, 11)
    k = _heat(2)
    k.centre = -4.25   # a program no earlier test compiled
    _check(k, shape, 1)
    sweep = max(c.library.compile_seconds for c in k.kernel.last_context.compiles)
    cost = iterate_mod._build_cost(k.kernel)
    assert sweep > 0 and cost == iterate_mod.BLOCKED_COMPILE_FACTOR * sweep
    _check(k, other, 1)   # another shape called last: the cost stays a compile's
    assert iterate_mod._build_cost(k.kernel) > 0
    k2 = _heat(2)
    k2.centre = -4.25
    _check(k2, shape, 1)   # its sweep from the code cache: the same cost
    assert k2.kernel.last_context.compiles[0].cached
    assert iterate_mod._build_cost(k2.kernel) > 0
    grids = tuple(make_grids(shape, 1))
    assert not runner.build_is_cached(k2, grids)   # kept for k2: asked once a signature
    assert isinstance(runner.get_iterator(k, grids), runner.Blocked)   # built by k
    k3 = _heat(2)
    k3.centre = -4.25
    _check(k3, shape, 1)
    assert runner.build_is_cached(k3, grids)
    monkeypatch.setattr(iterate_mod, "BUILD_AFTER_COMPILES", 100.0)   # a build never pays
    _SweepClock(monkeypatch, 0.01)
    _check(k3, shape, 40)   # 0.4 s foreseen, far under the cost: the cached library is loaded
    assert isinstance(runner.built_iterator(k3, _key(k3, shape)), runner.Blocked)
    # two sweeps of 0.2 s: one left after the ski rental's first. The library was looked up
    # for it, but nothing built it: its lowering stayed on k4 (holding the call's grids, until
    # contexts dropped their arguments)
    k4 = _heat(2)
    k4.centre = -4.25
    _check(k4, shape, 1)
    _SweepClock(monkeypatch, 0.2)
    grids = make_grids(shape, 1)
    _check(k4, shape, 2, grids=grids)
    assert isinstance(runner.built_iterator(k4, _key(k4, shape)), runner.Blocked)
    alive = weakref.ref(grids[0])
    del grids
    gc.collect()
    assert alive() is None
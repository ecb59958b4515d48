"""asp_core.collective.AgreedVariants as rank 0 of a 2-rank job sees it (no mpiexec): the
variants all ranks share, falling back together, and a record for ``asp explain``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from asp_core import recording
from asp_core.collective import AgreedVariants
from asp_core.decisions import VARIANT
from asp_core.errors import AspError, SpecializationWarning
from pytest_asp import requires_compiler

asp_stencil = pytest.importorskip("asp_stencil")
Heat = pytest.importorskip("asp_stencil.bench").Heat   # any stencil kernel will do


class _Rank0:
    """Rank 0 of 2: ``allgather`` pairs this rank's value with the other rank's next one
    (its error, then its variant names); ``allreduce`` takes the slower time, or for a
    failure flag whether either rank failed (the other rank's flags: ``other_fails``)."""

    def __init__(self, *others, other_time: float = 0.0, other_fails=()):
        self.others, self.other_time = list(others), other_time
        self.other_fails = list(other_fails)
        self.collectives = 0

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def allgather(self, value):
        self.collectives += 1
        if isinstance(value, tuple) and len(value) == 4:   # AgreedVariants' (error, names, -, -)
            error = self.others.pop(0) if self.others else value[0]
            names = self.others.pop(0) if self.others else value[1]
            return [value, (error, names, None, False)]
        return [value, self.others.pop(0) if self.others else value]

    def bcast(self, value, root=0):
        return value

    def allreduce(self, value, op=None):
        self.collectives += 1
        if isinstance(value, bool):
            return value or (self.other_fails.pop(0) if self.other_fails else False)
        return max(value, self.other_time)


def _grids():
    u, out = asp_stencil.StencilGrid((12, 12)), asp_stencil.StencilGrid((12, 12))
    u.data[...] = np.arange(144.0).reshape(12, 12)
    return u, out


def _expected(u):
    ref = asp_stencil.StencilGrid(u.shape)
    Heat().pure_python(u, ref)
    return ref.data


@requires_compiler
def test_the_ranks_tune_the_variants_all_of_them_have_and_explain_shows_it(fresh_cache,
                                                                          monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    kernel, (u, out) = Heat(), _grids()
    names = list(kernel.kernel.variants(u, out))
    assert len(names) >= 2
    one = AgreedVariants(kernel.kernel, (u, out), _Rank0(None, [names[1]]))
    assert one.tuner.variants == [names[1]] and one.winner == names[1]   # the only common one
    other = [names[1], "only-on-rank-1", names[0]]
    recording.start()
    try:
        agreed = AgreedVariants(kernel.kernel, (u, out), _Rank0(None, other, other_time=1.0),
                                tuning="size class")
        assert agreed.specialised and agreed.tuner is not None
        assert agreed.tuner.variants == names[:2]   # those all ranks have, in rank 0's order
        while not agreed.tuner.done:
            name = agreed.tuner.next()
            agreed[name](u, out)
            agreed.tuner.report(name, 0.5)   # the other rank's 1.0 s counts
    finally:
        records = recording.stop()
    assert agreed.winner in names[:2]
    # every timing is the slower rank's
    assert {n: set(t) for n, t in agreed.tuner.times.items()} == {n: {1.0} for n in names[:2]}
    (rec,) = records
    assert rec.kernel.endswith("[2 ranks]") and rec.fallback is None
    assert any(e["winner"] == agreed.winner for e in rec.of("autotune") if "winner" in e)
    assert agreed.tuner.winner == agreed.winner
    ctx = kernel.kernel.variants(u, out).context   # a fresh context knows nothing of it
    assert ctx.decision(VARIANT) is None


def test_bad_input_on_a_rank_is_raised_not_run_in_python(fresh_cache, monkeypatch):
    """Grids no kernel can run on are the caller's error, as in one process: raised (the
    same exception on every rank), not an unspecialised run of the bad input."""
    kernel, (_, out) = Heat(), _grids()
    monkeypatch.setenv("ASP_MODE", "auto")
    small = asp_stencil.StencilGrid((5, 5))
    with pytest.raises(ValueError, match=r"rank 0: ValueError: grids of different shapes"):
        AgreedVariants(kernel.kernel, (small, out), _Rank0(None, []))


def test_a_rank_that_cannot_specialise_makes_every_rank_fall_back(fresh_cache, monkeypatch):
    kernel, (u, out) = Heat(), _grids()
    monkeypatch.setenv("ASP_MODE", "auto")
    with pytest.warns(SpecializationWarning, match=r"runs unspecialised on every rank: "
                                                    r"rank 1: CompileError: boom"):
        agreed = AgreedVariants(kernel.kernel, (u, out), _Rank0("CompileError: boom", []),
                                what="stencil kernel 'Heat'")
    assert not agreed.specialised and agreed.winner is None and "rank 1" in agreed.reason
    with pytest.raises(KeyError, match="rank 1"):
        agreed["anything"]
    monkeypatch.setenv("ASP_MODE", "strict")
    with pytest.raises(AspError, match="cannot be specialised on 2 ranks: rank 1: boom"):
        AgreedVariants(kernel.kernel, (u, out), _Rank0("boom", []))
    monkeypatch.setenv("ASP_MODE", "python")   # nothing specialised, nothing to warn about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # agreed with the other ranks like any reason (returning first hung them)
        assert "rank 0: ASP_MODE=python" in AgreedVariants(kernel.kernel, (u, out),
                                                           _Rank0()).reason


@requires_compiler
def test_a_call_runs_the_next_variant_on_every_rank_then_the_winner(fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    kernel, (u, out) = Heat(), _grids()
    names = list(kernel.kernel.variants(u, out))
    comm = _Rank0(None, names, other_time=1.0)
    recording.start()
    try:
        agreed = AgreedVariants(kernel.kernel, (u, out), comm)
        tuner = agreed.tuner
        calls = 0
        while not tuner.done:
            out.data[...] = 0.0
            agreed(u, out)   # builds, agrees that it built, times: two collectives a call
            np.testing.assert_allclose(out.data, _expected(u), rtol=1e-12)
            calls += 1
    finally:
        (rec,) = recording.stop()
    assert calls == len(names) * 2 * tuner.repeats   # all tie: each is timed again (CLOSE)
    assert {n: set(t) for n, t in tuner.times.items()} == {n: {1.0} for n in names}
    assert agreed.winner in names and rec.kernel.endswith("[2 ranks]")
    before = comm.collectives
    out.data[...] = 0.0
    agreed(u, out)   # the bound winner: no communication
    assert comm.collectives == before
    np.testing.assert_allclose(out.data, _expected(u), rtol=1e-12)


@requires_compiler
def test_a_variant_that_fails_to_build_on_one_rank_is_dropped_on_every_rank(fresh_cache,
                                                                           monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    kernel, (u, out) = Heat(), _grids()
    names = list(kernel.kernel.variants(u, out))
    agreed = AgreedVariants(kernel.kernel, (u, out), _Rank0(None, names, other_fails=[True]))
    first = agreed.tuner.next()
    agreed(u, out)   # the other rank could not build the first variant: it was not timed
    assert first not in agreed.tuner.variants and first not in agreed.tuner.times
    while not agreed.tuner.done:
        agreed(u, out)
    assert agreed.winner in names and agreed.winner != first


class _RaisingFirst(AgreedVariants):
    """Rank 0's first variant raises when called (a kernel failing on this rank only)."""

    def __getitem__(self, name):
        fn = super().__getitem__(name)
        if name != self.tuner.variants[0]:
            return fn

        def fail(*args):
            raise RuntimeError("crashed on rank 0")
        return fail


@requires_compiler
def test_a_variant_that_raises_on_one_rank_is_dropped_on_every_rank(fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    kernel, (u, out) = Heat(), _grids()
    names = list(kernel.kernel.variants(u, out))
    comm = _Rank0(None, names)
    agreed = _RaisingFirst(kernel.kernel, (u, out), comm)
    before = comm.collectives
    with pytest.raises(RuntimeError, match="crashed on rank 0"):
        agreed(u, out)
    # the other rank, waiting for this call's time, got one, and both drop the variant;
    # where that left one variant, the ranks agree that they built it before binding it
    assert comm.collectives == before + 2 + (len(names) == 2)   # built, its time (, winner)
    assert names[0] not in agreed.tuner.variants and names[0] not in agreed.tuner.times
    while not agreed.tuner.done:
        agreed(u, out)
    assert agreed.winner != names[0]


@requires_compiler
def test_a_rank_with_nothing_to_compute_joins_without_narrowing_the_choice(fresh_cache,
                                                                           monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    kernel, (u, out) = Heat(), _grids()
    names = list(kernel.kernel.variants(u, out))
    # rank 0 has no block: rank 1's names are kept, rank 0 times nothing but agrees on each time
    idle = AgreedVariants(kernel.kernel, None, _Rank0(None, names, other_time=1.0))
    assert idle.specialised and idle.tuner.variants == names
    with pytest.raises(KeyError, match="no call of its own"):
        idle[names[0]]
    calls = 0
    while not idle.tuner.done:
        assert idle(u, out) is None
        calls += 1
    assert calls == len(names) * 2 * idle.tuner.repeats   # all tie: each is timed again
    assert all(t == [1.0] * 2 * idle.tuner.repeats for t in idle.tuner.times.values())
    assert idle(u, out) is None and not out.data.any()   # it never ran a kernel
    # the other way round: rank 1 has no block, rank 0's names all stay
    busy = AgreedVariants(kernel.kernel, (u, out), _Rank0(None, None))
    assert busy.tuner.variants == names


def test_falling_back_runs_the_kernels_python_on_every_call(fresh_cache, monkeypatch):
    kernel, (u, out) = Heat(), _grids()
    monkeypatch.setenv("ASP_MODE", "auto")
    comm = _Rank0("CompileError: boom", [])
    with pytest.warns(SpecializationWarning):
        agreed = AgreedVariants(kernel.kernel, (u, out), comm)
    before = comm.collectives
    for _ in range(2):
        out.data[...] = 0.0
        agreed(u, out)
        np.testing.assert_allclose(out.data, _expected(u), rtol=1e-12)
    assert comm.collectives == before


@requires_compiler
def test_with_per_rank_ranks_proposing_different_variants_each_run_their_own_dispatcher(
        fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    kernel, (u, out) = Heat(), _grids()
    names = list(kernel.kernel.variants(u, out))
    comm = _Rank0(None, [names[-1]])   # the other rank shares one variant of ours only
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecializationWarning)
        agreed = AgreedVariants(kernel.kernel, (u, out), comm, per_rank=True)
    assert agreed.per_rank and agreed.specialised and agreed.tuner is None
    before = comm.collectives
    agreed(u, out)   # this rank's own dispatcher: no collective
    assert comm.collectives == before
    np.testing.assert_allclose(out.data, _expected(u), rtol=1e-12)
    assert kernel.kernel.keys(), "the dispatcher specialised the call"
    # without per_rank the ranks keep the variant they share
    shared = AgreedVariants(kernel.kernel, (u, out), _Rank0(None, [names[-1]]))
    assert not shared.per_rank and shared.tuner.variants == [names[-1]]

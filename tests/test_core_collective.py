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
    (its error, then its variant names); ``allreduce`` takes the slower time."""

    def __init__(self, *others, other_time: float = 0.0):
        self.others, self.other_time = list(others), other_time

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def allgather(self, value):
        return [value, self.others.pop(0) if self.others else value]

    def bcast(self, value, root=0):
        return value

    def allreduce(self, value, op=None):
        return max(value, self.other_time)


def _grids():
    u, out = asp_stencil.StencilGrid((12, 12)), asp_stencil.StencilGrid((12, 12))
    u.data[...] = np.arange(144.0).reshape(12, 12)
    return u, out


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
        assert AgreedVariants(kernel.kernel, (u, out), _Rank0()).reason == "ASP_MODE=python"

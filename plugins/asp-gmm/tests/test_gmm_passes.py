"""Each GMM domain pass reports whether it changed the EM problem (once applied, a second run
reports no change), and the recorded reports are what ``asp explain`` shows."""

from __future__ import annotations

import pytest
from asp_gmm.dast import AddLogWeights, EMProblem, LogDensity, LogSumExp, Moments, Responsibilities
from asp_gmm.passes import (domain_passes, fold_constants, fuse_em, shift_moments,
                            triangular_precision)

from asp_core import SpecializationContext


def _problem(cov: str, op: str = "em_step") -> EMProblem:
    steps = [LogDensity(cov)]
    if op == "em_step":
        steps += [AddLogWeights(), LogSumExp(), Responsibilities(), Moments(cov)]
    return EMProblem(op, 4, 3, cov, "float64", 1000, steps)


@pytest.mark.parametrize("p", [fold_constants, triangular_precision, shift_moments, fuse_em])
def test_a_pass_applied_twice_reports_no_change_the_second_time(p):
    ctx = SpecializationContext("gmm", None)
    once, changed = p.apply(_problem("full"), ctx)
    assert changed
    assert p.apply(once, ctx) == (once, False)


def test_passes_with_nothing_to_do_say_so():
    ctx = SpecializationContext("gmm", None)
    assert not triangular_precision.apply(_problem("diag"), ctx).changed  # no triangle in diag
    assert not fuse_em.apply(_problem("full", op="log_prob"), ctx).changed  # nothing to fuse


def test_manager_records_the_reports():
    ctx = SpecializationContext("gmm", None, options={"disable_passes": ["shift-moments"]})
    domain_passes().run(_problem("diag"), ctx)
    reports = [(r.name, r.skipped, r.changed) for r in ctx.passes]
    assert reports == [("fold-constants", False, True), ("triangular-precision", False, False),
                       ("shift-moments", True, False), ("fuse-em", False, True)]

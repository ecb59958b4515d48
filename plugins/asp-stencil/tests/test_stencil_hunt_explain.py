"""Where the stencil's domain passes say a kernel was refused: the statement's column, as the
frontend's refusals do (not the method's indentation)."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from asp_core import SpecializationWarning
from asp_stencil import StencilKernel
from asp_stencil.testing import make_grids


class ZeroDivisor(StencilKernel):
    """Refused by ``constant-folding``."""

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * (1.0 / 0.0)  # <- refused


@pytest.mark.parametrize("cls", [ZeroDivisor], ids=lambda c: c.__name__)
def test_a_pass_refusal_points_at_the_statement_s_column(cls, monkeypatch):
    """The passes pointed at column 5 (the dedented source's column 0: the method's
    indentation) for a statement at column 13."""
    monkeypatch.setenv("ASP_MODE", "auto")
    lines, first = inspect.getsourcelines(cls.kernel.func)
    offset, text = next((i, t) for i, t in enumerate(lines) if "# <- refused" in t)
    column = len(text) - len(text.lstrip()) + 1
    with np.errstate(all="ignore"), pytest.warns(SpecializationWarning) as record:
        try:
            cls().kernel(*make_grids((6, 6), 1))
        except (ZeroDivisionError, ValueError):   # the pure-Python run's answer, in the fallback
            pass
    message = str(record[0].message)
    assert re.search(rf"{re.escape(__file__)}:{first + offset}:{column}\b", message), message

"""asp-mpk test setup: kernels compile on the first call (``ASP_MPK_COMPILE=wait``), so a test
sees the kernel it asks about; the tests of background compilation switch it back."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _compile_on_first_call(monkeypatch):
    monkeypatch.setenv("ASP_MPK_COMPILE", "wait")


@pytest.fixture(autouse=True)
def _fresh_matrices():
    """Each test analyses its matrices afresh: an analysed matrix left by an earlier test (the
    functional API keeps eight) may hold kernels still compiling under another mode."""
    from asp_mpk.matrix import clear_matrices

    clear_matrices()

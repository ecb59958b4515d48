"""``StencilKernel.iterate`` refuses what calls by hand refuse, and only that: it must do
what the loop ``for _ in range(steps): k.kernel(*grids); grids[-1], grids[-2] = grids[-2],
grids[-1]`` does, whatever the dispatcher and the tuner have bound so far."""

from __future__ import annotations

import pytest

from pytest_asp import requires_compiler
from asp_stencil.bench import Heat
from asp_stencil.signature import stencil_signature
from asp_stencil.testing import assert_bitwise, clone_grids, make_grids


def _heat() -> Heat:
    k = Heat()
    k.centre = -4.0
    return k


def _tuned(k, grids):
    """Warm ``k`` up until its dispatcher has bound the tuned sweep for ``grids``."""
    key = stencil_signature(tuple(grids), {}, k)
    for _ in range(20):
        if k.kernel.tuned(key) is not None:
            return
        k.iterate(*clone_grids(grids), steps=3)
    raise AssertionError("the sweep was never tuned")


def _by_hand(k, grids, steps):
    gs = list(grids)
    for _ in range(steps):
        k.kernel(*gs)
        gs[-1], gs[-2] = gs[-2], gs[-1]
    return gs[-2]


@requires_compiler
def test_one_step_on_a_read_only_state_once_tuned(monkeypatch):
    """``iterate(u, v, steps=1)`` with a read-only ``u`` is one call ``k(u, v)``, which is
    valid (inputs may be read-only). Once the sweep was tuned, iterate checked the *swapped*
    grids before the first sweep and raised "the output grid's .data is read-only"; with more
    steps it must raise where the calls by hand do, after the sweeps before the swap."""
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    k = _heat()
    grids = make_grids((13, 11), 1, seed=1)
    _tuned(k, grids)
    for steps in (1, 2, 3):
        ref, test = clone_grids(grids), clone_grids(grids)
        ref[0].data.flags.writeable = False
        test[0].data.flags.writeable = False
        if steps == 1:
            expected = _by_hand(k, ref, steps)
            assert k.iterate(*test, steps=steps) is test[ref.index(expected)]
        else:
            with pytest.raises(ValueError, match="read-only") as by_hand:
                _by_hand(k, ref, steps)
            with pytest.raises(ValueError, match="read-only") as it:
                k.iterate(*test, steps=steps)
            assert str(it.value) == str(by_hand.value)
        for r, t in zip(ref, test):
            assert_bitwise(r.data, t.data, what=f"steps={steps}")


@requires_compiler
@pytest.mark.parametrize("value", ["3,4", "x", "3,4,3,0,0,0,0,0,0,1", "3;4;3"])
def test_a_malformed_pinned_blocking_point_names_the_variable(monkeypatch, value):
    """``ASP_STENCIL_TEMPORAL_PARAMS=3,4`` failed inside iterate with "TemporalParams.__init__()
    missing 1 required positional argument: 'B1'" (``x``: "invalid literal for int()"),
    naming neither the variable nor its format."""
    from asp_stencil.temporal.variants import forced_params

    monkeypatch.setenv("ASP_STENCIL_TEMPORAL_PARAMS", value)
    with pytest.raises(ValueError, match="ASP_STENCIL_TEMPORAL_PARAMS.*K,B0,B1"):
        forced_params()
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    k = _heat()
    with pytest.raises(ValueError, match="ASP_STENCIL_TEMPORAL_PARAMS"):
        for _ in range(20):  # until the sweep is tuned and the blocked variants are asked for
            k.iterate(*make_grids((13, 11), 1, seed=2), steps=9)
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL_PARAMS", "3,4,3")
    assert forced_params().as_dict()["K"] == 3


@pytest.mark.parametrize("steps", [0, 1, 2])
def test_an_invalid_temporal_setting_is_refused_whatever_the_steps(monkeypatch, steps):
    """``ASP_STENCIL_TEMPORAL=sometimes`` was refused only where iterate came to read it: not
    by ``steps=0``, nor by one step once the sweep was tuned (next test), which went on as
    ``auto`` without a word."""
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "sometimes")
    with pytest.raises(ValueError, match="ASP_STENCIL_TEMPORAL must be 'auto', 'on' or 'off'"):
        _heat().iterate(*make_grids((13, 11), 1, seed=2), steps=steps)


@requires_compiler
def test_an_invalid_temporal_setting_is_refused_by_one_step_once_tuned(monkeypatch):
    k = _heat()
    grids = make_grids((13, 11), 1, seed=2)
    _tuned(k, grids)
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "sometimes")
    with pytest.raises(ValueError, match="ASP_STENCIL_TEMPORAL must be 'auto', 'on' or 'off'"):
        k.iterate(*grids, steps=1)

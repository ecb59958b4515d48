"""A third-party component that cannot be loaded or answers out of the phase protocol (a
wrong return type): named, reported as broken, and passed over (a platform) or the kernel's
fallback reason (the other phases); never an ``AttributeError`` at the user's call, nor the
blame put on the components it handed a wrong IR to (a plugin author's bug hunt)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from asp_core import (Dispatcher, PlatformProgram, PluginError, PluginWarning,
                      SpecializationWarning, Variant, hookimpl)
from asp_core import plugins as plugins_mod
from asp_core.decisions import PLATFORM
from pytest_asp import requires_compiler
from tests.specializers import elementwise


def axpy(a, b):
    return 2.5 * a + b


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal(16), rng.standard_normal(16)


class _Unloadable:
    """A plugin adding a higher-priority platform whose module does not import."""

    def __init__(self, specializer: str) -> None:
        self.specializer = specializer

    @hookimpl
    def asp_register_specializers(self, register: Any) -> None:
        register.component(specializer=self.specializer, phase="platform_selection",
                           name="unloadable", obj="tests.no_such_module_for_asp:Platform",
                           priority=50)


@requires_compiler
def test_a_platform_that_cannot_be_loaded_is_passed_over(derived, fresh_cache):
    """Every kernel of the specializer ran in Python (the load error was re-raised as the
    platform's own answer), while ``asp list`` showed the next platform as the default."""
    name = derived("unloadable-spec")
    plugin = plugins_mod.register_plugin(_Unloadable(name), name="test-unloadable")
    try:
        d = Dispatcher(name, axpy)
        a, b = _arrays()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            np.testing.assert_allclose(d(a, b), axpy(a, b))
        assert not any(issubclass(w.category, SpecializationWarning) for w in seen)
        assert any(issubclass(w.category, PluginWarning) and "unloadable" in str(w.message)
                   for w in seen)
        decision = d.last_context.decision(PLATFORM)
        assert decision.choice == "openmp"
        (rejected,) = decision.params["rejected"]
        assert rejected[0] == "unloadable" and "no_such_module_for_asp" in rejected[1]
    finally:
        plugins_mod.unregister_plugin(plugin)


class _LowerReturnsText(elementwise.OpenMPPlatform):
    def lower(self, dast: Any, ctx: Any) -> Any:
        return "int main(void) { return 0; }"


class _CheckReturnsTrue(elementwise.OpenMPPlatform):
    def check(self, dast: Any, ctx: Any) -> Any:
        return True


@pytest.mark.parametrize("platform, says", [(_LowerReturnsText(), "lower returned str"),
                                            (_CheckReturnsTrue(), "check returned True")])
def test_a_platform_answering_out_of_protocol_is_passed_over(derived, fresh_cache, platform,
                                                             says):
    """``lower`` returning C text ended the user's call in "AttributeError: 'str' object has
    no attribute 'platform'"; ``check`` returning True was read as a reason "True"."""
    name = derived("bad-platform", replace={("platform_selection", "openmp"): platform})
    d = Dispatcher(name, axpy)
    a, b = _arrays()
    with pytest.warns(PluginWarning, match=says):
        np.testing.assert_allclose(d(a, b), axpy(a, b))
    decision = d.last_context.decision(PLATFORM)
    assert decision.choice == "python"
    assert decision.params["rejected"][0][0] == "openmp"
    assert says in decision.params["rejected"][0][1]


class _ParseReturnsNone(elementwise.ElementwiseFrontend):
    def parse(self, ctx: Any) -> Any:
        super().parse(ctx)


class _OptimizeReturnsPair(elementwise.ElementwiseOptimizer):
    def optimize(self, dast: Any, ctx: Any) -> Any:
        return dast, True


class _VariantsOfText(elementwise.LoopVariants):
    def variants(self, program: Any, ctx: Any) -> Any:
        return ["a", "b"]


class _VariantsOfOneName(elementwise.LoopVariants):
    def variants(self, program: PlatformProgram, ctx: Any) -> Any:
        return [Variant("a", program), Variant("a", program, {"other": 1})]


class _BuildReturnsNone(elementwise.CBackend):
    def build(self, variant: Any, ctx: Any) -> Any:
        return None


@requires_compiler
@pytest.mark.parametrize("phase, component, obj, says", [
    ("frontend", "python-ast", _ParseReturnsNone(), "parse of component {name}/frontend/"
                                                    "python-ast of plugin 'test-{name}' "
                                                    "(in-process) returned None"),
    ("domain_optimization", "fold", _OptimizeReturnsPair(), "returned tuple, not the domain "
                                                            "IR it was given (Map)"),
    ("platform_optimization", "loops", _VariantsOfText(), "returned list of str, not Variants"),
    ("platform_optimization", "loops", _VariantsOfOneName(), "variants of one name"),
    ("backend", "c", _BuildReturnsNone(), "build of component {name}/backend/c of plugin "
                                          "'test-{name}' (in-process) returned NoneType"),
])
@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_a_component_answering_out_of_protocol_is_named(derived, fresh_cache, monkeypatch,
                                                        phase, component, obj, says, mode):
    """A wrong return type ended the user's call in an ``AttributeError``/``TypeError`` naming
    no plugin ("'NoneType' object is not callable" at the first tuned call; strict mode
    "exceptions must derive from BaseException"), or, from a domain optimiser, had every
    platform's check fail on it and reported the platforms' plugin as the broken one."""
    monkeypatch.setenv("ASP_MODE", mode)
    name = derived(f"bad-{phase}-{mode}", replace={(phase, component): obj})
    says = says.format(name=name)
    d = Dispatcher(name, axpy)
    a, b = _arrays()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        if mode == "strict":
            with pytest.raises(PluginError, match=says.replace("(", r"\(").replace(")", r"\)")):
                d(a, b)
        else:
            np.testing.assert_allclose(d(a, b), axpy(a, b))
    reported = [str(w.message) for w in seen if issubclass(w.category, PluginWarning)]
    assert any(says in text for text in reported), reported
    fell_back = [str(w.message) for w in seen if issubclass(w.category, SpecializationWarning)]
    assert (not fell_back) if mode == "strict" else \
        any("runs in pure Python" in text and says in text for text in fell_back)
    broken = [b for b in plugins_mod.broken_plugins() if b.name == f"test-{name}"]
    assert broken and says.split(" of ")[0] in broken[0].error
    assert not [b for b in plugins_mod.broken_plugins() if b.name != f"test-{name}"]


class _CheckWarns(elementwise.OpenMPPlatform):
    def check(self, dast: Any, ctx: Any) -> Any:
        from asp_core import CacheWarning

        warnings.warn("asp: the cache cannot be used", CacheWarning, stacklevel=1)
        return super().check(dast, ctx)


def test_a_warning_the_user_made_an_error_is_raised_not_taken_for_a_broken_platform(
        derived, fresh_cache):
    """``simplefilter("error", CacheWarning)`` and a platform whose check warns (the cache
    probe of a compiled platform): the platform was reported broken (a ``PluginWarning``
    blaming its plugin) and the kernel ran on the next one, the error never raised."""
    from asp_core import CacheWarning

    name = derived("warning-platform", replace={("platform_selection", "openmp"): _CheckWarns()})
    d = Dispatcher(name, axpy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        with pytest.raises(CacheWarning, match="the cache cannot be used"):
            d(*_arrays())

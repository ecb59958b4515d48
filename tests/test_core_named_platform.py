"""Phases 1-4 for a named platform (code generation where the platform cannot run) and phase
4's per-variant ``materialise`` (run just before a variant is built, only for the variants
built)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from asp_core import Dispatcher, PlatformProgram, Variant
from asp_core.decisions import PLATFORM
from asp_core.pipeline import NoPlatform
from tests.specializers import elementwise


def axpy(a, b):
    return 2.5 * a + b


class NoDevice(elementwise.OpenMPPlatform):
    """A platform whose run-time check always declines (like CUDA without a GPU)."""

    def check(self, dast: Any, ctx: Any) -> str:
        return "no device on this machine"


class Accepting(elementwise.OpenMPPlatform):
    """A platform that runs anywhere (its backend below compiles nothing)."""

    def check(self, dast: Any, ctx: Any) -> None:
        return None


class ThirdPartyVariants(elementwise.LoopVariants):
    """A platform optimiser replacing the built-in one; counts what it materialises."""

    def __init__(self) -> None:
        self.materialised: list[str] = []

    def variants(self, program: PlatformProgram, ctx: Any) -> list[Variant]:
        return [Variant(f"3p-{v.name}", v.program, v.params)
                for v in super().variants(program, ctx)]

    def materialise(self, variant: Variant, ctx: Any) -> Variant:
        self.materialised.append(variant.name)
        return Variant(variant.name, variant.program, {**variant.params, "planned": True})


class RecordingBackend:
    """Builds nothing: returns the Python kernel and remembers the variants it was given."""

    platforms = ("openmp",)

    def __init__(self) -> None:
        self.given: list[Variant] = []

    def build(self, variant: Variant, ctx: Any) -> Any:
        self.given.append(variant)
        return axpy


@pytest.fixture
def nodevice(derived):
    opt, backend = ThirdPartyVariants(), RecordingBackend()
    name = derived("nodevice", replace={("platform_selection", "openmp"): NoDevice(),
                                        ("platform_optimization", "loops"): opt,
                                        ("backend", "c"): backend})
    return name, opt, backend


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal(8), rng.standard_normal(8)


def test_a_named_platform_is_lowered_without_its_check(nodevice, fresh_cache):
    name, opt, _ = nodevice
    d = Dispatcher(name, axpy)
    variants = d.variants_for("openmp", *_arrays())
    assert list(variants) == ["3p-parallel-simd", "3p-serial"]   # the registry's optimiser
    program = variants.variant("3p-serial").program
    assert program.platform == "openmp" and "asp_map" in elementwise.c.print_c(program.ir)
    decision = variants.context.decision(PLATFORM)
    assert decision is not None and decision.choice == "openmp" and decision.source == "named"
    assert "check was not run" in decision.reason
    assert decision.params["rejected"] == ()   # no check ran, so none declined
    assert d.specializations == {}   # nothing bound


def test_without_a_name_the_check_still_decides(nodevice, fresh_cache):
    name, _, _ = nodevice
    variants = Dispatcher(name, axpy).variants(*_arrays())
    decision = variants.context.decision(PLATFORM)
    assert decision is not None and decision.choice == "python"   # openmp declined
    assert decision.source == "priority"


def test_an_unknown_platform_name_lists_the_installed_ones(nodevice):
    name, _, _ = nodevice
    with pytest.raises(NoPlatform, match=r"no platform 'cuda' \(installed: openmp, python\)"):
        Dispatcher(name, axpy).variants_for("cuda", *_arrays())


class FaultyLowering(NoDevice):
    def lower(self, dast: Any, ctx: Any) -> PlatformProgram:
        raise KeyError("a bug in lower")


def test_a_named_platforms_lowering_error_names_its_component(derived):
    """An exception from a named platform's ``lower`` came out bare, naming no component;
    elsewhere the pipeline notes the component and its plugin."""
    name = derived("faulty", replace={("platform_selection", "openmp"): FaultyLowering()})
    with pytest.raises(KeyError, match="a bug in lower") as info:
        Dispatcher(name, axpy).variants_for("openmp", *_arrays())
    assert any(f"{name}/platform_selection/openmp" in note
               for note in getattr(info.value, "__notes__", []))


def test_the_platform_name_is_positional_so_kernel_keywords_pass_through(nodevice):
    name, _, _ = nodevice
    # the element-wise signature refuses keyword arguments: the keyword reached the kernel's
    # signature instead of being taken as the platform
    with pytest.raises(TypeError, match="positional arrays only"):
        Dispatcher(name, axpy).variants_for("openmp", *_arrays(), platform="x")


def test_materialise_runs_for_built_variants_only_and_the_backend_gets_its_result(
        nodevice, fresh_cache):
    name, opt, backend = nodevice
    variants = Dispatcher(name, axpy).variants_for("openmp", *_arrays())
    assert opt.materialised == []   # proposing variants materialises none
    assert variants["3p-serial"] is variants["3p-serial"]
    assert opt.materialised == ["3p-serial"]   # once, for the variant built
    assert backend.given[-1].params == {"parallel": False, "planned": True}
    assert variants.variant("3p-serial") is backend.given[-1]


def test_ordinary_calls_materialise_through_the_pipeline(derived, fresh_cache, monkeypatch):
    """The dispatcher's own specialisation materialises the variant it builds (with the
    autotuner off, the default only)."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    opt, backend = ThirdPartyVariants(), RecordingBackend()
    name = derived("trusting", replace={("platform_optimization", "loops"): opt,
                                        ("backend", "c"): backend,
                                        ("platform_selection", "openmp"): Accepting()})
    a, b = _arrays()
    d = Dispatcher(name, axpy)
    np.testing.assert_array_equal(d(a, b), axpy(a, b))
    assert opt.materialised == ["3p-parallel-simd"]
    assert backend.given[-1].params["planned"] is True


def test_explain_platform_adds_a_report_lowered_for_the_named_platform(nodevice, tmp_path,
                                                                        fresh_cache):
    from click.testing import CliRunner

    from asp_core.cli import cli

    name, _, _ = nodevice
    script = tmp_path / "uses_nodevice.py"
    script.write_text("import numpy as np\nfrom asp_core import Dispatcher\n"
                      "from tests.test_core_named_platform import axpy\n"
                      f"Dispatcher({name!r}, axpy)(np.ones(4), np.ones(4))\n")
    out = CliRunner().invoke(cli, ["explain", "--platform", "openmp", str(script)],
                             catch_exceptions=False).output
    ran, lowered = out.split("=== kernel axpy [lowered for openmp]")
    assert "platform_selection: python" in ran and "not usable: openmp (no device" in ran
    assert "platform_selection: openmp — named by the caller" in lowered
    assert "--- platform program (openmp)" in lowered and "asp_map" in lowered
    assert "--- variants: 3p-parallel-simd, 3p-serial" in lowered
    out = CliRunner().invoke(cli, ["explain", "--platform", "cuda", str(script)],
                             catch_exceptions=False).output
    assert "cannot lower for 'cuda'" in out and "installed: openmp, python" in out


def test_explain_platform_lowers_what_build_variants_built(nodevice, tmp_path, fresh_cache):
    """A plugin's library built through ``Dispatcher.build_variants`` (a cold GMM fit's only
    compile) had no report lowered for the named platform: the observers were not told."""
    from click.testing import CliRunner

    from asp_core.cli import cli

    name, _, _ = nodevice
    script = tmp_path / "builds_nodevice.py"
    script.write_text("import numpy as np\nfrom asp_core import Dispatcher\n"
                      "from tests.test_core_named_platform import axpy\n"
                      f"Dispatcher({name!r}, axpy).build_variants(np.ones(4), np.ones(4))\n")
    out = CliRunner().invoke(cli, ["explain", "--platform", "openmp", str(script)],
                             catch_exceptions=False).output
    built, lowered = out.split("=== kernel axpy [lowered for openmp]")
    assert "=== kernel axpy (every variant built)" in built
    assert "platform_selection: openmp — named by the caller" in lowered


def test_a_tuning_handle_prepares_a_candidate_so_its_timed_call_only_builds_it(
        derived, fresh_cache, monkeypatch):
    """``Dispatcher.tuning(key).prepare(name)`` runs phase 4's materialise of a candidate on
    the caller's thread (a plugin's background thread), once: the call that times it later
    only builds it."""
    opt, backend = ThirdPartyVariants(), RecordingBackend()
    name = derived("prepared", replace={("platform_optimization", "loops"): opt,
                                        ("backend", "c"): backend})
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    d = Dispatcher(name, axpy)
    a, b = _arrays()
    d(a, b)   # builds and times the default
    (key,) = d.keys()
    tuning = d.tuning(key)
    assert tuning is not None and opt.materialised == ["3p-parallel-simd"]
    tuning.prepare("3p-serial")
    assert opt.materialised == ["3p-parallel-simd", "3p-serial"] and len(backend.given) == 1
    while d.tuning(key) is not None:
        d(a, b)
    assert opt.materialised == ["3p-parallel-simd", "3p-serial"]   # not again on the call
    assert [v.name for v in backend.given] == ["3p-parallel-simd", "3p-serial"]
    assert backend.given[1].params["planned"]

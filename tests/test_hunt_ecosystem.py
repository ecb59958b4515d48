"""The ecosystem as a user meets it: installed plugins extending one another, ``asp new``
refusing values that would make a project pip cannot install, and its next-step hint."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import warnings

import pytest

from asp_core import plugins as plugins_mod
from tests.specializers.fake_plugins import FakeEntryPoint, install
from tests.specializers.fake_plugins import module as _module
from tests.specializers.fake_plugins import registers as _registers


def _spec_and_add_on() -> tuple[FakeEntryPoint, FakeEntryPoint]:
    spec = FakeEntryPoint("my_spec", _module("spec_plugin", asp_register_specializers=_registers(
        "my_spec", ("my_spec", "openmp", 10))), dist="my-spec")
    add_on = FakeEntryPoint("my_spec", _module("add_on_plugin", asp_register_specializers=(
        _registers("", ("my_spec", "gpu", 20)))), dist="my-spec-gpu")
    return spec, add_on


@pytest.mark.parametrize("add_on_first", [False, True])
def test_an_add_on_may_name_its_entry_point_after_the_specializer_it_extends(
        monkeypatch, plugin_state, add_on_first):
    """Two distributions with one entry-point name: the second was skipped without a warning
    (an add-on ``my_spec = "my_spec_gpu.plugin"`` never loaded or, first on sys.path, made the
    specializer itself vanish from ``asp list``). Both load, whatever the order."""
    spec, add_on = _spec_and_add_on()
    install(monkeypatch, *((add_on, spec) if add_on_first else (spec, add_on)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = plugins_mod.get_registry()
        assert plugins_mod.broken_plugins() == []
    assert registry.specializers["my_spec"].distribution == "my-spec"
    comps = registry.for_phase("my_spec", "platform_selection")
    assert [(c.name, c.distribution) for c in comps] == [("gpu", "my-spec-gpu"),
                                                         ("openmp", "my-spec")]


def test_blocking_one_of_two_same_named_entry_points_by_distribution(monkeypatch, plugin_state):
    spec, add_on = _spec_and_add_on()
    install(monkeypatch, spec, add_on)
    monkeypatch.setenv("ASP_BLOCK_PLUGINS", "my-spec-gpu")
    comps = plugins_mod.get_registry().for_phase("my_spec", "platform_selection")
    assert [c.name for c in comps] == ["openmp"]


def test_one_module_under_two_entry_points_registers_once(monkeypatch, plugin_state):
    spec, _ = _spec_and_add_on()
    again = FakeEntryPoint("my-spec-alias", spec.load(), dist="my-spec")
    install(monkeypatch, spec, again)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = plugins_mod.get_registry()
    assert [c.name for c in registry.for_phase("my_spec", "platform_selection")] == ["openmp"]


@pytest.mark.parametrize("extra,problem", [
    ("version=abc", "version 'abc' is not a PEP 440 version"),
    ("version=1.0 beta", "version '1.0 beta' is not a PEP 440 version"),
    ("email=", "email '' is not an address"),
    ("email=nobody", "email 'nobody' is not an address"),
])
def test_asp_new_refuses_values_pip_would_refuse_to_install(tmp_path, extra, problem):
    """setuptools validates ``project.version`` (PEP 440) and the authors' emails: such a
    project was generated, reported as created, and failed only at ``pip install``."""
    pytest.importorskip("cookiecutter")
    proc = subprocess.run([sys.executable, "-c", "from asp_core.cli import main; main()", "new",
                           "valid-name", "--no-input", "--output-dir", str(tmp_path),
                           "--extra", extra],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert problem in proc.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("version", ["0.1.0", "1.0rc1", "v2.0.post1.dev3", "1.0+local.7"])
def test_asp_new_accepts_pep_440_versions(tmp_path, version):
    pytest.importorskip("cookiecutter")
    from click.testing import CliRunner

    from asp_core.cli import cli

    result = CliRunner().invoke(cli, ["new", "valid-name", "--no-input", "--output-dir",
                                      str(tmp_path), "--extra", f"version={version}"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "valid-name" / "pyproject.toml").read_text()
    assert f'version = "{version}"' in text


def test_asp_new_hint_installs_pytest_asp_where_it_is_missing(tmp_path, monkeypatch):
    """The generated ``test`` extra requires pytest-asp, released with asp-core from its
    sources: in a fresh environment the hint's ``pip install -e 'NAME[test]'`` failed with "No
    matching distribution found for pytest-asp". From a checkout, the hint installs it first."""
    pytest.importorskip("cookiecutter")
    import importlib.util
    from pathlib import Path

    from click.testing import CliRunner

    import asp_core
    from asp_core.cli import cli

    source = Path(asp_core.__file__).resolve().parents[1] / "plugins" / "pytest-asp"
    if not (source / "pyproject.toml").is_file():
        pytest.skip("asp-core does not run from a checkout with plugins/pytest-asp")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytest_asp" else find_spec(name, *a))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["new", "hinted-spec", "--no-input"])
    assert result.exit_code == 0, result.output
    hint = next(line for line in result.output.splitlines() if line.startswith("next: "))
    assert shlex.split(hint.removeprefix("next: ")) == [
        "pip", "install", "-e", str(source), "-e", "hinted-spec[test]", "&&", "pytest",
        "hinted-spec"]


# -- broken third-party plugins (hunt: ecosystem) ---------------------------------------------

def test_a_hook_with_a_misspelt_argument_leaves_none_of_its_plugin_registered(monkeypatch,
                                                                            plugin_state):
    """pluggy checks a hook's arguments after adding the plugin: one whose
    ``asp_register_specializers(registry)`` was refused stayed registered, ``asp doctor``
    counted it as loaded and its ``asp_doctor_checks`` ran, though it was reported skipped."""
    def asp_doctor_checks():
        return [("sneaky", True, "a skipped plugin's check")]

    def asp_register_specializers(registry):  # the spec's argument is ``register``
        raise AssertionError("never called")

    install(monkeypatch, FakeEntryPoint("badarg", _module(
        "badarg_plugin", asp_doctor_checks=asp_doctor_checks,
        asp_register_specializers=asp_register_specializers), dist="badarg-dist"))
    with pytest.warns(plugins_mod.PluginWarning, match=r"(?s)'badarg' \(badarg-dist\).*registry"):
        pm = plugins_mod.get_plugin_manager()
    assert [n for n, _ in pm.list_name_plugin()] == []
    assert pm.hook.asp_doctor_checks.get_hookimpls() == []
    assert [b.name for b in plugins_mod.broken_plugins()] == ["badarg"]


def test_register_plugin_refusing_a_plugin_keeps_no_trace_of_it(monkeypatch, plugin_state):
    """``register_plugin`` of a plugin with a misspelt hook raised and kept it registered:
    every later ``register_plugin`` raised that plugin's error again."""
    import pluggy

    install(monkeypatch)
    bad = _module("typo_inproc", asp_register_specialisers=lambda register: None)
    with pytest.raises(pluggy.PluginValidationError, match="asp_register_specialisers"):
        plugins_mod.register_plugin(bad, name="typo")
    assert not plugins_mod.get_plugin_manager().has_plugin("typo")
    good = _module("good_inproc", asp_register_specializers=_registers("inproc"))
    assert plugins_mod.register_plugin(good, name="good") == "good"
    assert "inproc" in plugins_mod.get_registry().specializers
    plugins_mod.unregister_plugin("good")
    assert "inproc" not in plugins_mod.get_registry().specializers


def test_unregistering_a_broken_in_process_plugin_forgets_it(monkeypatch, plugin_state):
    def explode(register):
        raise RuntimeError("kaboom")

    install(monkeypatch)
    plugins_mod.register_plugin(_module("boom_inproc", asp_register_specializers=explode),
                                name="boom")
    with pytest.warns(plugins_mod.PluginWarning, match="kaboom"):
        assert [b.name for b in plugins_mod.broken_plugins()] == ["boom"]
    plugins_mod.unregister_plugin("boom")
    assert plugins_mod.broken_plugins() == []


def _wrong_plugin(what: str, inside: bool = False):
    """A plugin adding an ``elementwise`` component whose ``what`` method has the wrong
    signature (no ``ctx``), or with ``inside``, whose method raises ``ValueError`` itself, at a
    priority that makes it the default."""
    from asp_core.components import Backend, Frontend, PlatformOptimizer

    class WrongBackend(Backend):
        platforms = ("openmp",)

        def build(self, variant):  # type: ignore[override]
            raise AssertionError("never called")

    class WrongOptimizer(PlatformOptimizer):
        platforms = ("openmp",)

        def variants(self, program):  # type: ignore[override]
            raise AssertionError("never called")

    class WrongFrontend(Frontend):
        def parse(self):  # type: ignore[override]
            raise AssertionError("never called")

    class RefusingBackend(Backend):
        platforms = ("openmp",)

        def build(self, variant, ctx):
            raise ValueError("MY_SETTING='x' is malformed")

    phase, obj = {"build": ("backend", RefusingBackend() if inside else WrongBackend()),
                  "variants": ("platform_optimization", WrongOptimizer()),
                  "parse": ("frontend", WrongFrontend())}[what]

    def asp_register_specializers(register):
        register.component(specializer="elementwise", phase=phase, name="wrong", obj=obj,
                           priority=100)
    return _module("wrong_plugin", asp_register_specializers=asp_register_specializers)


@pytest.mark.parametrize("what", ["build", "variants", "parse"])
def test_a_component_with_a_wrong_signature_names_its_plugin(elementwise, fresh_cache,
                                                             monkeypatch, what):
    """A third-party backend whose ``build`` lacks ``ctx`` ended every kernel call of the
    specializer with a bare ``TypeError: build() takes 2 positional arguments`` naming no
    plugin. Now: one ``PluginWarning`` naming plugin, component and error, the kernel runs in
    Python with the correct result, and ``strict`` mode raises a ``PluginError`` saying so."""
    import numpy as np

    from asp_core import Dispatcher, PluginError, SpecializationWarning

    name = plugins_mod.register_plugin(_wrong_plugin(what), name="wrong-plugin")
    try:
        monkeypatch.setenv("ASP_AUTOTUNE", "off")

        def k(a):
            return a * 2.0

        d = Dispatcher("elementwise", k)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            np.testing.assert_array_equal(d(np.ones(3)), np.full(3, 2.0))
        plugin_warnings = [str(w.message) for w in caught  # (installed plugins' aside)
                           if issubclass(w.category, plugins_mod.PluginWarning)
                           and "wrong-plugin" in str(w.message)]
        assert len(plugin_warnings) == 1, plugin_warnings
        assert re.search(rf"'wrong-plugin' .*elementwise/\w+/wrong: {what} raised TypeError",
                         plugin_warnings[0]), plugin_warnings
        assert [w for w in caught if issubclass(w.category, SpecializationWarning)]
        monkeypatch.setenv("ASP_MODE", "strict")
        d2 = Dispatcher("elementwise", k)
        with pytest.raises(PluginError, match=rf"{what} of component elementwise/\w+/wrong of "
                                              r"plugin 'wrong-plugin' .*cannot be called: "
                                              r"TypeError"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d2(np.ones(3))
    finally:
        plugins_mod.unregister_plugin(name)


def test_a_components_own_error_keeps_its_type_and_names_the_component(elementwise,
                                                                       fresh_cache):
    """An exception raised inside a component's method is its answer to the user (asp-stencil
    raises ``TypeError`` for the wrong grids, ``ValueError`` for a malformed
    ``ASP_STENCIL_TEMPORAL_PARAMS``): it passes unchanged, with a note naming the component."""
    import numpy as np

    from asp_core import Dispatcher

    name = plugins_mod.register_plugin(_wrong_plugin("build", inside=True), name="wrong-plugin")
    try:
        def k(a):
            return a + 1.0

        d = Dispatcher("elementwise", k)
        with pytest.raises(ValueError, match="MY_SETTING") as info:
            d(np.ones(3))
        assert any("build of component elementwise/backend/wrong of plugin 'wrong-plugin'"
                   in n for n in info.value.__notes__)
    finally:
        plugins_mod.unregister_plugin(name)

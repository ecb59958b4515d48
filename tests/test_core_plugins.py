"""Plugin manager and registry: broken plugins are skipped and reported, the autoload switches
work, and the choice between components follows kernel option > ASP_<PHASE> > config file >
priority > registration order."""

from __future__ import annotations

import json
import types
import warnings

import pytest

from asp_core import PluginError, PluginWarning
from asp_core import plugins as plugins_mod
from asp_core import registry as registry_module
from tests.specializers.fake_plugins import FakeEntryPoint
from tests.specializers.fake_plugins import module as _module
from tests.specializers.fake_plugins import registers as _registers


def _good() -> FakeEntryPoint:
    return FakeEntryPoint("good", _module("good_plugin", asp_register_specializers=_registers(
        "fake", ("fake", "alpha", 0))))


def _loaded_names() -> set[str]:
    return {n for n, _ in plugins_mod.get_plugin_manager().list_name_plugin()}


def test_import_failure_is_skipped_and_listed(entry_points):
    entry_points(_good(), FakeEntryPoint("bad", ImportError("No module named 'missing_dep'"),
                                         dist="asp-bad"))
    with pytest.warns(PluginWarning, match=r"'bad' \(asp-bad\) failed to load.*missing_dep"):
        registry = plugins_mod.get_registry()
    assert "fake" in registry.specializers
    assert registry.specializers["fake"].distribution == "asp-good"
    assert registry.specializers["fake"].version == "1.2.3"
    broken = plugins_mod.broken_plugins()
    assert [(b.name, b.distribution) for b in broken] == [("bad", "asp-bad")]
    assert "ImportError" in broken[0].error and "missing_dep" in broken[0].error
    assert "bad" not in _loaded_names() and "good" in _loaded_names()

    from click.testing import CliRunner

    from asp_core.cli import cli

    result = CliRunner().invoke(cli, ["list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["broken"] == [{"name": "bad", "distribution": "asp-bad",
                               "error": broken[0].error}]
    assert [s["name"] for s in data["specializers"]] == ["fake"]
    text = CliRunner().invoke(cli, ["list"]).output
    assert "Broken plugins" in text and "missing_dep" in text


def test_duplicate_component_breaks_only_its_plugin(entry_points):
    # entry points load in name order and register in that order: "zdup" comes after "good"
    dup = FakeEntryPoint("zdup", _module("dup_plugin", asp_register_specializers=_registers(
        "", ("fake", "beta", 0), ("fake", "alpha", 5))))
    other = FakeEntryPoint("other", _module("other_plugin", asp_register_specializers=_registers(
        "", ("fake", "gamma", 1))))
    entry_points(_good(), dup, other)
    with pytest.warns(PluginWarning, match=r"'zdup'.*fake/platform_selection/alpha is already "
                                           r"registered by plugin 'good'"):
        registry = plugins_mod.get_registry()
    names = [c.name for c in registry.for_phase("fake", "platform_selection")]
    assert "alpha" in names and "gamma" in names
    assert [b.name for b in plugins_mod.broken_plugins()] == ["zdup"]
    alpha = [c for c in registry.for_phase("fake", "platform_selection") if c.name == "alpha"]
    assert alpha[0].plugin == "good" and alpha[0].priority == 0


def test_duplicate_specializer_is_refused():
    from asp_core.registry import Registry

    reg = Registry()
    reg.specializer("x")
    with pytest.raises(PluginError, match="specializer 'x' is already registered"):
        reg.specializer("x")
    with pytest.raises(PluginError):
        reg.specializer("")
    with pytest.raises(ValueError, match="unknown phase 'frontnd'"):
        reg.component("x", "frontnd", "p", object())


def test_misspelt_hook_is_broken_not_fatal(entry_points):
    typo = FakeEntryPoint("typo", _module("typo_plugin",
                                          asp_register_specializer=_registers("typo")))
    entry_points(_good(), typo)
    with pytest.warns(PluginWarning, match=r"'typo' \(asp-typo\) failed to validate"):
        pm = plugins_mod.get_plugin_manager()
    assert "typo" not in _loaded_names()
    pm.check_pending()  # the host's plugin manager is consistent again
    assert "fake" in plugins_mod.get_registry().specializers
    broken = plugins_mod.broken_plugins()
    assert [b.name for b in broken] == ["typo"]
    assert "asp_register_specializer" in broken[0].error


def test_register_hook_raising_is_broken(entry_points):
    def explode(register):
        raise RuntimeError("kaboom")

    entry_points(_good(), FakeEntryPoint("boom", _module("boom_plugin",
                                                         asp_register_specializers=explode)))
    with pytest.warns(PluginWarning, match="kaboom"):
        assert "fake" in plugins_mod.get_registry().specializers
    assert [b.name for b in plugins_mod.broken_plugins()] == ["boom"]


def test_disable_autoload(entry_points, monkeypatch):
    entry_points(_good(), FakeEntryPoint("bad", ImportError("never loaded")))
    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins_mod.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plugins_mod.get_registry().specializers == {}
        assert plugins_mod.broken_plugins() == []
    # plugins registered in code still work
    name = plugins_mod.register_plugin(_module("inproc", asp_register_specializers=_registers(
        "inproc", ("inproc", "p", 0))), name="inproc")
    assert "inproc" in plugins_mod.get_registry().specializers
    assert plugins_mod.get_registry().specializers["inproc"].distribution == "(in-process)"
    plugins_mod.unregister_plugin(name)
    assert "inproc" not in plugins_mod.get_registry().specializers


def test_block_plugins_by_entry_point_or_distribution(entry_points, monkeypatch):
    entry_points(_good(), FakeEntryPoint("bad", ImportError("never loaded"), dist="asp-bad"),
                 FakeEntryPoint("other", _module("o", asp_register_specializers=_registers(
                     "other")), dist="asp-other"))
    monkeypatch.setenv("ASP_BLOCK_PLUGINS", "bad, asp-other")
    plugins_mod.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(plugins_mod.get_registry().specializers) == {"fake"}
    assert plugins_mod.broken_plugins() == []


def test_distribution_names_match_in_any_spelling_pip_takes(entry_points, monkeypatch):
    """``ASP_BLOCK_PLUGINS=asp_other`` for the distribution ``asp-other`` was "no installed
    plugin has" and blocked nothing; pip takes both spellings (and any case) for one name."""
    entry_points(_good(), FakeEntryPoint("other", _module("o3", asp_register_specializers=
                                                          _registers("other")), dist="asp-other"))
    for spelling in ("asp_other", "ASP.Other"):
        monkeypatch.setenv("ASP_BLOCK_PLUGINS", spelling)
        plugins_mod.reset()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert set(plugins_mod.get_registry().specializers) == {"fake"}
    monkeypatch.delenv("ASP_BLOCK_PLUGINS")
    monkeypatch.setenv("ASP_LOAD_PLUGINS", "Asp_Other")
    plugins_mod.reset()
    assert set(plugins_mod.get_registry().specializers) == {"other"}


def test_load_plugins_allow_list(entry_points, monkeypatch):
    entry_points(_good(), FakeEntryPoint("bad", ImportError("never loaded")),
                 FakeEntryPoint("other", _module("o2", asp_register_specializers=_registers(
                     "other")), dist="asp-other"))
    monkeypatch.setenv("ASP_LOAD_PLUGINS", "asp-other")
    plugins_mod.reset()
    assert set(plugins_mod.get_registry().specializers) == {"other"}
    monkeypatch.setenv("ASP_LOAD_PLUGINS", "")
    plugins_mod.reset()
    assert plugins_mod.get_registry().specializers == {}
    monkeypatch.setenv("ASP_LOAD_PLUGINS", "good,other")
    plugins_mod.reset()
    assert set(plugins_mod.get_registry().specializers) == {"fake", "other"}


def test_a_load_or_block_name_no_plugin_has_is_a_warning(entry_points, monkeypatch):
    """A misspelt ``ASP_LOAD_PLUGINS`` loaded nothing ("No specializers installed") and a
    misspelt ``ASP_BLOCK_PLUGINS`` blocked nothing, without a word."""
    entry_points(_good())
    monkeypatch.setenv("ASP_LOAD_PLUGINS", "good,goood")
    plugins_mod.reset()
    with pytest.warns(PluginWarning, match=r"ASP_LOAD_PLUGINS names 'goood', which no "
                                           r"installed plugin has \(installed: .*good"):
        assert set(plugins_mod.get_registry().specializers) == {"fake"}
    monkeypatch.delenv("ASP_LOAD_PLUGINS")
    monkeypatch.setenv("ASP_BLOCK_PLUGINS", "nosuch")
    plugins_mod.reset()
    with pytest.warns(PluginWarning, match="ASP_BLOCK_PLUGINS names 'nosuch'"):
        assert set(plugins_mod.get_registry().specializers) == {"fake"}


def test_each_distributions_metadata_is_read_once(entry_points):
    """``ep.dist.name`` parses the distribution's metadata file at every use: loading the
    plugins parsed each five or six times (10 ms of every process's first call)."""
    eps = [_good(), FakeEntryPoint("other", _module("o4", asp_register_specializers=_registers(
        "other")))]
    entry_points(*eps)
    assert set(plugins_mod.get_registry().specializers) == {"fake", "other"}
    assert [ep.dist.reads for ep in eps] == [1, 1]


def test_reset_rereads_entry_points(entry_points):
    entry_points(_good())
    assert "fake" in plugins_mod.get_registry().specializers
    entry_points(FakeEntryPoint("other", _module("o3", asp_register_specializers=_registers(
        "other"))))  # installs and resets
    assert set(plugins_mod.get_registry().specializers) == {"fake", "other"}
    other = plugins_mod.get_registry().specializers["other"]
    assert (other.distribution, other.version) == ("asp-other", "1.2.3")


# -- choice between components ------------------------------------------------------------------
@pytest.fixture
def prec(plugin_state, monkeypatch, tmp_path):
    """Specializer "prec" with platforms a (priority 0), b (5), c (5, registered after b)."""
    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("ASP_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    plugins_mod.reset()
    plugins_mod.register_plugin(_module("prec", asp_register_specializers=_registers(
        "prec", ("prec", "a", 0), ("prec", "b", 5), ("prec", "c", 5))), name="prec")
    return plugins_mod.get_registry()


def _order(reg, options=None) -> tuple[list[str], str]:
    choice = reg.choose("prec", "platform_selection", options)
    return [c.name for c in choice.candidates], choice.reason


def _config(monkeypatch, tmp_path, text: str, name: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    monkeypatch.setenv("ASP_CONFIG", str(path))


def test_priority_then_registration_order(prec):
    order, why = _order(prec)
    assert order == ["b", "c", "a"]
    assert why == "first registered"


def test_highest_priority_reason(plugin_state, monkeypatch):
    from asp_core.registry import Registry

    reg = Registry()
    reg.component("s", "backend", "low", object(), priority=-1)
    reg.component("s", "backend", "high", object(), priority=3)
    choice = reg.choose("s", "backend")
    assert [c.name for c in choice.candidates] == ["high", "low"]
    assert choice.reason == "highest priority (3)"
    assert reg.choose("s", "frontend").candidates == []


def test_config_file_beats_priority(prec, monkeypatch, tmp_path):
    _config(monkeypatch, tmp_path, '[phases]\nplatform_selection = "a"\n', "g.toml")
    order, why = _order(prec)
    assert order[0] == "a" and order[1:] == ["b", "c"]
    assert "config [phases]" in why
    _config(monkeypatch, tmp_path, '[phases]\nplatform_selection = "a"\n'
            '[phases.prec]\nplatform_selection = "c"\n', "s.toml")
    order, why = _order(prec)
    assert order[0] == "c" and "config [phases.prec]" in why


def test_environment_beats_config(prec, monkeypatch, tmp_path):
    _config(monkeypatch, tmp_path, '[phases]\nplatform_selection = "a"\n', "e.toml")
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "c")
    assert _order(prec)[0][0] == "c"
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "other:b,prec:a")
    monkeypatch.setattr(registry_module, "_WARNED", set())
    with pytest.warns(PluginWarning, match="names specializer 'other'"):   # not installed
        order, why = _order(prec)
    assert order[0] == "a" and "ASP_PLATFORM_SELECTION" in why
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "other:b")  # not for prec: config applies
    assert _order(prec)[0][0] == "a" and "config" in _order(prec)[1]


def test_kernel_option_beats_environment(prec, monkeypatch):
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "c")
    order, why = _order(prec, {"platform_selection": "a"})
    assert order == ["a", "b", "c"] and why == "'a' requested by kernel option"


def test_unknown_component_is_a_clear_error(prec, monkeypatch):
    with pytest.raises(PluginError, match=r"kernel option asks for platform_selection component "
                                          r"'zzz' of specializer 'prec', but the installed ones "
                                          r"are: b, c, a"):
        _order(prec, {"platform_selection": "zzz"})
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "nope")
    with pytest.raises(PluginError, match="ASP_PLATFORM_SELECTION asks for"):
        _order(prec)


def test_invalid_config_file_is_a_clear_error(prec, monkeypatch, tmp_path):
    _config(monkeypatch, tmp_path, "[phases\nbroken", "bad.toml")
    with pytest.raises(ValueError, match="invalid Asp config file .*bad.toml"):
        _order(prec)


def test_platform_filter_for_backends():
    from asp_core.registry import Registry

    reg = Registry()
    any_ = types.SimpleNamespace(platforms=())
    reg.component("s", "backend", "c", types.SimpleNamespace(platforms=("openmp",)), priority=1)
    reg.component("s", "backend", "cu", types.SimpleNamespace(platforms=("cuda",)), priority=2)
    reg.component("s", "backend", "generic", any_)
    assert [c.name for c in reg.choose("s", "backend", platform="openmp").candidates] == [
        "c", "generic"]
    # a backend of another platform is named as such (it was "the installed ones are: c,
    # generic", as if "cu" were not installed)
    with pytest.raises(PluginError, match=r"'cu' of specializer 's', but it serves platforms "
                                          r"cuda, not 'openmp' .*platform_selection.*the ones "
                                          r"serving 'openmp' are: c, generic"):
        reg.choose("s", "backend", {"backend": "cu"}, platform="openmp")
    with pytest.raises(PluginError, match="'zz' .*the installed ones serving 'openmp' are: c, generic"):
        reg.choose("s", "backend", {"backend": "zz"}, platform="openmp")
    # installed, but for other platforms: not "no component installed" (asp explain said so
    # of a third-party platform that had no optimiser of its own)
    reg.component("s", "platform_optimization", "loops",
                  types.SimpleNamespace(platforms=("openmp",)))
    assert reg.choose("s", "platform_optimization", platform="serial").reason == \
        "none of those installed (loops) serves platform 'serial'"
    assert reg.choose("s", "frontend").reason == "no component installed"


def test_end_to_end_choice_recorded(elementwise, fresh_cache, monkeypatch):
    """The dispatcher honours the user's choice and records why for ``asp explain``."""
    import numpy as np

    from asp_core import Dispatcher

    def k(a):
        return a + 1.0

    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "elementwise:python")
    d = Dispatcher("elementwise", k)
    a = np.arange(5.0)
    np.testing.assert_array_equal(d(a), a + 1.0)
    platform = d.last_context.decision("platform_selection")
    assert platform is not None and platform.choice == "python"
    assert platform.reason == "'python' requested by ASP_PLATFORM_SELECTION"
    assert platform.source == "requested"
    assert d.last_context.decision("backend").choice == "vectorize"
    assert not (fresh_cache / "code").exists()


def test_raising_observer_plugin_does_not_break_kernels(elementwise, fresh_cache, monkeypatch):
    """A plugin whose asp_specialization_done raises is reported; the kernel still works."""
    import numpy as np

    from asp_core import Dispatcher

    seen = []

    def observe(ctx, result):
        seen.append(ctx.kernel_name)

    def explode(ctx, result):
        raise RuntimeError("observer bug")

    good = plugins_mod.register_plugin(_module("obs_good", asp_specialization_done=observe),
                                       name="obs-good")
    bad = plugins_mod.register_plugin(_module("obs_bad", asp_specialization_done=explode),
                                      name="obs-bad")
    try:
        def k(a):
            return a * 3.0

        monkeypatch.setenv("ASP_AUTOTUNE", "off")
        d = Dispatcher("elementwise", k)
        with pytest.warns(PluginWarning, match="obs-bad.*observer bug"):
            np.testing.assert_array_equal(d(np.ones(3)), np.full(3, 3.0))
        assert len(seen) == 1 and seen[0].endswith("k")
        assert "obs-bad" in [b.name for b in plugins_mod.broken_plugins()]
    finally:
        plugins_mod.unregister_plugin(good)
        plugins_mod.unregister_plugin(bad)


def test_doctor_survives_a_raising_check(plugin_state, monkeypatch):
    from asp_core.cli.doctor import checks

    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins_mod.reset()

    def broken_checks():
        raise RuntimeError("check bug")

    plugins_mod.register_plugin(_module("chk", asp_doctor_checks=broken_checks), name="chk")
    plugins_mod.register_plugin(_module("chk2", asp_doctor_checks=lambda: [("thing", True,
                                                                             "fine")]),
                                name="chk2")
    rows = checks(measure_stream=False)
    assert ("thing", True, "fine") in rows
    bad = [r for r in rows if "chk" in r[0] and not r[1]]
    assert bad and "check bug" in bad[0][2]


def test_trace_hooks(plugin_state, monkeypatch, caplog):
    """Through the ``asp.plugins`` logger, like every message of Asp."""
    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("ASP_TRACE_HOOKS", "1")
    plugins_mod.reset()
    plugins_mod.register_plugin(_module("traced", asp_register_specializers=_registers("tr")),
                                name="traced")
    with caplog.at_level("INFO", logger="asp"):
        assert "tr" in plugins_mod.get_registry().specializers
    assert "hook asp_register_specializers -> traced ((in-process))" in [
        r.getMessage() for r in caplog.records if r.name == "asp.plugins"]


def test_benchmarks_remember_their_plugin(plugin_state, monkeypatch):
    from asp_bench import collect_benchmarks

    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins_mod.reset()

    def reg(register):
        register.benchmark(name="b1", func=lambda bench: None)

    plugins_mod.register_plugin(_module("benchy", asp_register_benchmarks=reg), name="benchy")
    assert collect_benchmarks().benchmarks["b1"].plugin == "benchy"


def test_component_registered_by_name_is_imported_on_first_use(tmp_path, monkeypatch):
    """``"module:attr"`` components cost nothing until used; their platforms can be declared."""
    import sys

    from asp_core.errors import PluginError
    from asp_core.registry import Registry

    pkg = tmp_path / "lazy_component_mod.py"
    pkg.write_text("class Backend:\n    platforms = ('openmp',)\n    made = 0\n"
                   "    def __init__(self):\n        Backend.made += 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    comp = reg.component("x", "backend", "lazy", "lazy_component_mod:Backend",
                         platforms=["openmp"])
    assert "lazy_component_mod" not in sys.modules
    assert comp.platforms == ("openmp",)
    assert reg.choose("x", "backend", platform="openmp").candidates == [comp]
    assert "lazy_component_mod" not in sys.modules
    obj = comp.obj
    assert type(obj).__name__ == "Backend" and obj is comp.obj
    assert sys.modules["lazy_component_mod"].Backend.made == 1

    undeclared = reg.component("x", "backend", "lazy2", "lazy_component_mod:Backend")
    assert undeclared.platforms == ("openmp",)  # read from the imported object
    for bad, match in (("no_colon_here", "expected 'package.module:attribute'"),
                       ("no_such_module_xyz:Thing", "cannot be loaded from"),
                       ("lazy_component_mod:Missing", "cannot be loaded from")):
        with pytest.raises(PluginError, match=match):
            _ = reg.component("x", "frontend", bad, bad).obj


class _Platforms:
    def __init__(self, platforms):
        self.platforms = platforms


def test_a_component_whose_platforms_cannot_be_read_serves_none(plugin_state):
    """A phase 4/5 component registered by a name that does not import, or whose
    ``platforms`` is not a list of names, is a broken plugin: passed over with a
    ``PluginWarning``, listed, and never the reason the others are not chosen. Reading its
    platforms raised while the candidates of every kernel's phase were filtered."""
    from asp_core.registry import Registry

    reg = Registry()
    reg.component("s", "backend", "c", _Platforms(("openmp",)))
    reg.component("s", "backend", "missing", "asp_no_such_module_x:Backend", priority=5)
    reg.component("s", "backend", "five", _Platforms(5), priority=4)
    reg.component("s", "backend", "letters", _Platforms("openmp"), priority=3)
    with pytest.warns(PluginWarning) as caught:
        chosen = reg.choose("s", "backend", platform="openmp")
    assert [c.name for c in chosen.candidates] == ["c"]
    text = " ".join(str(w.message) for w in caught)
    assert "asp_no_such_module_x" in text and "got 5" in text and "got 'openmp'" in text
    assert len(plugins_mod.broken_plugins()) == 3


@pytest.mark.parametrize("kwargs,message", [
    ({"specializer": 1}, "non-empty string specializer, got 1"),
    ({"name": ""}, "non-empty string name, got ''"),
    ({"platforms": "openmp"}, "platforms must be a list of platform names, got 'openmp'"),
])
def test_malformed_component_registration_is_refused(kwargs, message):
    from asp_core.registry import Registry

    args = {"specializer": "s", "phase": "backend", "name": "c", "obj": object()} | kwargs
    with pytest.raises(PluginError, match=message):
        Registry().component(**args)


def test_a_broken_backend_never_chosen_leaves_kernels_specialised(plugin_state, elementwise,
                                                                  fresh_cache, monkeypatch):
    """Every kernel of the element-wise specializer ran in Python because a plugin's backend
    registered by name did not import; ``asp list`` ended in a traceback, ``asp doctor``
    said every plugin was fine."""
    import numpy as np
    from click.testing import CliRunner

    from asp_core import Dispatcher
    from asp_core.cli import cli
    from asp_core.cli.doctor import checks

    monkeypatch.setenv("ASP_AUTOTUNE", "off")

    def register_broken() -> None:
        plugins_mod.register_plugin(_module("lazy_bad", asp_register_specializers=lambda
                                            register: register.component(
                                                specializer="elementwise", phase="backend",
                                                name="gone", obj="asp_no_such_module_y:B")),
                                    name="lazy-bad")

    register_broken()
    try:
        def k(a):
            return a * 2.0

        d = Dispatcher("elementwise", k)
        with pytest.warns(PluginWarning, match="asp_no_such_module_y"):
            np.testing.assert_array_equal(d(np.ones(3)), np.full(3, 2.0))
        assert d.last_context.decision("backend").choice in ("c", "vectorize")
        listed = CliRunner().invoke(cli, ["list", "--json"])
        assert listed.exit_code == 0, listed.output
        assert any("asp_no_such_module_y" in b["error"] for b in json.loads(listed.output)["broken"])
        plugins_mod.reset()   # a fresh process: doctor itself must find the broken component
        plugins_mod.register_plugin(elementwise, name="test-elementwise")
        register_broken()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)
            rows = checks(measure_stream=False)
        row = next(r for r in rows if r[0] == "plugins")
        assert not row[1] and "asp_no_such_module_y" in row[2]
    finally:
        plugins_mod.reset()


@pytest.mark.parametrize("answer", ["all good", [("only two", True)], ("name", True, "x")])
def test_doctor_survives_a_malformed_check(plugin_state, monkeypatch, answer):
    """A plugin check returning anything but a list of (name, ok, detail) ended the whole
    doctor in a traceback; it is a failed row naming the plugin."""
    from asp_core.cli.doctor import checks

    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins_mod.reset()
    plugins_mod.register_plugin(_module("odd", asp_doctor_checks=lambda: answer), name="odd")
    rows = checks(measure_stream=False)
    bad = [r for r in rows if r[0] == "plugin odd"]
    assert bad and not bad[0][1] and "not a list of (name, ok, detail)" in bad[0][2]


def test_a_plugin_whose_second_registration_raises_keeps_nothing(plugin_state):
    """A plugin with two ``asp_register_specializers`` implementations (``specname=``) was
    reported skipped when one raised, while the other's components stayed registered and
    were chosen by default."""
    from asp_core import hookimpl

    class TwoHalves:
        @hookimpl
        def asp_register_specializers(self, register):
            register.specializer("halves")
            register.component(specializer="halves", phase="backend", name="mine",
                               obj=object(), priority=50)

        @hookimpl(specname="asp_register_specializers")
        def more(self, register):
            raise RuntimeError("second registration failed")

    with pytest.warns(PluginWarning, match=r"plugin 'two' \(in-process\) failed to run "
                                           r"asp_register_specializers.*second registration"):
        plugins_mod.register_plugin(TwoHalves(), name="two")
        registry = plugins_mod.get_registry()
    assert "halves" not in registry.specializers
    assert not [c for c in registry.components if c.plugin == "two"]


def test_asp_list_shows_no_default_for_a_specializer_no_plugin_defines(plugin_state,
                                                                       monkeypatch):
    """Components registered for a misspelt specializer (``stencill``) were listed with
    ``default: true``, though no kernel can get them."""
    from asp_core.cli.listing import listing

    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins_mod.reset()
    plugins_mod.register_plugin(_module("typo", asp_register_specializers=lambda register:
                                        register.component(specializer="stencill",
                                                           phase="backend", name="extra",
                                                           obj=object(), priority=100)),
                                name="typo")
    (spec,) = listing()["specializers"]
    assert spec["name"] == "stencill" and not spec["defined"]
    assert [c["default"] for c in spec["phases"]["backend"]] == [False]

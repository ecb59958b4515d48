"""Plugin-host faults (issue 14): a faulty third-party plugin is reported and skipped; the
built-ins and every other plugin keep working."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from asp_core import Dispatcher, Platform, PluginWarning, hookimpl
from asp_core import plugins as plugins_mod
from tests.specializers.fake_plugins import FakeEntryPoint
from tests.specializers.fake_plugins import module as _module
from tests.specializers.fake_plugins import registers as _registers


def test_plugin_calling_sys_exit_at_import_is_reported_not_fatal(entry_points):
    builtin = FakeEntryPoint("stencil", _module("builtin", asp_register_specializers=_registers(
        "fake", ("fake", "alpha", 0))), dist="asp-stencil")
    entry_points(builtin, FakeEntryPoint("quitter", SystemExit(3)))
    with pytest.warns(PluginWarning, match=r"'quitter'.*SystemExit: 3"):
        assert "fake" in plugins_mod.get_registry().specializers
    assert [b.name for b in plugins_mod.broken_plugins()] == ["quitter"]
    from asp_core.cli import cli

    with pytest.warns(PluginWarning):
        plugins_mod.reset()
        result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0 and "quitter" in result.output


def test_plugin_calling_sys_exit_while_registering_is_reported(entry_points):
    def leave(register):
        register.component("fake", "platform_selection", "half", Platform())
        sys.exit("bye")

    builtin = FakeEntryPoint("stencil", _module("builtin", asp_register_specializers=_registers(
        "fake", ("fake", "alpha", 0))), dist="asp-stencil")
    entry_points(builtin, FakeEntryPoint("leaver", _module("leaver",
                                                           asp_register_specializers=leave)))
    with pytest.warns(PluginWarning, match="bye"):
        reg = plugins_mod.get_registry()
    assert [c.name for c in reg.for_phase("fake", "platform_selection")] == ["alpha"]


def test_third_party_reusing_a_builtin_name_is_refused_and_builtin_stays_whole(entry_points):
    # "aaa" sorts before "stencil": by name alone the third party would register first
    evil = FakeEntryPoint("aaa", _module("evil", asp_register_specializers=_registers(
        "", ("fake", "extra", 0), ("fake", "alpha", 50))), dist="third-party")
    builtin = FakeEntryPoint("stencil", _module("builtin", asp_register_specializers=_registers(
        "fake", ("fake", "alpha", 0), ("fake", "beta", 1))), dist="asp-stencil")
    entry_points(evil, builtin)
    with pytest.warns(PluginWarning, match=r"'aaa' \(third-party\).*alpha is already registered "
                                           r"by plugin 'stencil'"):
        reg = plugins_mod.get_registry()
    comps = {c.name: c for c in reg.for_phase("fake", "platform_selection")}
    assert set(comps) == {"alpha", "beta"}  # the refused plugin left nothing behind
    assert comps["alpha"].plugin == "stencil" and comps["alpha"].priority == 0
    assert reg.specializers["fake"].plugin == "stencil"
    assert [b.name for b in plugins_mod.broken_plugins()] == ["aaa"]


class _Raises(Platform):
    def __init__(self, where):
        self.where = where

    def check(self, dast, ctx):
        if self.where == "check":
            raise RuntimeError("check exploded")
        return None

    def lower(self, dast, ctx):
        raise RuntimeError("lower exploded")


@pytest.mark.parametrize("where", ["check", "lower"])
def test_raising_third_party_platform_is_broken_and_next_candidate_runs(
        elementwise, fresh_cache, monkeypatch, where):
    class Third:
        @hookimpl
        def asp_register_specializers(self, register):
            register.component("elementwise", "platform_selection", "shiny", _Raises(where),
                               priority=1000)

    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "")
    plugins_mod.register_plugin(Third(), name="third-shiny")
    try:
        def double(a):
            return a * 2.0

        d = Dispatcher("elementwise", double)
        a = np.arange(6.0)
        with pytest.warns(PluginWarning, match=f"{where} exploded"):
            np.testing.assert_array_equal(d(a), a * 2.0)
        ps = d.last_context.decision("platform_selection")
        assert ps is not None and ps.choice != "shiny"
        assert ("shiny", f"broken: RuntimeError: {where} exploded") in ps.params["rejected"]
        broken = plugins_mod.broken_plugins()
        assert any(b.name == "third-shiny" and "platform_selection/shiny" in b.error
                   for b in broken)
        from asp_core.cli.doctor import checks

        plugin_check = [c for c in checks(measure_stream=False) if c[0] == "plugins"][0]
        assert not plugin_check[1] and "shiny" in plugin_check[2]
    finally:
        plugins_mod.unregister_plugin("third-shiny")
        plugins_mod.reset()

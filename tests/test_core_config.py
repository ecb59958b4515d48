"""User settings: environment over the asp.toml config file over defaults, read on every use."""

from __future__ import annotations

import re

import pytest

from asp_core import config


def test_defaults(toml, tmp_path, monkeypatch):
    monkeypatch.setenv("ASP_CONFIG", str(tmp_path / "absent.toml"))
    assert config.mode() == "auto" and config.autotune_mode() == "once"
    assert config.load_config() == {}
    assert config.cache_dir().name == "asp"


def test_config_file_then_environment(toml, monkeypatch, tmp_path):
    toml('[asp]\nmode = "python"\nautotune = "always"\ncache_dir = "~/asp-cache-x"\n')
    assert config.mode() == "python" and config.autotune_mode() == "always"
    assert str(config.cache_dir()).endswith("asp-cache-x") and "~" not in str(config.cache_dir())
    monkeypatch.setenv("ASP_MODE", "Strict ")
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "env-cache"))
    assert config.mode() == "strict"
    assert config.cache_dir() == tmp_path / "env-cache"


def test_config_change_is_seen_without_reload(toml):
    import os
    import time

    path = toml('[asp]\nmode = "python"\n')
    assert config.mode() == "python"
    path.write_text('[asp]\nmode = "strict"\n')
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new mtime, even on coarse clocks
    assert config.mode() == "strict"


def test_invalid_values_are_clear_errors(toml, monkeypatch):
    """Each message names where the bad value came from: the variable, or the file and key
    (the variable was blamed for a value that came from the file, with the variable unset)."""
    monkeypatch.setenv("ASP_MODE", "turbo")
    with pytest.raises(ValueError, match="ASP_MODE='turbo' is not valid; use one of: auto, "
                                         "strict, python"):
        config.mode()
    monkeypatch.delenv("ASP_MODE")
    path = toml('[asp]\nmode = "turbo"\n')
    with pytest.raises(ValueError, match=f"invalid Asp config file {path}: \\[asp\\] mode = "
                                         "'turbo' is not valid; use one of: auto, strict, python"):
        config.mode()
    toml("not = [valid", "broken.toml")
    with pytest.raises(ValueError, match="invalid Asp config file .*broken.toml"):
        config.mode()


@pytest.mark.parametrize("text,problem", [
    ('asp = "x"\n', "'asp' must be a table"),
    ('phases = "x"\n', "'phases' must be a table"),
    ("[asp]\ncache_dir = 5\n", "cache_dir must be a string, got 5"),
    ("[phases]\nplatform_selection = 7\n", "must be a component name"),
    ('[phases]\nstencil = "numpy"\n', "'stencil' is not a phase"),
    ('[phases.stencil]\nplatform = "numpy"\n', "platform = 'numpy': expected a phase"),
    ('[asp]\nmode = "weird"\n', "mode = 'weird' is not valid; use one of: auto, strict, python"),
    ('[asp]\nautotune = "never"\n', "autotune = 'never' is not valid; use one of: off, once"),
    ('[asp]\ncompile_timeout = "60"\n', "compile_timeout must be a positive number of seconds, "
                                         "got '60'"),
    ("[asp]\ncompile_timeout = 0\n", "compile_timeout must be a positive number"),
    ("[asp]\ncompile_timeout = true\n", "compile_timeout must be a positive number"),
])
def test_config_of_the_wrong_shape_names_the_file(toml, text, problem):
    path = toml(text)
    with pytest.raises(ValueError, match=f"invalid Asp config file {path}: .*{problem}"):
        config.phase_choice("stencil", "platform_selection")


def test_unreadable_config_names_the_file(toml, tmp_path, monkeypatch):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe binary")
    monkeypatch.setenv("ASP_CONFIG", str(binary))
    with pytest.raises(ValueError, match="invalid Asp config file .*binary.toml"):
        config.mode()
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    monkeypatch.setenv("ASP_CONFIG", str(folder))
    with pytest.raises(ValueError, match="invalid Asp config file .*folder.toml"):
        config.mode()


def test_relative_cache_dir_is_made_absolute(toml, monkeypatch, tmp_path):
    """Compilers run inside the cache's build folder: a relative path would not be found."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASP_CACHE_DIR", "relcache")
    assert config.cache_dir() == tmp_path / "relcache"


def test_phase_choice_forms(toml, monkeypatch):
    toml('[phases]\nbackend = "c"\n[phases.stencil]\nbackend = "cuda"\n')
    assert config.phase_choice("gmm", "backend") == ("c", "config [phases]")
    assert config.phase_choice("stencil", "backend") == ("cuda", "config [phases.stencil]")
    monkeypatch.setenv("ASP_BACKEND", "gmm:openmp, numpy")
    assert config.phase_choice("gmm", "backend") == ("openmp", "ASP_BACKEND")
    assert config.phase_choice("stencil", "backend") == ("numpy", "ASP_BACKEND")
    assert config.phase_choice("stencil", "backend", {"backend": "x"}) == ("x", "kernel option")
    assert config.phase_choice("mpk", "frontend") == (None, "")


def test_disabled_passes(monkeypatch):
    monkeypatch.delenv("ASP_DISABLE_PASSES", raising=False)
    assert config.disabled_passes({"disable_passes": ["a", "b"]}) == {"a", "b"}


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("ON", True),
                                             ("yes", True), ("0", False), ("false", False),
                                             ("Off", False), ("no", False), ("", None)])
def test_yes_no_variables(monkeypatch, value, expected):
    """``ASP_DISABLE_PLUGIN_AUTOLOAD=0`` used to load no plugin: any value was "on"."""
    monkeypatch.setenv("ASP_TRACE_HOOKS", value)
    for default in (False, True):
        want = default if expected is None else expected
        assert config.flag("ASP_TRACE_HOOKS", default) is want


def test_a_yes_no_variable_with_another_value_names_it(monkeypatch):
    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "maybe")
    with pytest.raises(ValueError, match="ASP_DISABLE_PLUGIN_AUTOLOAD='maybe' is not valid"):
        config.flag("ASP_DISABLE_PLUGIN_AUTOLOAD")


def test_plugin_autoload_disabled_only_by_a_yes():
    import os
    import subprocess
    import sys

    code = "from asp_core import get_registry; print(sorted(get_registry().specializers))"
    for value, loaded in (("0", True), ("1", False)):
        env = {**os.environ, "ASP_DISABLE_PLUGIN_AUTOLOAD": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=120).stdout
        assert ("stencil" in out) is loaded, out


def test_compile_timeout_from_the_variable_then_the_file(toml, monkeypatch):
    toml("")
    assert config.compile_timeout() == 600.0
    toml("[asp]\ncompile_timeout = 90\n")
    assert config.compile_timeout() == 90.0
    monkeypatch.setenv("ASP_COMPILE_TIMEOUT", " 2.5 ")
    assert config.compile_timeout() == 2.5


@pytest.mark.parametrize("value", ["0", "-3", "abc", "inf", "nan"])
def test_a_bad_compile_timeout_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("ASP_COMPILE_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"ASP_COMPILE_TIMEOUT='{value}' is not valid; use a "
                                         "positive number of seconds"):
        config.compile_timeout()


def test_the_file_s_choices_are_read_as_the_variables_are(toml, monkeypatch):
    """``ASP_AUTOTUNE=OFF`` was accepted and ``autotune = "OFF"`` in the file an error."""
    toml('[asp]\nmode = " Strict "\nautotune = "OFF"\n')
    assert (config.mode(), config.autotune_mode()) == ("strict", "off")
    monkeypatch.setenv("ASP_AUTOTUNE", "Always")
    assert config.autotune_mode() == "always"


@pytest.mark.parametrize("value,message", [
    ("stencil:c,stencil:traced-c", "names two components for stencil: 'c' and 'traced-c'"),
    ("numpy,openmp", "names two components for every specializer: 'numpy' and 'openmp'"),
    ("stencil:", "the part 'stencil:' names no component"),
    (":c", "the part ':c' names no specializer"),
])
def test_a_phase_variable_naming_two_components_or_none_is_an_error(monkeypatch, value,
                                                                      message):
    """The first of two parts for one specializer won, and an empty part was ignored, without
    a word (and ``asp doctor`` said the settings were valid)."""
    monkeypatch.setenv("ASP_BACKEND", value)
    with pytest.raises(ValueError, match=re.escape(f"ASP_BACKEND={value!r}") + ".*"
                       + re.escape(message)):
        config.phase_choice("stencil", "backend")
    with pytest.raises(ValueError, match="ASP_BACKEND="):
        config.phase_variables()


def test_same_component_twice_and_separate_specializers_are_fine(monkeypatch):
    monkeypatch.setenv("ASP_BACKEND", "stencil:c, stencil:c ,gmm:openmp-c,numpy")
    assert config.phase_choice("stencil", "backend") == ("c", "ASP_BACKEND")
    assert config.phase_choice("mpk", "backend") == ("numpy", "ASP_BACKEND")
    config.phase_variables()


def test_an_empty_component_in_the_file_is_an_error(toml):
    toml('[phases.stencil]\nbackend = ""\n')
    with pytest.raises(ValueError, match=r"\[phases.stencil\] backend = ''"):
        config.load_config()

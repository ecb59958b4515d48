"""Settings as users meet them: the config file, OMP_NUM_THREADS, cgroup files, ASP_CC and
ASP_CFLAGS, and what ``asp doctor`` says about them (a bug hunt's regression tests)."""

from __future__ import annotations

import os

import pytest

from asp_core import CompilerNotFound, config, hardware
from asp_core.toolchain import find_toolchain
from pytest_asp import requires_compiler


@pytest.mark.parametrize("text, named", [
    ('[asp]\nauto_tune = "off"\n', "auto_tune"),                # a typo of autotune
    ('[phase]\nplatform_selection = "python"\n', "'phase'"),    # a typo of [phases]
    ('mode = "python"\n[asp]\n', "'mode'"),                     # outside the [asp] table
])
def test_a_key_asp_does_not_read_is_an_error_naming_it(toml, text, named):
    path = toml(text.encode())
    with pytest.raises(ValueError) as info:
        config.mode()
    message = str(info.value)
    assert str(path) in message and named in message
    assert "autotune" in message or "[phases]" in message  # what it may be instead


def test_a_config_file_with_a_byte_order_mark_is_read(toml):
    toml(b'\xef\xbb\xbf[asp]\nmode = "python"\n')  # as Windows Notepad saves UTF-8
    assert config.mode() == "python"


@pytest.mark.parametrize("value, expected", [("+4", 4), (" +3 ", 3), ("٣", None), ("++4", None)])
def test_omp_num_threads_is_read_as_libgomp_reads_it(monkeypatch, value, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert hardware.omp_num_threads() == expected


def test_a_cgroup_whose_name_is_not_utf8_still_gives_its_quota(tmp_path):
    name = b"job-\xe9t\xe9"  # latin-1: cgroup names are any bytes
    group = os.path.join(os.fsencode(tmp_path), name)
    os.mkdir(group)
    with open(os.path.join(group, b"cpu.max"), "w") as fh:
        fh.write("150000 100000\n")
    membership = tmp_path / "cgroup"
    membership.write_bytes(b"0::/" + name + b"\n")
    assert hardware.cgroup_cpu_quota(tmp_path, membership) == 1.5


@requires_compiler
def test_a_relative_asp_cc_compiles_in_the_build_directory(tmp_path, monkeypatch, fresh_cache):
    real = find_toolchain("c").executable
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin" / "mycc"
    wrapper.write_text(f'#!/bin/sh\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASP_CC", "./bin/mycc")
    tc = find_toolchain("c")
    assert tc.executable == str(wrapper)
    build = tmp_path / "build"
    build.mkdir()
    assert tc.compile("int f(void) { return 1; }\n", build).output.is_file()


def test_an_asp_cc_that_cannot_be_executed_is_compiler_not_found(tmp_path, monkeypatch,
                                                                 fresh_cache):
    cc = tmp_path / "cc"
    cc.write_text("not a program and no #! line\n")  # as a compiler built for another CPU
    cc.chmod(0o755)
    monkeypatch.setenv("ASP_CC", str(cc))
    with pytest.raises(CompilerNotFound, match="ASP_CC.*cannot be run"):
        find_toolchain("c")


@requires_compiler
def test_asp_cflags_with_unbalanced_quotes_is_compiler_not_found_naming_it(monkeypatch,
                                                                            fresh_cache):
    monkeypatch.setenv("ASP_CFLAGS", "-DNAME='a b")
    with pytest.raises(CompilerNotFound, match="ASP_CFLAGS=.*quot"):
        find_toolchain("c")


@requires_compiler
def test_doctor_fails_asp_cflags_the_compiler_rejects(monkeypatch, fresh_cache):
    from asp_core.cli.doctor import checks

    monkeypatch.setenv("ASP_CFLAGS", "-fno-such-asp-flag")
    found = {name: (ok, detail) for name, ok, detail in checks(measure_stream=False)}
    assert found["c compiler"][0]  # the compiler itself works
    ok, detail = found["ASP_CFLAGS"]
    assert not ok and "-fno-such-asp-flag" in detail
    monkeypatch.setenv("ASP_CFLAGS", "-DASP_FINE=1")
    found = {name: (ok, detail) for name, ok, detail in checks(measure_stream=False)}
    assert found["ASP_CFLAGS"][0]


@pytest.mark.parametrize("setting", ["ASP_TRACE_HOOKS=x", "ASP_DISABLE_PLUGIN_AUTOLOAD=maybe"])
def test_a_bad_yes_no_setting_is_one_line_from_every_command(setting):
    """The plugins' commands are registered when ``asp_core.cli`` is imported, and loading the
    plugins reads these variables: a bad value was a traceback from every ``asp`` command."""
    import subprocess
    import sys

    name, value = setting.split("=")
    proc = subprocess.run([sys.executable, "-m", "asp_core.cli", "list"], capture_output=True,
                          text=True, env={**os.environ, name: value}, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{name}={value!r} is not valid" in proc.stderr


@pytest.mark.parametrize("setting", ["ASP_TRACE_HOOKS=x", "ASP_DISABLE_PLUGIN_AUTOLOAD=maybe",
                                     "ASP_CONFIG=/dev/zero"])
def test_asp_doctor_shows_a_bad_setting_as_a_failed_row(setting, tmp_path):
    """``asp doctor`` exists to name what is wrong: a bad setting read while loading the
    plugins ended it in the one line every other command prints, with no row at all."""
    import subprocess
    import sys

    name, value = setting.split("=")
    proc = subprocess.run([sys.executable, "-m", "asp_core.cli", "doctor", "--no-stream"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, name: value, "ASP_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "[FAIL] settings" in line]
    assert rows and (name in rows[0] or value in rows[0]), proc.stdout
    assert "] c compiler" in proc.stdout


def _plus_one(x):
    return x + 1.0


def _twice(x):
    return x * 2.0


def test_a_phase_setting_naming_no_installed_specializer_warns_once(toml, monkeypatch,
                                                                    elementwise, fresh_cache):
    """``ASP_PLATFORM_SELECTION=elementwis:python`` (a typo) or a ``[phases.elementwis]`` table
    used to be ignored without a word; each now warns once, naming the installed ones, and the
    kernel still runs."""
    import warnings

    import numpy as np

    from asp_core import Dispatcher, PluginWarning, registry

    monkeypatch.setattr(registry, "_WARNED", set())
    toml(b'[phases.elementwis]\nplatform_selection = "python"\n')
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "elementwis:python,elementwise:python")
    a = np.arange(4.0)
    with pytest.warns(PluginWarning) as record:
        np.testing.assert_array_equal(Dispatcher("elementwise", _plus_one)(a), a + 1.0)
    messages = sorted(str(w.message) for w in record if w.category is PluginWarning)
    assert len(messages) == 2 and all("'elementwis'" in m and "elementwise" in m
                                      for m in messages)
    assert "ASP_PLATFORM_SELECTION" in messages[0] and "[phases.elementwis]" in messages[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        Dispatcher("elementwise", _twice)(a)   # once per setting


def test_the_config_file_follows_the_variables_that_locate_it(tmp_path, monkeypatch):
    """The user's config folder is looked up once per value of the variables it is found
    from (platformdirs' lookup was half of a short ``iterate`` call): a changed
    ``XDG_CONFIG_HOME`` or ``HOME`` is still followed."""
    from asp_core import config

    monkeypatch.delenv("ASP_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "a"))
    assert config.config_path() == tmp_path / "a" / "asp" / "asp.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "b"))
    assert config.config_path() == tmp_path / "b" / "asp" / "asp.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.config_path() == tmp_path / "home" / ".config" / "asp" / "asp.toml"

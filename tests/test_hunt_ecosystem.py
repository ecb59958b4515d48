"""The ecosystem as a user meets it: installed plugins extending one another, ``asp new``
refusing values that would make a project pip cannot install, and its next-step hint."""

from __future__ import annotations

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

"""The ``asp`` commands as a user meets them on a bad day: a project name that pip would use to
uninstall something, a template or output folder that cannot be reached, a cache folder made
empty beforehand, a ``--path`` that defines no benchmark suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from asp_core import plugins as plugins_mod
from asp_core.cli import cli


def _asp(*args: str) -> Result:
    """``asp ARGS`` in process; a traceback in the output is always a bug here."""
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def _fake_distribution(site: Path, name: str) -> Path:
    """An installed distribution called ``name`` whose import name differs from it (as
    scikit-learn's is sklearn): only its metadata, on ``site``."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    return site


# -- asp new ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["zz-taken-tool", "ZZ_Taken_Tool"])
def test_asp_new_refuses_the_name_of_an_installed_distribution(tmp_path: Path, monkeypatch,
                                                               capfd, name: str) -> None:
    """``asp new scikit-learn`` was accepted (its package, ``scikit_learn``, is not installed
    under that name); ``pip install -e`` of the project then uninstalled the real scikit-learn,
    which asp-gmm needs."""
    pytest.importorskip("cookiecutter")
    site = _fake_distribution(tmp_path / "site", "zz-taken-tool")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))  # the hook's interpreter
    out = tmp_path / "out"
    out.mkdir()
    result = _asp("new", name, "--no-input", "--output-dir", str(out))
    assert result.exit_code == 1, result.output
    assert ("distribution name 'zz-taken-tool' is taken by the installed 'zz-taken-tool'"
            in capfd.readouterr().err)   # the template's hook runs in a process of its own
    assert not any(out.iterdir())


@pytest.mark.parametrize("version", ["1.0 ", " 0.1.0", "0.2.0\n"])
def test_asp_new_refuses_a_version_with_spaces_around_it(tmp_path: Path, capfd,
                                                         version: str) -> None:
    """The check stripped the version, the project kept it: ``--extra "version=1.0 "`` made a
    project whose ``pip install`` failed in setuptools (``Invalid version: '1.0.'``)."""
    pytest.importorskip("cookiecutter")
    result = _asp("new", "spaced-spec", "--no-input", "--output-dir", str(tmp_path),
                  "--extra", f"version={version}")
    assert result.exit_code == 1, result.output
    assert f"version {version!r} is not a PEP 440 version" in capfd.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("description", ["Maps {{ x_i }} to {{ y_i }}",
                                         'Uses {% if %} and {# a note #} "quoted" \\ too',
                                         "{% raw %}{% endraw %}"])
def test_asp_new_keeps_values_that_look_like_jinja(tmp_path: Path, description: str) -> None:
    """cookiecutter renders every value as a template: ``{{ x_i }}`` in a description was an
    "is undefined" error quoting the whole context, ``{% if %}`` a traceback, and a
    ``{# ... #}`` was silently dropped from the project."""
    pytest.importorskip("cookiecutter")
    import tomllib

    result = _asp("new", "jinja-spec", "--no-input", "--output-dir", str(tmp_path),
                  "--extra", f"description={description}")
    assert result.exit_code == 0, result.output
    project = tmp_path / "jinja-spec"
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["description"] == description


def test_asp_new_into_a_folder_it_cannot_create_is_one_line(tmp_path: Path) -> None:
    """An ``--output-dir`` below a file (or on a read-only file system) was a traceback from
    cookiecutter's ``make_sure_path_exists``."""
    pytest.importorskip("cookiecutter")
    (tmp_path / "afile").write_text("mine")
    result = _asp("new", "fine-name", "--no-input", "--output-dir", str(tmp_path / "afile" / "d"))
    assert result.exit_code == 1
    assert "Error: Unable to create directory at" in result.output
    assert (tmp_path / "afile").read_text() == "mine"


def test_asp_new_without_a_writable_home_makes_the_project(tmp_path: Path) -> None:
    """cookiecutter writes a replay of every project under the home directory: with none that
    can be written (a container, a CI job) ``asp new`` stopped with "Unable to create
    directory at ~/.cookiecutter_replay/"."""
    pytest.importorskip("cookiecutter")
    env = {k: v for k, v in os.environ.items() if k != "COOKIECUTTER_CONFIG"}
    env["HOME"] = os.devnull   # a file: nothing can be made below it (read at cookiecutter's
    proc = subprocess.run(     # import, so in a process of its own)
        [sys.executable, "-c", "from asp_core.cli import main; main()", "new", "homeless-spec",
         "--no-input", "--output-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "homeless-spec" / "pyproject.toml").is_file()


def test_asp_new_with_a_template_it_cannot_clone_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """A git template that cannot be cloned (no such repository, no network) was a traceback
    of git's CalledProcessError: cookiecutter re-raises it unless git says "not found"."""
    pytest.importorskip("cookiecutter")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    config = tmp_path / "cookiecutter.yaml"   # its clones go here, not to ~/.cookiecutters
    config.write_text(f'cookiecutters_dir: "{tmp_path / "clones"}"\n'
                      f'replay_dir: "{tmp_path / "replay"}"\n')
    monkeypatch.setenv("COOKIECUTTER_CONFIG", str(config))
    missing = tmp_path / "no-such-repo.git"
    result = _asp("new", "fine-name", "--no-input", "--output-dir", str(tmp_path / "out"),
                  "--template", missing.as_uri())
    assert result.exit_code == 1
    assert f"Error: could not fetch the template {missing.as_uri()}: git clone failed: fatal:" \
        in result.output
    assert not (tmp_path / "out").exists()


def test_overwrite_onto_a_file_of_the_projects_name_says_why(tmp_path: Path) -> None:
    """``--overwrite`` where a *file* has the project's name: the template's check could not
    even start, yet the error said "the template refused the values given (see its message
    above)", with no message above. The file is kept."""
    pytest.importorskip("cookiecutter")
    (tmp_path / "file-spec").write_text("mine")
    result = _asp("new", "file-spec", "--no-input", "--output-dir", str(tmp_path), "--overwrite")
    assert result.exit_code == 1
    assert "Not a directory" in result.output and "refused the values" not in result.output
    assert (tmp_path / "file-spec").read_text() == "mine"


def test_a_refused_project_leaves_no_folder_behind(tmp_path: Path, capfd) -> None:
    """A name the template refuses removed the project folder but left the ``--output-dir``
    folders cookiecutter had created for it; folders that existed before, and a user's
    files, stay."""
    pytest.importorskip("cookiecutter")
    (tmp_path / "mine.txt").write_text("mine")
    result = _asp("new", "class", "--no-input", "--output-dir", str(tmp_path / "new" / "deeper"))
    assert result.exit_code == 1
    assert "package name 'class'" in capfd.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    (tmp_path / "empty").mkdir()   # an empty folder of the user's, named through "x/.."
    _asp("new", "class", "--no-input", "--output-dir", str(tmp_path / "x" / ".." / "empty" / "n"))
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


def test_asp_new_refuses_a_specializer_name_an_installed_plugin_registers(tmp_path: Path,
                                                                          capfd) -> None:
    """``asp new`` made a project registering specializer ``stencil`` beside asp-stencil's:
    installed, the registry refused one of the two, and every stencil kernel ran in Python."""
    pytest.importorskip("cookiecutter")
    result = _asp("new", "my-own-stencils", "--no-input", "--output-dir", str(tmp_path),
                  "--extra", "specializer_name=stencil")
    assert result.exit_code == 1, result.output
    assert ("specializer name 'stencil' is registered by plugin 'stencil' (asp-stencil)"
            in capfd.readouterr().err)
    assert not any(tmp_path.iterdir())


def test_asp_new_with_an_undecodable_name_is_one_line(tmp_path: Path) -> None:
    """A NAME of bytes the file system encoding cannot decode (a surrogate escape in argv)
    stopped with the codec's "surrogates not allowed" and left its project folder behind."""
    pytest.importorskip("cookiecutter")
    out = tmp_path / "out"
    result = _asp("new", "bad\udcff-spec", "--no-input", "--output-dir", str(out))
    assert result.exit_code == 2, result.output
    assert "is not valid Unicode text" in result.output
    assert not out.exists()


# -- asp doctor ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("var", "value", "says"), [
    ("ASP_MODE", "strickt", "ASP_MODE='strickt' is not valid"),
    ("ASP_AUTOTUNE", "sometimes", "ASP_AUTOTUNE='sometimes' is not valid"),
    ("ASP_COMPILE_TIMEOUT", "-3", "ASP_COMPILE_TIMEOUT='-3' is not valid"),
    ("ASP_DISABLE_PASSES", "no-such-pass", "unknown pass name 'no-such-pass'"),
    ("ASP_DISABLE_PASSES", "gmm:constant-folding", "'gmm' has no pass of that name"),
    ("ASP_TRACE_HOOKS", "maybe", "ASP_TRACE_HOOKS='maybe' is not valid"),
    ("ASP_STENCIL_TEMPORAL", "sometimes", "ASP_STENCIL_TEMPORAL must be 'auto', 'on' or 'off'"),
    ("ASP_STENCIL_TEMPORAL_PARAMS", "7,x", "ASP_STENCIL_TEMPORAL_PARAMS='7,x'"),
    ("ASP_CUDA_MEMORY", "opencl", "ASP_CUDA_MEMORY='opencl'"),
    ("ASP_MPK_COMPILE", "later", "ASP_MPK_COMPILE must be 'background' or 'wait'"),
    ("ASP_BACKEND", "stencl:c", "ASP_BACKEND names specializer 'stencl', which no installed"),
])
def test_asp_doctor_fails_on_an_invalid_setting(monkeypatch, fresh_cache, var: str, value: str,
                                                 says: str) -> None:
    """An invalid ``ASP_MODE`` (or any setting read at a kernel's first call) passed every
    check of ``asp doctor`` and failed only at that call."""
    monkeypatch.setenv(var, value)
    result = _asp("doctor", "--no-stream")
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if "[FAIL]" in line]
    # a setting that loading the plugins reads fails their row too, where this process had not
    # loaded them yet (as in ``asp doctor``): with the same reason, and no other row
    assert "settings" in failed[0] and says in failed[0], result.output
    assert [line.split()[1] for line in failed[1:]] in ([], ["plugins"]), result.output
    assert all(says in line for line in failed), result.output


def test_asp_doctor_passes_the_settings_it_reads(monkeypatch, fresh_cache) -> None:
    for var, value in (("ASP_MODE", "strict"), ("ASP_AUTOTUNE", "off"),
                       ("ASP_COMPILE_TIMEOUT", "30"), ("ASP_STENCIL_TEMPORAL", "on"),
                       ("ASP_MPK_COMPILE", "wait"),
                       ("ASP_DISABLE_PASSES", "stencil:constant-folding,gmm:fuse-em")):
        monkeypatch.setenv(var, value)
    result = _asp("doctor", "--no-stream")
    assert result.exit_code == 0, result.output
    assert "settings" in result.output and "[FAIL]" not in result.output


def test_a_config_path_that_is_not_a_file_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """``ASP_CONFIG=/dev/zero`` read the device forever: every ``asp`` command and every
    kernel's first call hung."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo), str(tmp_path)):
        monkeypatch.setenv("ASP_CONFIG", path)
        result = _asp("list")
        assert result.exit_code == 1, result.output
        assert f"invalid Asp config file {path}: not a regular file" in result.output


# -- asp cache ----------------------------------------------------------------------------------
def test_asp_cache_clear_of_an_empty_folder_succeeds(tmp_path: Path, monkeypatch) -> None:
    """A cache folder made beforehand (``export ASP_CACHE_DIR=$(mktemp -d)``) holds nothing to
    clear: ``clear`` refused it as "not an Asp cache" (exit 1) where ``info`` and ``verify``
    accept it. A folder holding a user's file is still refused and kept."""
    root = tmp_path / "made-by-mktemp"
    root.mkdir()
    monkeypatch.setenv("ASP_CACHE_DIR", str(root))
    result = _asp("cache", "clear")
    assert result.exit_code == 0, result.output
    assert "removed 0 entries" in result.output
    assert not any(root.iterdir())
    (root / "notes.txt").write_text("mine")
    refused = _asp("cache", "clear")
    assert refused.exit_code == 1 and "is not an Asp cache" in refused.output
    assert (root / "notes.txt").read_text() == "mine"


# -- asp bench ----------------------------------------------------------------------------------
@pytest.mark.parametrize("as_folder", [False, True])
def test_bench_path_that_defines_no_suite_is_refused(tmp_path: Path, monkeypatch, fresh_cache,
                                                     plugin_state, as_folder: bool) -> None:
    """``asp bench --path FILE`` with a file without ``asp_register_benchmarks`` (a helper, a
    typo in the hook's name) was accepted silently: the path added nothing and, without
    NAMES, every installed suite ran instead (hours at full size)."""
    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")   # no installed suite may run
    plugins_mod.reset()
    bench = tmp_path / "bench_helpers.py"
    bench.write_text("def asp_register_benchmark(register):  # a typo: no suite\n    pass\n")
    result = _asp("bench", "--path", str(tmp_path if as_folder else bench),
                  "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert "no asp_register_benchmarks function" in result.output
    assert not (tmp_path / "out").exists()


def test_bench_path_whose_hook_lacks_the_mark_is_refused(tmp_path: Path, monkeypatch,
                                                         fresh_cache, plugin_state) -> None:
    """``asp_register_benchmarks`` without ``@hookimpl`` is passed over by pluggy: the file
    added no suite, yet it counted as one that did, so without NAMES every installed suite
    would have run instead."""
    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins_mod.reset()
    bench = tmp_path / "bench_mine.py"
    bench.write_text("def asp_register_benchmarks(register):\n"
                     "    register.benchmark(name='mine', func=print, description='x')\n")
    result = _asp("bench", "--list", "--path", str(bench))
    assert result.exit_code == 2, result.output
    assert "asp_register_benchmarks is not marked @hookimpl" in result.output


def test_asp_doctor_with_an_invalid_compile_timeout_probes_the_compilers(monkeypatch,
                                                                         fresh_cache) -> None:
    """Before any compiler was probed (a new process, an empty cache), an invalid
    ``ASP_COMPILE_TIMEOUT`` ended ``asp doctor`` in a traceback from the probes it bounds."""
    from asp_core import toolchain

    for probe in (toolchain._probe, toolchain._broken, toolchain._openmp_works):
        probe.cache_clear()   # as in a new process
    monkeypatch.setenv("ASP_COMPILE_TIMEOUT", "-3")
    result = _asp("doctor", "--no-stream")
    assert "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit), result.output
    failed = [line for line in result.output.splitlines() if "[FAIL]" in line]
    assert len(failed) == 1 and "ASP_COMPILE_TIMEOUT='-3' is not valid" in failed[0]


# -- asp list -----------------------------------------------------------------------------------
class _GpuPlatform:
    """A platform this machine cannot run, whose reason has brackets (an extra to install)."""

    name = "gpu"

    def unavailable_reason(self) -> str:
        return "no GPU here (pip install 'bracketed[gpu]')"


class _CpuPlatform:
    name = "cpu"

    def unavailable_reason(self) -> None:
        return None


class _BracketedPlugin:
    """A specializer whose own text may look like Rich markup."""

    def __init__(self, description: str) -> None:
        self.description = description

    @plugins_mod.hookimpl
    def asp_register_specializers(self, register) -> None:
        register.specializer(name="bracketed", description=self.description,
                             signature=lambda args, kwargs, instance: len(args))
        register.component(specializer="bracketed", phase="platform_selection", name="gpu",
                           obj=_GpuPlatform(), priority=20)
        register.component(specializer="bracketed", phase="platform_selection", name="cpu",
                           obj=_CpuPlatform(), priority=10)


@pytest.fixture
def bracketed(plugin_state):
    """``bracketed(description)`` registers the specializer for one test."""
    names = []

    def register(description: str) -> None:
        names.append(plugins_mod.register_plugin(_BracketedPlugin(description),
                                                 name="test-bracketed"))

    yield register
    for name in names:
        plugins_mod.unregister_plugin(name)


def _row(text: str, component: str) -> str:
    return next(line for line in text.splitlines() if f" {component} " in line)


def test_asp_list_shows_the_plugins_text_as_written(bracketed) -> None:
    """Descriptions and reasons were read as Rich markup: "out[i] = f(a[i])" lost its
    brackets, "'bracketed[gpu]'" its extra, and a stray "[/x]" made `asp list` a traceback."""
    bracketed("maps out[i] = f(a[i]) [/x] fast")
    result = _asp("list")
    assert result.exit_code == 0, result.output
    assert "maps out[i] = f(a[i]) [/x] fast" in result.output
    assert "unavailable: no GPU here (pip install 'bracketed[gpu]')" in _row(result.output, "gpu")


def test_asp_list_says_when_the_chosen_default_cannot_run_here(bracketed, monkeypatch) -> None:
    """A setting that picks a platform this machine cannot run makes it the default (the
    kernel gets it, then falls back to Python): the row said only "default", hiding why."""
    bracketed("maps arrays")
    assert "default" in _row(_asp("list").output, "cpu")
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "bracketed:gpu")
    row = _row(_asp("list").output, "gpu")
    assert "default, but unavailable: no GPU here" in row


@pytest.mark.parametrize("quiet", [[], ["-q"], ["-qq"]])
def test_qq_silences_the_warnings_of_loading_the_plugins(quiet: list[str]) -> None:
    """``asp -qq`` ("errors only") still printed the PluginWarnings of loading the plugins:
    they load when the command line module is imported, before ``-qq`` is read."""
    env = dict(os.environ, ASP_LOAD_PLUGINS="zz-no-such-plugin")
    proc = subprocess.run([sys.executable, "-m", "asp_core.cli", *quiet, "list"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    warned = "ASP_LOAD_PLUGINS names 'zz-no-such-plugin'" in proc.stderr
    assert warned == (quiet != ["-qq"]), proc.stderr
    assert proc.stderr.count("zz-no-such-plugin") <= 1


def test_a_plugin_command_cannot_replace_a_built_in_one() -> None:
    """click keeps the last command added under a name: a plugin's ``list`` replaced
    ``asp list`` (its ``--json`` was "No such option") without a word."""
    import click

    from asp_core.cli import _keep_builtins, cli
    from asp_core.errors import PluginWarning

    own = dict(cli.commands)

    @click.command("list")
    def impostor() -> None:
        click.echo("the plugin's list")

    cli.add_command(impostor)
    try:
        with pytest.warns(PluginWarning, match="registers a command 'list', the name of one "
                                               "of asp's own: it is ignored"):
            _keep_builtins(own)
    finally:
        cli.add_command(own["list"])
    assert cli.commands == own


# -- asp list -----------------------------------------------------------------------------------
def test_asp_list_without_a_compiler_names_the_platform_kernels_get(tmp_path: Path,
                                                                     monkeypatch) -> None:
    """With no C compiler, ``asp list`` showed each specializer's ``openmp`` platform as the
    default a kernel gets here, while kernels ran NumPy (stencil, gmm) or SciPy (mpk)."""
    import json

    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ASP_CC", str(tmp_path / "no-such-cc"))
    for name in ("ASP_PLATFORM_SELECTION", "ASP_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    result = _asp("list", "--json")
    assert result.exit_code == 0, result.output
    listing = {s["name"]: s["phases"]["platform_selection"]
               for s in json.loads(result.output)["specializers"]}
    for spec, gets in (("stencil", "numpy"), ("gmm", "numpy"), ("mpk", "scipy")):
        platforms = {p["name"]: p for p in listing[spec]}
        assert "no-such-cc" in platforms["openmp"]["unavailable"]
        assert not platforms["openmp"]["default"] and platforms[gets]["default"], spec
    assert not (tmp_path / "cache").exists()


def test_help_keeps_its_descriptions_under_python_OO(tmp_path: Path) -> None:
    """Under ``python -OO`` (docstrings stripped) ``asp --help`` listed the commands without a
    word on what they do, and ``asp cache --help`` likewise: click took the help from the
    docstrings."""
    def help_of(*args: str) -> str:
        return subprocess.run([sys.executable, "-OO", "-m", "asp_core.cli", *args, "--help"],
                              capture_output=True, text=True, timeout=120, check=True,
                              env={**os.environ, "ASP_CACHE_DIR": str(tmp_path)}).stdout

    top = help_of()
    assert "Asp is SEJITS for Python" in top
    for line in ("bench    Run benchmark suites", "explain  Run SCRIPT and explain",
                 "new      Create a new specializer", "list     List installed specializers"):
        assert line in top
    assert "verify  Check every entry's checksums" in help_of("cache")
    assert "Options go before SCRIPT" in help_of("explain")

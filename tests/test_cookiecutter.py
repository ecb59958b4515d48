"""The specializer template, as a new user meets it: generate, pip install, run its own tests,
and see it in ``asp list`` with all five phases.

Each generated distribution is installed editable into the running environment (in a
subprocess) and uninstalled in teardown. The two tests take ~15-25 s each here (mostly pip), so
they run by default.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("cookiecutter", reason="the template tests need cookiecutter "
                                           "(pip install 'asp-core[new]')")

from asp_core.cli import cli
from asp_core.cli.new import template_dir
from asp_core.phases import PHASES

TIMEOUT = 300


@pytest.fixture(autouse=True)
def _hook_copies_in_pytest_tmp(tmp_path_factory, monkeypatch):
    """Tests that call cookiecutter itself: the copy of the hook script it leaves behind goes
    to pytest's temporary folders instead of the system's."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("hook-copies")))


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _template_setuptools() -> tuple[int, int]:
    """The setuptools release the template's ``[build-system]`` requires."""
    text = (template_dir() / "{{cookiecutter.project_slug}}" / "pyproject.toml").read_text()
    found = re.search(r'"setuptools>=(\d+)(?:\.(\d+))?', text)
    assert found, "the template's build-system requires no setuptools>=N"
    return int(found.group(1)), int(found.group(2) or 0)


def _can_build_without_isolation() -> bool:
    """pip builds a generated project offline only with the setuptools its ``[build-system]``
    requires (>= 77: the SPDX ``license`` string; ``bdist_wheel`` alone, from 70.1 or the
    ``wheel`` package, is not enough); otherwise it must fetch one into an isolated env."""
    import setuptools

    have = re.match(r"(\d+)\.(\d+)", setuptools.__version__)
    return have is not None and (int(have[1]), int(have[2])) >= _template_setuptools()


@pytest.fixture
def installed():
    """Install generated projects editable; uninstall them afterwards."""
    names: list[str] = []

    def install(project: Path, dist: str) -> None:
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "-e", str(project)]
        if _can_build_without_isolation():
            cmd.insert(5, "--no-build-isolation")
        names.append(dist)
        _run(cmd)

    yield install
    for dist in names:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", dist],
                       check=False, capture_output=True, text=True, timeout=TIMEOUT)


def _run_generated_tests(project: Path, env: dict[str, str] | None = None) -> int:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=project, check=False, capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"the generated tests failed:\n{proc.stdout}\n{proc.stderr}"
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and "failed" not in proc.stdout and "error" not in proc.stdout.lower(), \
        proc.stdout
    return int(passed.group(1))


def _listed(specializer: str) -> dict:
    proc = _run([sys.executable, "-c", "from asp_core.cli import main; main()", "list", "--json"])
    data = json.loads(proc.stdout)
    assert not [b for b in data["broken"] if specializer in json.dumps(b)], data["broken"]
    return next(s for s in data["specializers"] if s["name"] == specializer)


def _check_five_phases(spec: dict, dist: str) -> None:
    assert spec["defined"] and spec["distribution"] == dist
    assert list(spec["phases"]) == list(PHASES)
    for phase in PHASES:
        comps = spec["phases"][phase]
        assert comps, f"no component for {phase}"
        assert {c["distribution"] for c in comps} == {dist}


def test_default_project_installs_and_passes_its_tests(tmp_path, installed):
    from cookiecutter.main import cookiecutter

    project = Path(cookiecutter(str(template_dir()), no_input=True, output_dir=str(tmp_path)))
    assert project.name == "demo-spec"
    for rel in ("pyproject.toml", "README.md", "LICENSE", "docs/index.md",
                "src/demo_spec/plugin.py", "src/demo_spec/frontend.py", "src/demo_spec/domain.py",
                "src/demo_spec/platforms.py", "src/demo_spec/variants.py",
                "src/demo_spec/backends.py", "tests/test_demo_spec_fallback.py"):
        assert (project / rel).is_file(), rel
    pyproject = (project / "pyproject.toml").read_text()
    assert '[project.entry-points.asp]\ndemo_spec = "demo_spec.plugin"' in pyproject
    assert "BSD 3-Clause" in (project / "LICENSE").read_text()
    assert "{{" not in "".join(p.read_text() for p in project.rglob("*") if p.is_file())

    installed(project, "demo-spec")
    # the user's own Asp settings do not reach the project's tests (they failed under these)
    assert _run_generated_tests(project, {"ASP_MODE": "python",
                                          "ASP_DISABLE_PLUGIN_AUTOLOAD": "1"}) >= 15
    _check_five_phases(_listed("demo_spec"), "demo-spec")


def test_non_default_options_through_asp_new(tmp_path, installed):
    proc = _run([sys.executable, "-c", "from asp_core.cli import main; main()", "new",
                 "My_Fancy-Spec", "--no-input", "--output-dir", str(tmp_path),
                 "--extra", "author=Ada Lovelace", "--extra", "email=ada@example.org",
                 "--extra", "license=MIT", "--extra", "specializer_name=fancy-map",
                 "--extra", "description=Fancy element-wise maps"])
    project = tmp_path / "my-fancy-spec"
    assert str(project) in proc.stdout
    assert (project / "src" / "my_fancy_spec" / "plugin.py").is_file()
    assert (project / "tests" / "test_my_fancy_spec_kernels.py").is_file()
    license_text = (project / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "Ada Lovelace" in license_text
    pyproject = (project / "pyproject.toml").read_text()
    assert 'name = "my-fancy-spec"' in pyproject
    assert 'license = "MIT"' in pyproject
    assert '{ name = "Ada Lovelace", email = "ada@example.org" }' in pyproject
    assert 'fancy-map = "my_fancy_spec.plugin"' in pyproject
    assert "Ada Lovelace" in (project / "README.md").read_text()

    installed(project, "my-fancy-spec")
    assert _run_generated_tests(project) >= 15
    spec = _listed("fancy-map")
    _check_five_phases(spec, "my-fancy-spec")
    assert spec["description"] == "Fancy element-wise maps"


@pytest.mark.parametrize("name,problem", [("3d spec", "not a Python identifier"),
                                          ("class", "not a Python identifier"),
                                          ("asp-core", "taken by an installed module"),
                                          ("numpy", "taken by an installed module"),
                                          ("a/b", "is a path"),
                                          ("conftest", "the module name pytest gives"),
                                          ("tests", "what projects call their test folders")])
def test_invalid_names_are_refused(tmp_path, name, problem):
    proc = subprocess.run([sys.executable, "-c", "from asp_core.cli import main; main()", "new",
                           name, "--no-input", "--output-dir", str(tmp_path)],
                          check=False, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode != 0
    assert problem in proc.stdout + proc.stderr
    assert not any(tmp_path.iterdir())


def test_offline_builds_need_the_setuptools_the_template_requires(monkeypatch):
    """setuptools 75 has ``bdist_wheel`` but not the SPDX ``license`` string: counted as enough,
    the install failed instead of taking the isolated build."""
    import setuptools

    assert _template_setuptools() == (77, 0)
    for version, enough in (("70.1.0", False), ("76.9.1", False), ("77.0.3", True),
                            ("80.9.0", True)):
        monkeypatch.setattr(setuptools, "__version__", version)
        assert _can_build_without_isolation() is enough, version


def _new(*args: str):
    result = CliRunner().invoke(cli, ["new", *args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.mark.parametrize("extra,message", [
    ("license=GPL", "the choices are ['BSD-3-Clause', 'MIT', 'Apache-2.0']"),
    ("description=undecodable \udcff byte", "is not valid Unicode text"),
    # cookiecutter ignores a variable the template does not have: a BSD project was made
    ("licence=MIT", "the template has no variable 'licence'; it has: author, description"),
])
def test_bad_extra_values_are_one_line_errors(tmp_path, extra, message):
    result = _new("any-spec", "--no-input", "--output-dir", str(tmp_path), "--extra", extra)
    assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit)
    assert message in result.output
    assert not any(tmp_path.iterdir())


def test_refused_value_is_not_blamed_on_the_project_name(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "from asp_core.cli import main; main()", "new",
                           "ok5", "--no-input", "--output-dir", str(tmp_path),
                           "--extra", "specializer_name=bad name"],
                          check=False, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1
    assert "specializer name 'bad name'" in proc.stderr   # the template's own check says which
    assert "Error: the template refused the values given" in proc.stderr
    assert "'ok5'" not in proc.stderr
    assert not any(tmp_path.iterdir())


def test_no_temporary_files_are_left_behind(tmp_path, monkeypatch):
    """cookiecutter copies the template's hook to a temporary file it never removes: every
    ``asp new`` left a ``tmpXXXX.py`` in the system's temporary folder, made or refused."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    made = _new("leak-spec", "--no-input", "--output-dir", str(tmp_path / "out"))
    assert made.exit_code == 0, made.output
    refused = _new("ok6", "--no-input", "--output-dir", str(tmp_path / "out"),
                   "--extra", "specializer_name=bad name")
    assert refused.exit_code == 1, refused.output
    assert sorted(temporary.iterdir()) == []
    assert tempfile.tempdir == str(temporary)


def test_values_are_escaped_where_they_land_in_python_and_toml(tmp_path, monkeypatch):
    """Quotes, backslashes and control characters in a value keep pyproject.toml and the Python
    files valid and mean the value itself (a quoted description ended the string early); the
    hint's paths are shell-quoted."""
    description = 'Maps "fast" kernels \\ with """quotes""", a\ttab, a\nnewline and \u2603 \U0001f680'
    author = 'Ada "Countess" Lovelace \\'
    monkeypatch.chdir(tmp_path)
    result = _new("quoted-spec", "--no-input", "--output-dir", "with space",
                  "--extra", f"description={description}", "--extra", f"author={author}")
    assert result.exit_code == 0, result.output
    project = tmp_path / "with space" / "quoted-spec"
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["description"] == description and meta["authors"][0]["name"] == author
    for path in project.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    package = project / "src" / "quoted_spec"
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")),
                            clean=False)
    assert doc is not None and doc.startswith(description + ".")
    plugin = ast.parse((package / "plugin.py").read_text(encoding="utf-8"))
    registered = [ast.literal_eval(k.value) for k in ast.walk(plugin)
                  if isinstance(k, ast.keyword) and k.arg == "description"]
    assert registered == [description]
    hint = next(line for line in result.output.splitlines() if line.startswith("next: "))
    rel = os.path.join("with space", "quoted-spec")
    assert shlex.split(hint.removeprefix("next: ")) == [
        "pip", "install", "-e", f"{rel}[test]", "&&", "pytest", rel]


# run after each example: every kernel it defines, called once more, whether or not it calls it
CALL_EVERY_KERNEL = """
import inspect as _inspect
import numpy as _np
from asp_core import Dispatcher as _Dispatcher
for _kernel in [k for k in globals().values() if isinstance(k, _Dispatcher)]:
    _kernel(*[_np.linspace(1.0, 2.0, 5)] * len(_inspect.signature(_kernel.func).parameters))
"""


def test_generated_docs_examples_run_in_python_mode(tmp_path):
    """Every Python example of the generated README and docs page runs as plain Python
    (``ASP_MODE=python``: no compiler, no install), its kernels included: the docs' hypot
    lacked ``import math``, so it worked only compiled."""
    from cookiecutter.main import cookiecutter

    project = Path(cookiecutter(str(template_dir()), no_input=True, output_dir=str(tmp_path),
                                extra_context={"project_name": "docs-example-spec"}))
    env = dict(os.environ, ASP_MODE="python", PYTHONPATH=str(project / "src"))
    examples = [block for page in ("README.md", "docs/index.md")
                for block in re.findall(r"```python\n(.*?)```", (project / page).read_text(),
                                        flags=re.DOTALL)]
    assert len(examples) == 2 and any("math.sqrt" in code for code in examples)
    for code in examples:
        proc = subprocess.run([sys.executable, "-c", code + CALL_EVERY_KERNEL], cwd=tmp_path,
                              env=env, check=False, capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert proc.returncode == 0, f"{code}\n{proc.stderr}"


def test_an_installed_templates_bytecode_is_not_copied(tmp_path, monkeypatch):
    """pip compiles the template's .py files that parse when it installs asp-core from a
    wheel: cookiecutter copied each __pycache__ into the new project (binary files holding
    unrendered template text, which ``git add .`` committed)."""
    import compileall
    import shutil

    from asp_core.cli import new

    template = Path(shutil.copytree(template_dir(), tmp_path / "installed-template"))
    compileall.compile_dir(str(template), quiet=2)
    assert list(template.rglob("*.pyc")), "nothing in the template compiled: no test"
    monkeypatch.setattr(new, "template_dir", lambda: template)   # the installed one
    made = _new("bytecode-spec", "--no-input", "--output-dir", str(tmp_path / "out"))
    assert made.exit_code == 0, made.output
    project = tmp_path / "out" / "bytecode-spec"
    assert project.is_dir()
    assert [p for p in project.rglob("*") if p.suffix == ".pyc" or p.name == "__pycache__"] == []


def test_a_template_of_ones_own_is_used_where_it_is(tmp_path):
    """Only the bundled template is copied first: a template of the user's rendered
    ``{{ cookiecutter._template }}`` as a deleted temporary folder."""
    import shutil

    template = Path(shutil.copytree(template_dir(), tmp_path / "mine"))
    readme = template / "{{cookiecutter.project_slug}}" / "README.md"
    readme.write_text(readme.read_text() + "\ntemplate: {{ cookiecutter._template }}\n")
    made = _new("own-spec", "--no-input", "--output-dir", str(tmp_path / "out"),
                "--template", str(template))
    assert made.exit_code == 0, made.output
    text = (tmp_path / "out" / "own-spec" / "README.md").read_text()
    assert f"template: {template}" in text

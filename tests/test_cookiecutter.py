"""The specializer template, as a new user meets it: generate, pip install, run its own tests,
and see it in ``asp list`` with all five phases.

Each generated distribution is installed editable into the running environment (in a
subprocess) and uninstalled in teardown. The two tests take ~15-25 s each here (mostly pip), so
they run by default.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("cookiecutter", reason="the template tests need cookiecutter "
                                           "(pip install 'asp-core[new]')")

from asp_core.cli.new import template_dir
from asp_core.phases import PHASES

TIMEOUT = 300


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _can_build_without_isolation() -> bool:
    """setuptools builds editable wheels offline if it has ``bdist_wheel`` (>= 70.1, or the
    ``wheel`` package); otherwise pip must fetch a build backend into an isolated env."""
    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


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


def _run_generated_tests(project: Path) -> int:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=project, check=False, capture_output=True, text=True, timeout=TIMEOUT)
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
    assert _run_generated_tests(project) >= 15
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
                                          ("a/b", "is a path")])
def test_invalid_names_are_refused(tmp_path, name, problem):
    proc = subprocess.run([sys.executable, "-c", "from asp_core.cli import main; main()", "new",
                           name, "--no-input", "--output-dir", str(tmp_path)],
                          check=False, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode != 0
    assert problem in proc.stdout + proc.stderr
    assert not any(tmp_path.iterdir())

"""The machine probes (``has_compiler``, ``has_nvcc``, ``has_gpu``) are run-time API in
``asp_core.toolchain`` / ``asp_core.hardware``: specializers ask them in their platforms'
``check`` without importing the pytest plugin ``pytest_asp``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_asp
from asp_core import hardware, toolchain
from pytest_asp import requires_compiler

REPO = Path(__file__).resolve().parents[1]


def test_testing_re_exports_the_run_time_probes():
    assert pytest_asp.has_compiler is toolchain.has_compiler
    assert pytest_asp.has_nvcc is toolchain.has_nvcc
    assert pytest_asp.has_gpu is hardware.has_gpu
    assert hardware.has_gpu() == hardware.query().has_gpu


@requires_compiler
def test_has_compiler_follows_the_compiler_setting(monkeypatch):
    assert toolchain.has_compiler("c")
    monkeypatch.setenv("ASP_CC", "/nonexistent/cc")
    assert not toolchain.has_compiler("c")  # not a stale answer remembered from before
    monkeypatch.delenv("ASP_CC")
    assert toolchain.has_compiler("c")


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="unknown language 'fortran'"):
        toolchain.has_compiler("fortran")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_run_time_module_imports_the_pytest_plugin():
    sources = [*(REPO / "asp_core").rglob("*.py"), *(REPO / "plugins").glob("*/src/**/*.py")]
    sources = [p for p in sources if "pytest_asp" not in p.parts]  # the plugin itself
    # the cookiecutter template's files are Jinja sources, not modules of asp_core
    sources = [p for p in sources if "cookiecutter" not in p.relative_to(REPO).parts]
    offenders = [str(p.relative_to(REPO)) for p in sources
                 if {"pytest_asp", "pytest"} & _imports(p)]
    assert offenders == []


def test_platform_checks_leave_pytest_unimported():
    for plugin in ("asp_gmm", "asp_mpk"):
        pytest.importorskip(plugin, reason="the check needs the GMM and MPK plugins installed")
    code = """
import sys
from asp_core import SpecializationContext
from asp_gmm.platforms import CudaPlatform
from asp_gmm.programs import problem
from asp_mpk.components import OpenMPPlatform
ctx = SpecializationContext("x", None)
CudaPlatform().check(problem("em_step", 2, 2, "diag"), ctx)
OpenMPPlatform().check(None, ctx)
print(sorted(m for m in ("pytest", "pytest_asp") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

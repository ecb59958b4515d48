"""The documentation builds with warnings as errors, its examples run, and the hook reference
names every hook (so a new hook cannot ship undocumented)."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from asp_core import hookspecs
from pytest_asp import requires_compiler

DOCS = Path(__file__).resolve().parent.parent / "docs"
_MISSING = [m for m in ("sphinx", "myst_parser", "sphinx_click")
            if importlib.util.find_spec(m) is None]
needs_sphinx = pytest.mark.skipif(bool(_MISSING), reason=f"docs tools not installed: "
                                  f"{', '.join(_MISSING)} (pip install 'asp-core[docs]')")


def _hook_names() -> list[str]:
    return [name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(obj, "asp_spec")]


def test_hook_reference_lists_every_hook():
    names = _hook_names()
    assert "asp_register_specializers" in names and len(names) >= 5
    page = (DOCS / "reference" / "hooks.md").read_text()
    missing = [n for n in names if n not in page]
    assert not missing, f"docs/reference/hooks.md does not document: {missing}"


def _sphinx(builder: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / builder)],
        check=False, capture_output=True, text=True, timeout=600)


@needs_sphinx
def test_html_builds_without_warnings(tmp_path):
    proc = _sphinx("html", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = (tmp_path / "html" / "reference" / "hooks.html").read_text()
    for name in _hook_names():
        assert f'id="asp_core.hookspecs.{name}"' in html, f"{name} not rendered by autodoc"
    cli = (tmp_path / "html" / "reference" / "cli.html").read_text()
    for command in ("list", "explain", "doctor", "cache", "bench", "new"):
        assert f'id="asp-{command}"' in cli, f"asp {command} missing from the CLI reference"
    api = (tmp_path / "html" / "reference" / "specializers.html").read_text()
    for name in ("asp_stencil.StencilKernel.iterate", "asp_stencil.StencilGrid",
                 "asp_gmm.GaussianMixture", "asp_gmm.GaussianMixture.fit", "asp_mpk.cg",
                 "asp_mpk.matrix_powers", "asp_mpk.MatrixPowers", "asp_stencil_numpy.NumpyPlatform"):
        assert f'id="{name}"' in api, f"{name} missing from the specializer API reference"


@needs_sphinx
@requires_compiler
def test_guide_examples_run(tmp_path):
    """``sphinx-build -b doctest``: the quickstart and user guides' examples (stencil, GMM,
    matrix powers, CA-CG, the NumPy platform) specialise and print what the pages say."""
    proc = _sphinx("doctest", tmp_path)
    report = (tmp_path / "doctest" / "output.txt")
    text = report.read_text() if report.exists() else ""
    assert proc.returncode == 0, text + proc.stdout + proc.stderr
    assert "0 failures in tests" in text and " 0 tests" not in text


def _variables_read_by_code() -> set[str]:
    """Every ``ASP_*`` name written as a string in the core and the plugins' sources (how the
    code reads them: ``os.environ.get("ASP_X")``, click's ``envvar="ASP_X"``), plus the
    per-phase family ``ASP_<PHASE>`` that config.phase_choice builds from the phase names."""
    import re

    from asp_core.phases import PHASES

    root = DOCS.parent
    names: set[str] = {f"ASP_{p.upper()}" for p in PHASES}
    for path in [*(root / "asp_core").rglob("*.py"), *(root / "plugins").glob("*/src/**/*.py")]:
        if "cookiecutter" in path.parts:
            continue
        names |= set(re.findall(r"""["'](ASP_[A-Z0-9_]*[A-Z0-9])["']""", path.read_text()))
    return names


def test_every_asp_variable_is_documented_and_every_documented_one_is_read():
    import re

    page = (DOCS / "configuration.md").read_text()
    table = "\n".join(line for line in page.splitlines() if line.startswith("| `ASP_"))
    documented = set(re.findall(r"`(ASP_[A-Z0-9_]*[A-Z0-9])`", table))
    code = _variables_read_by_code()
    assert "`ASP_<PHASE>`" in table
    assert code - documented == set(), "read by the code, missing from configuration.md"
    assert documented - code == set(), "documented in configuration.md, read by no code"

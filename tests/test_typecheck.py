"""mypy over asp_core and the specializer plugins, with the configuration in pyproject.toml
(the same check as ``nox -s typecheck``), so CI fails on a type error like on a failing test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["asp_core", *(p.name for p in sorted(REPO.glob("plugins/*/src/*"))
                          if (p / "__init__.py").exists())]


def test_mypy_passes(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install 'asp-core[test]'")
    assert {"asp_core", "asp_stencil", "asp_gmm", "asp_mpk"} <= set(PACKAGES)
    args = [arg for pkg in PACKAGES for arg in ("-p", pkg)]
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr

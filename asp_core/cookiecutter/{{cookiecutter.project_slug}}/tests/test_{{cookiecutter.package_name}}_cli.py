"""What a user sees from the command line once this distribution is installed."""

from __future__ import annotations

import json
import subprocess
import sys

from {{ cookiecutter.package_name }} import SPECIALIZER


def test_asp_list_shows_all_five_phases():
    proc = subprocess.run([sys.executable, "-c", "from asp_core.cli import main; main()",
                           "list", "--json"], check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    spec = next(s for s in json.loads(proc.stdout)["specializers"] if s["name"] == SPECIALIZER)
    assert spec["distribution"] == "{{ cookiecutter.project_slug }}"
    assert all(spec["phases"][phase] for phase in spec["phases"]) and len(spec["phases"]) == 5


def test_registration_is_cheap():
    """``asp list`` imports the plugin module: it must not pull in NumPy or compile anything."""
    code = ("import sys, {{ cookiecutter.package_name }}.plugin; "
            "print('numpy' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"

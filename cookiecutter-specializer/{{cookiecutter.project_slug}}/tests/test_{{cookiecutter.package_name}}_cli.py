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

"""``import asp_core`` and ``asp list`` stay cheap: no heavy optional dependency, no compiler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("numba", "scipy", "sklearn", "pycuda", "mpi4py", "cupy", "matplotlib", "torch")

SCRIPT = """
import json, sys
import asp_core
after_import = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
numpy_after_import = "numpy" in sys.modules
import subprocess
calls = []
_real = subprocess.Popen.__init__
def spy(self, args, *a, **k):
    calls.append(str(args))
    return _real(self, args, *a, **k)
subprocess.Popen.__init__ = spy
from asp_core.cli import cli
try:
    cli.main(args=["list", "--json"], standalone_mode=False)
except SystemExit:
    pass
after_list = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print(json.dumps({{"import": after_import, "list": after_list, "subprocesses": calls,
                  "numpy_after_import": numpy_after_import,
                  "numpy_after_list": "numpy" in sys.modules}}))
"""


@pytest.mark.parametrize("autoload", ["all installed plugins", "core only"])
def test_import_and_list_are_light(tmp_path, autoload):
    cache = tmp_path / "cache"
    env = dict(os.environ, ASP_CACHE_DIR=str(cache))
    env.pop("ASP_DISABLE_PLUGIN_AUTOLOAD", None)
    if autoload == "core only":
        env["ASP_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(heavy=set(HEAVY))], env=env,
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    listing = json.loads("\n".join(lines[:-1]))
    assert "specializers" in listing
    assert result["import"] == [], f"import asp_core imported {result['import']}"
    assert result["list"] == [], (
        f"asp list imported {result['list']}; a plugin's registration module must import heavy "
        "optional dependencies inside functions")
    assert not result["numpy_after_import"], "import asp_core imported numpy"
    if autoload == "core only":
        assert not result["numpy_after_list"], "the core's asp list imported numpy"
    assert result["subprocesses"] == [], "asp list ran a subprocess (compiler probe?)"
    assert not cache.exists() or not any(cache.rglob("*")), \
        f"asp list wrote to the cache: {sorted(cache.rglob('*'))}"

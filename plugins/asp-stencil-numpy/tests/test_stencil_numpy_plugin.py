"""The plugin as users meet it: installed it is listed and selectable, ``asp explain`` shows it,
its results equal the default platform's; blocked (or not loaded) the default returns.

"Uninstalled" is exercised through the loader's own switches (``ASP_BLOCK_PLUGINS`` by entry-point
or distribution name, and an ``ASP_LOAD_PLUGINS`` allow-list without it): both skip the entry
point exactly as if the distribution were absent, without uninstalling it from the shared
environment other tests run in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from asp_stencil import StencilKernel
from asp_stencil.testing import assert_bitwise, clone_grids, make_grids

from asp_core import SpecializationWarning, plugins
from pytest_asp import requires_compiler

SCRIPT = textwrap.dedent('''
    import numpy as np
    from stencil_kernel import *

    class Heat(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = u[x] * 0.5
                for y in u.neighbors(x, 1):
                    out[x] = out[x] + 0.125 * u[y]

    u, out = StencilGrid([20, 24], dtype=np.{dtype}), StencilGrid([20, 24], dtype=np.{dtype})
    u.data[...] = np.arange(480).reshape(20, 24) % 7
    Heat().kernel(u, out)
    print("checksum", float(out.data.sum()))
''')


def _asp(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", "from asp_core.cli import main; main()", *args],
                          check=False, capture_output=True, text=True, env=full, cwd=cwd, timeout=300)


def _stencil(listing: dict) -> dict:
    return next(s for s in listing["specializers"] if s["name"] == "stencil")


def _names(spec: dict, phase: str) -> dict[str, dict]:
    return {c["name"]: c for c in spec["phases"][phase]}


class Heat(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 0.5
            for y in u.neighbors(x, 1):
                out[x] = out[x] + 0.125 * u[y]


def _chosen_platform(kernel: StencilKernel) -> tuple[str, dict]:
    chosen = kernel.kernel.last_context.decision("platform_selection")
    assert chosen is not None
    return chosen.choice, dict(chosen.params["rejected"])


@pytest.fixture
def reload_plugins():
    """Re-read entry points under the test's environment, and again afterwards."""
    plugins.reset()
    yield
    plugins.reset()


# -- installed ----------------------------------------------------------------------------------
def test_asp_list_json_shows_the_numpy_components():
    proc = _asp("list", "--json")
    assert proc.returncode == 0, proc.stderr
    spec = _stencil(json.loads(proc.stdout))
    plat = _names(spec, "platform_selection")["numpy"]
    assert plat["distribution"] == "asp-stencil-numpy"
    assert plat["priority"] == -10
    assert _names(spec, "backend")["numpy"]["distribution"] == "asp-stencil-numpy"
    # the numpy backend serves only the numpy platform: the default where that platform is
    # chosen; otherwise asp-stencil's C backend stays the default, untouched
    assert _names(spec, "backend")["numpy"]["platforms"] == ["numpy"]
    if _names(spec, "platform_selection")["openmp"]["default"]:
        assert _names(spec, "backend")["c"]["default"]
        assert not _names(spec, "backend")["numpy"]["default"]
    chosen = _stencil(json.loads(_asp("list", "--json", env={
        "ASP_PLATFORM_SELECTION": "stencil:numpy"}).stdout))
    assert _names(chosen, "platform_selection")["numpy"]["default"]
    assert _names(chosen, "backend")["numpy"]["default"]
    assert _names(chosen, "platform_optimization")["numpy-slabs"]["default"]
    assert _names(spec, "platform_optimization")["numpy-slabs"]["distribution"] == \
        "asp-stencil-numpy"
    # the specializer itself still comes from asp-stencil
    assert spec["distribution"] == "asp-stencil"
    assert _names(spec, "platform_selection")["openmp"]["priority"] > plat["priority"] > \
        _names(spec, "platform_selection")["python"]["priority"]


@requires_compiler
def test_chosen_by_environment_and_equal_to_the_default_platform(monkeypatch):
    grids = make_grids((17, 23), 1, seed=2, special=True)
    Heat.asp_options = {}
    default, numpy_ = clone_grids(grids), clone_grids(grids)
    k_default = Heat()
    k_default.kernel(*default)
    assert _chosen_platform(k_default)[0] == "openmp"
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "stencil:numpy")
    k_numpy = Heat()
    k_numpy.kernel(*numpy_)
    assert _chosen_platform(k_numpy)[0] == "numpy"
    assert_bitwise(default[-1].data, numpy_[-1].data)


def test_chosen_by_kernel_option():
    class Opted(Heat):
        asp_options = {"platform_selection": "numpy"}

    grids = make_grids((10, 12), 1, seed=4)
    ref = clone_grids(grids)
    k = Opted()
    k.kernel(*grids)
    k.pure_python(*ref)
    assert _chosen_platform(k)[0] == "numpy"
    assert_bitwise(ref[-1].data, grids[-1].data)


class _GaussSeidel(StencilKernel):
    asp_options = {"platform_selection": "numpy"}

    def kernel(self, a, out):
        for x in out.interior_points():
            a[x] = a[x] * 2.0
            for y in a.neighbors(x, 1):
                out[x] = out[x] + a[y]


def test_a_requested_numpy_platform_that_declines_names_file_and_line():
    """Its refusal said "the interior loop at kernel line 2", counted from the def, with no
    file, where the other platforms' refusals name file and line."""
    import inspect

    line = inspect.getsourcelines(_GaussSeidel.kernel.func)[1] + 1
    grids = make_grids((6, 6), 1, seed=1)
    with pytest.warns(SpecializationWarning, match=f"interior loop at {__file__}:{line} reads"):
        _GaussSeidel().kernel(*grids)


def test_asp_explain_shows_numpy_chosen(tmp_path):
    script = tmp_path / "heat_script.py"
    script.write_text(SCRIPT.format(dtype="float64"))
    proc = _asp("explain", str(script), env={"ASP_PLATFORM_SELECTION": "numpy"})
    assert proc.returncode == 0, proc.stderr
    assert "platform_selection: numpy — 'numpy' requested by ASP_PLATFORM_SELECTION" in proc.stdout
    assert "backend: numpy" in proc.stdout
    assert "--- platform program (numpy)" in proc.stdout
    assert "g_out[1:19, 1:23] =" in proc.stdout
    plain = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True,
                           env={**os.environ, "ASP_MODE": "python"}, timeout=300)
    assert plain.stdout.strip().splitlines()[-1] in proc.stdout


def test_asp_explain_without_a_compiler_picks_numpy_by_priority(tmp_path):
    """No user setting and no C compiler: OpenMP declines, numpy (-10) beats python (-100)."""
    script = tmp_path / "heat_nocc.py"
    script.write_text(SCRIPT.format(dtype="float64"))
    proc = _asp("explain", str(script), env={"ASP_CC": str(tmp_path / "no-such-cc"),
                                             "ASP_PLATFORM_SELECTION": ""})
    assert proc.returncode == 0, proc.stderr
    assert "platform_selection: numpy" in proc.stdout, proc.stdout
    assert "openmp (" in proc.stdout  # the rejected platform and its reason


# -- blocked / not loaded ------------------------------------------------------------------------
@pytest.mark.parametrize("env", [{"ASP_BLOCK_PLUGINS": "stencil-numpy"},
                                 {"ASP_BLOCK_PLUGINS": "asp-stencil-numpy"},
                                 {"ASP_LOAD_PLUGINS": "stencil,gmm,mpk"}])
def test_blocked_or_absent_plugin_leaves_the_default(env):
    proc = _asp("list", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    spec = _stencil(json.loads(proc.stdout))
    for phase in ("platform_selection", "platform_optimization", "backend"):
        assert all(c["distribution"] != "asp-stencil-numpy" for c in spec["phases"][phase])
    assert "numpy" not in _names(spec, "platform_selection")
    assert "openmp" in _names(spec, "platform_selection")


@requires_compiler
def test_blocked_in_process_the_default_returns(monkeypatch, reload_plugins):
    monkeypatch.setenv("ASP_BLOCK_PLUGINS", "stencil-numpy")
    plugins.reset()
    Heat.asp_options = {}
    grids = make_grids((8, 9), 1, seed=1)
    k = Heat()
    k.kernel(*clone_grids(grids))
    assert _chosen_platform(k)[0] == "openmp"
    # asking for it now names what is installed, and the kernel still runs (in Python)
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "numpy")
    k2 = Heat()
    out = clone_grids(grids)
    with pytest.warns(SpecializationWarning, match="installed ones are: .*openmp"):
        k2.kernel(*out)
    ref = clone_grids(grids)
    k2.pure_python(*ref)
    assert_bitwise(ref[-1].data, out[-1].data)


def test_plugin_module_does_not_import_asp_stencil_or_numpy():
    """The registration module stays light: asp-stencil and NumPy load only when a kernel
    needs them."""
    code = ("import sys, asp_stencil_numpy.plugin; print(sorted(m for m in sys.modules "
            "if m.startswith('asp_stencil.') or m.split('.')[0] == 'numpy'))")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

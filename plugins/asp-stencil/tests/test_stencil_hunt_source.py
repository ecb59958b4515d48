"""What a kernel's source says and what Python runs (a bug hunt's regression tests): a file
edited after its import, a decorator's callable object, a negative neighbour id, and where a
fallback points when it knows no column."""

from __future__ import annotations

import importlib
import sys
import warnings

import numpy as np
import pytest

from asp_core import SpecializationWarning
from asp_stencil.testing import assert_bitwise, load_kernel, make_grids, run_both
from pytest_asp import requires_compiler
from stencil_kernel import StencilGrid, StencilKernel

MODULE = """from stencil_kernel import *


class Scaled(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 2.0
"""


@requires_compiler
def test_a_source_file_edited_after_its_import_runs_what_python_runs(tmp_path, monkeypatch):
    """``inspect`` reads the file again: the edited text was specialised (5.0 where Python
    ran 2.0), no warning."""
    (tmp_path / "edited_kernel_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("edited_kernel_mod")
    try:
        (tmp_path / "edited_kernel_mod.py").write_text(MODULE.replace("2.0", "50.0"))
        grids = make_grids((7, 6), 1, seed=4)
        k = mod.Scaled()
        with pytest.warns(SpecializationWarning, match="source file changed since it was "
                                                      r"loaded` at .*edited_kernel_mod.py:5 "):
            ref, got = run_both(k, grids)
        assert_bitwise(ref, got)
        np.testing.assert_array_equal(got[1:-1, 1:-1], grids[0].data[1:-1, 1:-1] * 2.0)
    finally:
        sys.modules.pop("edited_kernel_mod", None)


@requires_compiler
def test_a_long_unedited_kernel_of_module_calls_still_specialises(tmp_path, monkeypatch):
    """Nine ``math.sqrt`` calls of a module imported by the file: the def compiled alone loads
    them as methods (another cache size), its jumps then passed offset 255 on one side only,
    and the ``EXTENDED_ARG`` that added read as an edit ("source file changed since it was
    loaded"): the kernel ran in Python."""
    steps = "\n".join("            t = math.sqrt(t) + 1.0" for _ in range(9))
    (tmp_path / "long_math_kernel_mod.py").write_text(f"""import math
from stencil_kernel import StencilKernel


class Roots(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            t = u[x]
{steps}
            out[x] = t
""")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("long_math_kernel_mod")
    try:
        grids = make_grids((7, 6), 1, seed=4)
        grids[0].data[...] = np.abs(grids[0].data)
        with warnings.catch_warnings():
            warnings.simplefilter("error", SpecializationWarning)
            ref, got = run_both(mod.Roots(), grids)
        assert_bitwise(ref, got)
    finally:
        sys.modules.pop("long_math_kernel_mod", None)


@requires_compiler
def test_an_unedited_kernel_in_a_function_still_specialises():
    """The check compares instructions, not the places names are found: a class in a function
    (a name of the enclosing function, found in a cell, not a global) compiles as before."""
    k = load_kernel("""
def make():
    f = math.sin

    class K(StencilKernel):
        shift = 1.0

        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = f(u[x]) + self.shift

    return K
""", "make")()()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecializationWarning)
        ref, got = run_both(k, make_grids((6, 5), 1))
    assert_bitwise(ref, got)


class _Wrap:
    def __init__(self, f):
        self.f = f

    def __call__(self, *grids):
        return self.f(None, *grids)


class _Decorated(StencilKernel):
    @_Wrap
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 2.0


def test_a_kernel_decorated_with_a_callable_object_runs_in_python():
    """``AttributeError: '_Wrap' object has no attribute '__get__'`` where Python runs it."""
    u, out = StencilGrid([5, 5]), StencilGrid([5, 5])
    u.data[:] = 1.0
    with pytest.warns(SpecializationWarning, match="not a Python function \\(a _Wrap object"):
        _Decorated().kernel(u, out)
    assert out.data[2, 2] == 2.0
    ref = StencilGrid([5, 5])
    _Decorated().pure_python(u, ref)
    assert_bitwise(ref.data, out.data)


@requires_compiler
def test_a_negative_neighbour_id_literal_is_the_list_index_python_takes():
    """``u.neighbors(x, -1)`` (the last definition, as Python indexes it) fell back as "not an
    int literal"; given through an attribute it compiled."""
    k = load_kernel("""
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = 0.0
            for y in u.neighbors(x, -1):
                out[x] += u[y]
""")()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecializationWarning)
        ref, got = run_both(k, make_grids((6, 7), 1))
    assert_bitwise(ref, got)


def test_a_fallback_without_a_column_names_no_column_zero():
    """``kernel without retrievable source`` was reported ``at <string>:0:0``; columns
    count from 1, and Python knows the function's first line."""
    ns: dict = {"StencilKernel": StencilKernel}
    exec(compile("class K(StencilKernel):\n    def kernel(self, u, out):\n"
                 "        for x in out.interior_points():\n            out[x] = u[x]\n",
                 "<string>", "exec"), ns)
    u, out = StencilGrid([4, 4]), StencilGrid([4, 4])
    with pytest.warns(SpecializationWarning, match="at <string>:2 "):
        ns["K"]().kernel(u, out)


UNICODE_KERNEL = '''
import numpy as np
from stencil_kernel import StencilGrid, StencilKernel


class Wärme(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            lap_é = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap_é = lap_é + u[y]
            out[x] = u[x] + 0.1 * lap_é


u, out, ref = StencilGrid([9, 8]), StencilGrid([9, 8]), StencilGrid([9, 8])
u.data[...] = np.random.default_rng(0).random(u.shape)
k = Wärme()
k.kernel(u, out)
k.pure_python(u, ref)
platform = k.kernel.last_context.decision("platform_selection").choice
print(np.array_equal(ref.data, out.data), platform)
'''


@requires_compiler
def test_a_kernel_with_non_ascii_names_compiles_in_an_ascii_locale(tmp_path):
    """Python names may be any letters and the C code carries them: it was written in the
    locale's encoding, which made an ASCII locale's call crash (``UnicodeEncodeError``) and a
    Latin-1 one's fall back as "a bug" (gcc: ``stray '\\344'``)."""
    import os
    import subprocess

    script = tmp_path / "waerme.py"
    script.write_text(UNICODE_KERNEL, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8"))}
    env.update(LC_ALL="C", ASP_CACHE_DIR=str(tmp_path / "cache"), ASP_MODE="strict")
    proc = subprocess.run([sys.executable, "-X", "utf8=0", str(script)], env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "openmp"]

"""Grids whose ``.data`` is rebound or aliased between calls: compiled results equal Python's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pytest_asp import requires_compiler
from asp_core import SpecializationWarning
from asp_stencil import StencilGrid, StencilKernel


class Lap(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                out[x] += u[y]


class Clipping(np.ndarray):
    """Writes clipped to [-1, 1]: Python's ``out[x] = v`` goes through it."""

    def __setitem__(self, index: object, value: object) -> None:
        super().__setitem__(index, np.clip(value, -1.0, 1.0))


class Doubling(np.ndarray):
    """Reads doubled: Python's ``u[x]`` goes through it."""

    def __getitem__(self, index: object) -> object:
        return 2 * super().__getitem__(index)


def _grids(seed: int = 0) -> tuple[StencilGrid, StencilGrid]:
    a, b = StencilGrid((6, 6)), StencilGrid((6, 6))
    a.data[...] = np.random.default_rng(seed).standard_normal((6, 6)) * 3
    return a, b


def _run(monkeypatch: pytest.MonkeyPatch, mode: str, wrap: str) -> np.ndarray:
    """``Lap`` on a fresh pair after one call on plain arrays (specialised in compiled modes),
    with the ``wrap`` grid's ``.data`` rebound to a view of an indexing subclass."""
    monkeypatch.setenv("ASP_MODE", mode)
    k = Lap()
    k.kernel(*_grids(1))
    a, b = _grids()
    if wrap == "out":
        b.data = b.data.view(Clipping)
    else:
        a.data = a.data.view(Doubling)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k.kernel(a, b)
    return np.asarray(b.data).copy()


@requires_compiler
@pytest.mark.parametrize("wrap", ["out", "in"])
def test_data_of_an_ndarray_subclass_replacing_indexing_runs_as_python(monkeypatch, wrap):
    expected = _run(monkeypatch, "python", wrap)
    got = _run(monkeypatch, "auto", wrap)
    assert np.array_equal(got, expected)


@requires_compiler
def test_memmap_data_stays_compiled_and_equals_python(monkeypatch, tmp_path):
    a, b = _grids()
    ref = StencilGrid((6, 6))
    Lap().pure_python(a, ref)
    mm = np.memmap(tmp_path / "u.bin", dtype=np.float64, mode="w+", shape=(6, 6))
    mm[...] = a.data
    a.data = mm
    b.data = np.memmap(tmp_path / "out.bin", dtype=np.float64, mode="w+", shape=(6, 6))
    monkeypatch.setenv("ASP_MODE", "strict")  # raises where the kernel would run in Python
    Lap().kernel(a, b)
    assert np.array_equal(np.asarray(b.data), ref.data)


@requires_compiler
def test_matrix_data_stays_compiled_and_equals_python(monkeypatch):
    """``np.matrix`` replaces ``__getitem__`` too, but a point read gives the element, as a
    plain array does: kernels on matrix data stay compiled (the indexing-subclass check first
    refused them, in strict mode an error)."""
    a, b = _grids()
    ref = StencilGrid((6, 6))
    Lap().pure_python(a, ref)
    a.data, b.data = np.asmatrix(a.data), np.asmatrix(b.data)
    monkeypatch.setenv("ASP_MODE", "strict")  # raises where the kernel would run in Python
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # NumPy's note on matrix
        Lap().kernel(a, b)
    assert np.array_equal(np.asarray(b.data), ref.data)


class _Heat(StencilKernel):
    alpha = 0.1

    def kernel(self, u, out):
        for x in out.interior_points():
            s = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = u[x] + self.alpha * s


@requires_compiler
def test_code_is_made_from_the_attribute_values_of_its_key(monkeypatch, tmp_path):
    """Another thread setting ``h.alpha`` between the key's read of it and the frontend's
    made code for the new value, bound to the key of the old one for good: that value's calls
    were wrong in the rest of the process (the report's race, made deterministic here)."""
    from asp_stencil.frontend import StencilFrontend

    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    h = _Heat()
    parse = StencilFrontend.parse

    def raced(self, ctx):
        h.alpha = 0.4          # another thread's write, after the key was taken
        return parse(self, ctx)

    u, out, ref = StencilGrid([12, 12]), StencilGrid([12, 12]), StencilGrid([12, 12])
    u.data[...] = np.random.default_rng(0).random(u.shape)
    with monkeypatch.context() as m:
        m.setattr(StencilFrontend, "parse", raced)
        h.kernel(u, out)
    for alpha in (0.1, 0.4):
        h.alpha = alpha
        h.kernel(u, out)
        h.pure_python(u, ref)
        np.testing.assert_array_equal(out.data, ref.data)


@pytest.mark.parametrize("value", [0.1, -0.0, float("nan"), np.float64(0.3), np.float32(0.7),
                                   np.int16(-5), np.uint8(200), 7, True, 2**70])
def test_an_attribute_comes_back_from_its_key_form_exactly(value):
    """What the frontend compiles when the attribute changed after the key was taken: the
    value the key was made of, of the same type and bits."""
    from asp_stencil.signature import _hashable, attribute_value

    back = attribute_value(_hashable(value), "changed meanwhile")
    assert type(back) is type(value)
    assert _hashable(back) == _hashable(value)


def test_an_object_attribute_is_never_compiled_as_its_id():
    """An object's key form holds its ``id()``: decoded as a number, the race compiled
    ``u[x] * self.alpha`` with alpha = the Fraction's address (the kernel runs in Python)."""
    from fractions import Fraction

    from asp_stencil.signature import _hashable, attribute_value

    half = Fraction(1, 2)
    assert attribute_value(_hashable(half), half) is half
    # changed to a number after the key was taken: not that number (its code would serve
    # the Fraction's key), but what the frontend refuses, as it refuses the Fraction
    assert attribute_value(_hashable(half), 0.25) is None


@pytest.mark.parametrize("change", ["append", "replace", "list-offset-mutated",
                                    "array-offset", "array-row"])
def test_a_neighbour_definition_changed_in_place_changes_the_code(change):
    """The key keeps a grid's neighbour-definition form while its rows compare equal to the
    rows it was made from: every change in place must still be seen (a list offset, which
    can change inside an equal-looking row, is never kept)."""
    u, out = _grids(3)
    k = Lap()
    k.kernel(u, out)
    rows = u.neighbor_definition
    if change == "append":
        rows[1].append((1, 1))
    elif change == "replace":
        rows[1][0] = (0, 0)
    elif change == "array-offset":   # compared with the kept rows element-wise: it raised
        rows[1][0] = np.array([1, 0])
    elif change == "array-row":
        rows[1] = np.array([[1, 0], [0, 1]])
    else:
        offset = [1, 1]
        rows[1].append(offset)
        k.kernel(u, out)
        offset[0] = -1          # the row's list still holds the same object
    test, ref = StencilGrid(out.shape), StencilGrid(out.shape)
    k.kernel(u, test)
    k.pure_python(u, ref)
    np.testing.assert_array_equal(test.data, ref.data)


def test_grids_the_fast_checks_do_not_take_are_checked_as_before():
    """A grid's shape set by hand as an array (its comparison with the data's shape raised
    "truth value ... ambiguous"), and data whose buffer refuses a writable export though the
    array says writeable (a broadcast view: its address came through a ctypes view, which
    raised)."""
    u, out = _grids(4)
    k = Lap()
    k.kernel(u, out)
    u.shape = np.array(u.data.shape)
    base = np.random.default_rng(5).standard_normal((6, 6))
    test, ref = StencilGrid(out.shape), StencilGrid(out.shape)
    with warnings.catch_warnings():   # NumPy's notice that such views will be read-only
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        u.data = np.broadcast_arrays(base, np.zeros((1, 6, 6)))[0][0]
        assert u.data.flags.writeable and u.data.flags.c_contiguous
        k.kernel(u, test)
        k.pure_python(u, ref)
    np.testing.assert_array_equal(test.data, ref.data)


@requires_compiler
def test_a_grid_class_method_patched_after_its_first_call_runs_as_python(monkeypatch):
    """The DSL methods a grid subclass replaces were looked up once per class: one patched
    on the class after a kernel's first call (``G.__getitem__ = ...``) was never seen, and
    compiled code ran, ignoring it, where Python calls it."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")

    class G(StencilGrid):
        pass

    class Twice(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = u[x] * 2.0

    def run(k):
        u, out = G((4, 4)), G((4, 4))
        u.data[:] = 1.0
        k.kernel(u, out)
        return float(out.data[1, 1])

    k = Twice()
    assert run(k) == 2.0
    monkeypatch.setattr(G, "__getitem__", lambda self, x: self.data[x] + 100.0, raising=False)
    with pytest.warns(SpecializationWarning):
        assert run(k) == 202.0

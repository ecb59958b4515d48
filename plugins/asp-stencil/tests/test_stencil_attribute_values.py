"""What one kernel's specialisations and stored timings are keyed by: a kernel attribute
that takes a new value at each call compiles the kernel again for each (attributes are
constants of the generated code), which the user is told once; two kernels on the same grids
are tuned each for itself."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pytest_asp import requires_compiler
from asp_core import PerformanceWarning
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.signature import param_form


class Source(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] + self.dt * self.t


def _grids() -> tuple[StencilGrid, StencilGrid]:
    u, out = StencilGrid((6, 6)), StencilGrid((6, 6))
    u.data[...] = np.arange(36.0).reshape(6, 6)
    return u, out


def _calls(monkeypatch: pytest.MonkeyPatch, kernels: list[Source], times: list[float]
           ) -> list[warnings.WarningMessage]:
    """Call each kernel with each ``t`` in turn; the results equal Python's; the warnings."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    u, out = _grids()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in kernels:
            for t in times:
                k.t = t
                k.kernel(u, out)
                expected = out.data.copy()
                expected[1:-1, 1:-1] = u.data[1:-1, 1:-1] + k.dt * t
                np.testing.assert_array_equal(out.data, expected)
    return [w for w in caught if issubclass(w.category, PerformanceWarning)]


@requires_compiler
def test_a_time_set_before_every_call_becomes_a_parameter_of_one_code(monkeypatch):
    """``self.t`` set before every call compiled (and tuned) the kernel at every call, 0.18 s
    a call on 256x256 (14 times the kernel in Python). Its second value makes it a
    parameter: one more code, for every later value; ``self.dt``, never changed, stays a
    constant."""
    class Heat(Source):
        dt = 0.5

    k = Heat()
    assert _calls(monkeypatch, [k], [0.0, 0.25, 0.5, 0.75, 1.0, -0.0, float("nan"), 1e300]) == []
    keys = k.kernel.keys()
    assert len(keys) == 3
    attrs = dict(keys[-1][2])
    assert attrs["t"] == ("<param>", "") and attrs["dt"] == ("float", (0.5).hex())



@requires_compiler
@pytest.mark.parametrize("first", [0, True, np.int64(0)])
def test_a_time_started_at_an_int_becomes_a_parameter_at_its_first_float(monkeypatch, first):
    """``k.t = 0`` and then ``k.t += 0.1`` at every step compiled the kernel at every step
    (only two floats in a row made a parameter): the first float after another value makes
    it one, and the int value keeps its own constant code."""
    class Heat(Source):
        dt = 0.5

    k = Heat()
    times = [first] + [0.1 * i for i in range(1, 8)] + [first]
    assert _calls(monkeypatch, [k], times) == []
    assert len(k.kernel.keys()) == 3
    assert dict(k.kernel.keys()[-1][2])["t"] == ("<param>", "")


@requires_compiler
def test_the_warning_counts_the_values_compiled_once_a_float_is_a_parameter(monkeypatch):
    """The values before an attribute became a parameter were counted among those that
    compile again: its warning came at "0.5, 0.7, 0, ..." after three ints. Counting starts
    again at the value that made it a parameter (compiled as a constant once)."""
    class Heat(Source):
        dt = 0.5

    k = Heat()
    assert _calls(monkeypatch, [k], [0.5, 0.7, 0, 1, 2, 0.9]) == []
    told = _calls(monkeypatch, [k], [3, 4])
    assert len(told) == 1 and "5 values of self.t (0.7, 0, 1, ...)" in str(told[0].message)


@requires_compiler
def test_a_float_after_five_other_values_still_becomes_a_parameter(monkeypatch):
    """The "first float after another value" rule was not reached once five values were
    counted: a time that ran five int steps and then floats compiled at every float step."""
    class Heat(Source):
        dt = 0.5

    k = Heat()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PerformanceWarning)
        _calls(monkeypatch, [k], [0, 1, 2, 3, 4, 4.5, 5.5, 6.5, 7.5])
    assert len(k.kernel.keys()) == 7 and dict(k.kernel.keys()[-1][2])["t"] == ("<param>", "")

class Typed(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * self.a + self.b - self.a * self.b


@requires_compiler
@pytest.mark.parametrize("grid", ["<f8", "<f4"])
@pytest.mark.parametrize("kind", [float, np.float64, np.float32])
def test_parameters_compute_in_the_precision_python_does(monkeypatch, grid, kind):
    """A Python float is a weak scalar (float32 with a float32 grid), a NumPy scalar keeps its
    dtype: as parameters too, the results are bitwise Python's."""
    from asp_stencil.testing import assert_bitwise

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    rng = np.random.default_rng(5)
    u, out, ref = (StencilGrid((9, 70), dtype=np.dtype(grid)) for _ in range(3))
    u.data[...] = rng.standard_normal(u.shape)
    k = Typed()
    for a, b in rng.standard_normal((5, 2)) * 3:
        k.a, k.b = kind(a), kind(b)
        k.kernel(u, out)
        k.pure_python(u, ref)
        assert_bitwise(out.data, ref.data)
    assert dict(k.kernel.keys()[-1][2])["a"][0] == "<param>"


class Inverse(StencilKernel):
    def kernel(self, u, out):
        c = 2.0 / self.t
        for x in out.interior_points():
            out[x] = u[x] * c


class Wave(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] + self.amp * math.sin(self.w * self.t) - math.sqrt(self.t)


class Guarded(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            if u[x] > 100.0:
                out[x] = u[x] / self.t + math.log(self.t)
            else:
                out[x] = u[x] - max(self.t, 0)


def _parameters_equal_python(monkeypatch, k, values, raising=(), kind=float):
    """Call ``k`` with each ``t`` of ``values`` (after two to make it a parameter): results
    bitwise Python's, never a warning; a value in ``raising`` raises that error, as Python."""
    from asp_stencil.testing import assert_bitwise

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    u, out, ref = (StencilGrid((7, 9)) for _ in range(3))
    u.data[...] = np.random.default_rng(2).random(u.shape) * 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in (kind(1.5), kind(2.5), *values):
            k.t = t
            expected = raising.get(t) if isinstance(raising, dict) else None
            if expected is not None:
                with pytest.raises(expected):
                    k.pure_python(u, ref)
                with pytest.raises(expected):
                    k.kernel(u, out)
                continue
            k.kernel(u, out)
            k.pure_python(u, ref)
            assert_bitwise(out.data, ref.data)
    assert dict(k.kernel.keys()[-1][2])["t"] == param_form(kind(0.0))


@requires_compiler
def test_python_arithmetic_of_parameters_is_computed_by_python_at_each_call(monkeypatch):
    """``2.0 / self.t`` and ``math.sqrt(self.t)`` raise in Python for some values, where C
    computes inf or nan: Python computes them once a call, and a call where that raises runs
    the kernel in Python, which raises as Python does."""
    k = Inverse()
    _parameters_equal_python(monkeypatch, k, [0.5, -3.0, 1e-300, float("inf"), 0.0, 7.0],
                             raising={0.0: ZeroDivisionError})
    w = Wave()
    w.amp, w.w = 0.25, 3.0
    _parameters_equal_python(monkeypatch, w, [0.0, 1.0, 1e300, float("inf"), -1.0, 4.0],
                             raising={float("inf"): ValueError, -1.0: ValueError})


@requires_compiler
def test_a_parameter_computation_in_a_branch_no_point_takes_raises_nothing(monkeypatch):
    """``u[x] / self.t + math.log(self.t)`` where no ``u[x]`` exceeds 100: Python never
    computes ``log(0.0)``; the call runs the kernel in Python, without an error. The
    ``max(self.t, 0)`` of the other branch is the int 0 for a negative ``t``."""
    _parameters_equal_python(monkeypatch, Guarded(), [0.0, -2.0, 3.0, 0.0])


class Shifted(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] + self.n


@requires_compiler
def test_an_int_attribute_taking_five_values_is_named_once(monkeypatch):
    class Counted(Shifted):
        pass

    u, out = _grids()
    k = Counted()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(7):
            k.n = n
            k.kernel(u, out)
            np.testing.assert_array_equal(out.data[1:-1, 1:-1], u.data[1:-1, 1:-1] + n)
    told = [w for w in caught if issubclass(w.category, PerformanceWarning)]
    assert len(told) == 1 and "Counted.kernel has been compiled for 5 values of self.n" in str(
        told[0].message)


@requires_compiler
def test_iterate_takes_the_parameters_of_its_call(monkeypatch):
    """A parameter's code has no temporally blocked form (it declines): ``iterate`` runs
    plain sweeps with the value of its call."""
    class Heat(Source):
        dt = 0.25

    k = Heat()
    for t in (1.0, 2.0, 3.0, 4.0):
        k.t = t
        runs = []
        for run in (k.iterate, None):
            u, out = _grids()
            if run is not None:
                runs.append(run(u, out, steps=3).data.copy())
                continue
            for _ in range(3):
                k.pure_python(u, out)
                u, out = out, u
            runs.append(u.data.copy())
        np.testing.assert_array_equal(*runs)


@requires_compiler
def test_objects_made_with_different_constants_and_values_that_recur_are_not_named(
        monkeypatch):
    class Sweep(Source):
        dt = 0.125

    kernels = [Sweep() for _ in range(5)]
    for i, k in enumerate(kernels):
        k.dt = 0.125 * (i + 1)
    assert _calls(monkeypatch, kernels, [2.0]) == []
    assert _calls(monkeypatch, [kernels[0]], [2.0, 3.0, 4.0, 5.0, 2.0, 3.0]) == []


class Cheap(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 2.0


class Heavy(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                out[x] = out[x] + (u[y] * u[y] + 1.0) / (u[y] + 3.0)


@requires_compiler
def test_two_kernels_on_the_same_grids_are_tuned_each_for_itself(monkeypatch, tmp_path):
    """The stored winner was keyed by the call's key (grids, attributes), not the kernel:
    every kernel on the same grids took the first one's winner, untimed."""
    monkeypatch.setenv("ASP_AUTOTUNE", "once")
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    u, out = StencilGrid((40, 40)), StencilGrid((40, 40))
    u.data[...] = np.random.default_rng(3).random(u.shape)
    cheap = Cheap()
    for _ in range(200):
        cheap.kernel(u, out)
        if cheap.kernel.tuned(cheap.kernel.keys()[0]) is not None:
            break
    assert cheap.kernel.tuned(cheap.kernel.keys()[0]) is not None
    heavy = Heavy()
    heavy.kernel(u, out)
    assert heavy.kernel.keys() == cheap.kernel.keys()   # the same grids: the same call key
    assert heavy.kernel.tuned(heavy.kernel.keys()[0]) is None, "took Cheap's winner untimed"


HEAT = """
class Heat(StencilKernel):
    def kernel(self, u, out):{comment}
        for x in out.interior_points():
            out[x] = u[x] * 0.5
"""


@requires_compiler
def test_a_comment_added_to_a_kernel_keeps_its_stored_winner(monkeypatch, tmp_path):
    """The winner is keyed by what the kernel computes: its printed IR held the statements'
    source lines, and a comment line made the kernel tune again."""
    from asp_stencil.testing import load_kernel

    monkeypatch.setenv("ASP_AUTOTUNE", "once")
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    u, out = StencilGrid((40, 40)), StencilGrid((40, 40))
    first = load_kernel(HEAT.format(comment=""), "Heat")()
    for _ in range(200):
        first.kernel(u, out)
        if first.kernel.tuned(first.kernel.keys()[0]) is not None:
            break
    edited = load_kernel(HEAT.format(comment="\n        # a comment"), "Heat")()
    edited.kernel(u, out)
    assert edited.kernel.tuned(edited.kernel.keys()[0]) is not None, "tuned again"


@requires_compiler
@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_copies_of_a_kernel_follow_their_own_values(monkeypatch, how):
    """What the key follows of a kernel object's values stays with it: copies of one kernel,
    each given its own ``t``, shared one count and were told that ``t`` took five values
    (and a copy made after the original's ``t`` became a parameter started as one)."""
    import copy
    import pickle

    make = {"copy": copy.copy, "deepcopy": copy.deepcopy,
            "pickle": lambda k: pickle.loads(pickle.dumps(k))}[how]

    template = Int()
    template.n = 0
    u, out = _grids()
    template.kernel(u, out)
    copies = [make(template) for _ in range(6)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n, k in enumerate(copies, start=1):
            k.n = n
            k.kernel(u, out)
            np.testing.assert_array_equal(out.data[1:-1, 1:-1], u.data[1:-1, 1:-1] + n)
    assert not [w for w in caught if issubclass(w.category, PerformanceWarning)]


class Int(Shifted):
    pass


class _Unhashable(type):
    def __eq__(cls, other):
        return cls is other

    __hash__ = None  # type: ignore[assignment]


@requires_compiler
def test_a_kernel_class_that_cannot_be_hashed_is_counted_without_failing(monkeypatch):
    class Counted(Shifted, metaclass=_Unhashable):
        pass

    u, out = _grids()
    k = Counted()
    for n in range(7):
        k.n = n
        k.kernel(u, out)
        np.testing.assert_array_equal(out.data[1:-1, 1:-1], u.data[1:-1, 1:-1] + n)


class Float32Scalars(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * (self.a + 0.1) + u[x] * (self.a * self.b) + u[x] * (self.p * self.c)


@requires_compiler
def test_float32_parameters_meeting_in_float64_rows_compute_in_float32_in_every_variant():
    """NumPy computes ``np.float32(a) + 0.1`` and ``a * b`` of float32 scalars in float32
    (and a Python float times a float32 constant): the streaming vector variants of float64
    rows computed them in double, 4 million points wrong a call on 2048^2."""
    n = 512   # over 1 MiB a grid: the streaming variants are proposed
    u = StencilGrid((n, n))
    u.data[...] = np.random.default_rng(0).standard_normal((n, n))
    k = Float32Scalars()
    k.c = np.float32(0.3)
    for a, b, p in [(0.3, 0.7, 1.1), (0.35, 0.75, 1.3), (0.4, 0.8, 1.7)]:
        k.a, k.b, k.p = np.float32(a), np.float32(b), p
        k.kernel(u, StencilGrid((n, n)))
    ref = StencilGrid((n, n))
    k.pure_python(u, ref)
    assert dict(k.kernel.keys()[-1][2])["a"] == ("<param>", "<f4")
    for name, run in k.kernel.build_variants(u, StencilGrid((n, n))).items():
        out = StencilGrid((n, n))
        run(u, out)
        np.testing.assert_array_equal(out.data, ref.data, err_msg=name)


class NumpyRoot(StencilKernel):
    def kernel(self, u, out):
        unused = 1.0 / self.t  # noqa: F841 - computed by Python, raising at t == 0
        for x in out.interior_points():
            out[x] = u[x] + math.sqrt(self.t)


@requires_compiler
@pytest.mark.parametrize("kind", [float, np.float64, np.float32])
def test_what_python_computes_of_parameters_raises_as_in_python(monkeypatch, kind):
    """``math.sqrt`` of a NumPy scalar raises as of a Python float (the compiled code gave
    nan), and an assignment no statement reads is computed too (``1.0 / self.t`` raised
    ZeroDivisionError in Python only)."""
    k = NumpyRoot()
    # NumPy divides by zero with a RuntimeWarning, which compiled code does not give
    values = [kind(4.0), kind(-1.0), kind(9.0)] + ([0.0] if kind is float else [])
    _parameters_equal_python(monkeypatch, k, values,
                             raising={-1.0: ValueError, 0.0: ZeroDivisionError}, kind=kind)


@requires_compiler
def test_a_failure_on_other_grids_keeps_the_parameters_of_these(monkeypatch):
    """A call on int8 grids (whose float store is refused there) made ``t`` a constant of the
    object's float64 code too, which then compiled at every value, 3000 times slower."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    k = Source()
    k.dt = 0.5
    u, out = _grids()
    for t in (1.0, 2.0, 3.0):
        k.t = t
        k.kernel(u, out)
    small, small_out = StencilGrid((6, 6), dtype=np.int8), StencilGrid((6, 6), dtype=np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k.kernel(small, small_out)
    before = len(k.kernel.keys())
    for t in (4.0, 5.0, 6.0):
        k.t = t
        k.kernel(u, out)
        np.testing.assert_array_equal(out.data[1:-1, 1:-1], u.data[1:-1, 1:-1] + 0.5 * t)
    assert len(k.kernel.keys()) == before


def test_constants_of_a_computed_parameter_are_the_folded_objects():
    """A NumPy constant in a parameter's expression was written as its repr
    (``np.float32(1.0)``), which named nothing: every call ran the kernel in Python."""
    from asp_stencil import dast as D
    from asp_stencil.param_values import values_reader

    a = D.Param("a")
    test = D.Compare(a, (">",), (D.Const(np.float32(1.0), "<f4"),))
    expr = D.IfExp(test, D.BinOp("*", a, D.Const(float("inf"))), D.Const(2.0))
    read = values_reader((D.Param("0", "", expr),))
    assert read(type("K", (), {"a": 0.5})()) == [2.0]
    assert read(type("K", (), {"a": 3.0})()) == [float("inf")]


@requires_compiler
def test_a_new_object_per_step_with_the_steps_value_is_named(monkeypatch):
    """``Heat(t).kernel(u, out)`` with a new value at each step compiles at every step (each
    object keeps its constants: objects made each with its own constant must keep blocked
    and CUDA code) and was never named: values were counted per object only. Counted across
    the class's objects too, ten values are named once."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")

    class PerStep(Source):
        dt = 0.5

        def __init__(self, t: float) -> None:
            self.t = t

    told = _calls_per_object(monkeypatch, PerStep, [0.1 * step + 0.05 for step in range(9)])
    assert told == []
    told = _calls_per_object(monkeypatch, PerStep, [7.0, 8.0])
    assert len(told) == 1
    assert "10 values of self.t across its objects (0.05, 0.15" in str(told[0].message)


def _calls_per_object(monkeypatch: pytest.MonkeyPatch, cls: type, times: list[float]
                      ) -> list[warnings.WarningMessage]:
    u, out = _grids()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for t in times:
            k = cls(t)
            k.kernel(u, out)
            expected = out.data.copy()
            expected[1:-1, 1:-1] = u.data[1:-1, 1:-1] + k.dt * t
            np.testing.assert_array_equal(out.data, expected)
            assert len(k.kernel.keys()) == 1
    return [w for w in caught if issubclass(w.category, PerformanceWarning)]

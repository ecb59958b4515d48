"""Constructs outside the DSL fall back to Python with one warning naming file, line, construct."""

from __future__ import annotations

import builtins
import functools
import inspect
import itertools
import math
import re
import shutil
import textwrap

import numpy as np
import pytest

from asp_core import SpecializationWarning, Unspecializable
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.testing import (assert_bitwise, assert_specialised, clone_grids, load_kernel,
                                make_grids, run_both)

GLOBAL_SCALE = 2.0


def helper(v):
    return v * 2


class UserFunction(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = helper(u[x])  # <- call to user function 'helper'


class BitwiseAnd(StencilKernel):
    k = 3

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * (self.k & 1)  # <- operator '&'


class TopLevelIf(StencilKernel):
    flag = True

    def kernel(self, u, out):
        if self.flag:  # <- if statement
            for x in out.interior_points():
                out[x] = u[x]


class PartlyAssigned(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            if u[x] > 1e9:
                t = u[x]
            out[x] = t if u[x] > 1e9 else u[x]  # <- read where only some branches of an if


class WhileLoop(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            n = 0
            while n < 2:  # <- while loop
                n += 1
            out[x] = u[x] * n


class PrintCall(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            print  # <- expression statement
            out[x] = u[x]


class CompareOutside(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] > 0  # <- comparison outside the test of a conditional expression


class GlobalName(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * GLOBAL_SCALE  # <- global name 'GLOBAL_SCALE'


class WriteNeighbour(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                out[y] = u[x]  # <- write to a neighbour point


class PointArithmetic(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * x[0]  # <- subscript 'x[0]'


class CarriedLocal(StencilKernel):
    def kernel(self, u, out):
        acc = 0.0
        for x in out.interior_points():
            out[x] = acc  # <- read before it is assigned in the loop body
            acc = u[x]


class LocalAfterLoop(StencilKernel):
    def kernel(self, u, out):
        c = 1.0
        for x in out.interior_points():
            c = u[x] * 2.0
            out[x] = c
        d = c + 0.5  # <- local variable 'c' read after the point loop
        for x in out.border_points():
            out[x] = d


def _closure_max():
    def max(a, b):  # the function enclosing the kernel class shadows the builtin
        return a + b

    class ClosureMax(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = max(u[x], 1.0)  # <- call to user function 'max'

    return ClosureMax


ClosureMax = _closure_max()


def _closure_number():
    c = 3.0

    class ClosureNumber(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = u[x] * c  # <- variable 'c' of an enclosing function

    return ClosureNumber


ClosureNumber = _closure_number()


class NonScalarAttribute(StencilKernel):
    scale = np.float16(2.0)

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * self.scale  # <- attribute 'self.scale' that is not a real scalar


class NumpyFunction(StencilKernel):
    """Named a "user function" before: it is NumPy's (the DSL compiles math.sqrt)."""

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = np.sqrt(u[x])  # <- call to function 'np.sqrt', which the stencil DSL


class TimedeltaAttribute(StencilKernel):
    lag = np.timedelta64(3)   # generic unit: unhashable (the call raised "Can't hash")

    def kernel(self, u, out):
        for x in out.interior_points():
            _ = self.lag  # <- attribute 'self.lag' that is not a real scalar
            out[x] = u[x] + 1.0


CASES = [UserFunction, BitwiseAnd, TopLevelIf, PartlyAssigned, WhileLoop, PrintCall, CompareOutside,
         GlobalName, WriteNeighbour, PointArithmetic, CarriedLocal,
         LocalAfterLoop, ClosureMax, ClosureNumber, NonScalarAttribute, TimedeltaAttribute,
         NumpyFunction]


def _marker(cls):
    lines, first = inspect.getsourcelines(cls.kernel.func)
    for i, text in enumerate(lines):
        if "# <- " in text:
            return first + i, text.split("# <- ")[1].strip()
    raise AssertionError("no marker")


@pytest.mark.parametrize("cls", CASES, ids=[c.__name__ for c in CASES])
def test_fallback_warns_once_with_location_and_runs_python(cls, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "auto")
    line, construct = _marker(cls)
    grids = make_grids((6, 7), 1, seed=5)
    ref = clone_grids(grids)
    k = cls()
    with np.errstate(all="ignore"):
        k.pure_python(*ref)
        with pytest.warns(SpecializationWarning) as record:
            k.kernel(*grids)
    assert len(record) == 1
    text = str(record[0].message)
    assert re.search(rf"{re.escape(__file__)}:{line}:\d+", text), text
    assert construct.split("'")[0].strip() in text, (construct, text)
    for a, b in zip(ref, grids):
        assert_bitwise(a.data, b.data)
    # one warning per kernel: a second call is silent
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="ignore"):
            k.kernel(*grids)


def test_strict_mode_raises(monkeypatch):
    from asp_core import Unspecializable

    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids((5, 5), 1)
    with pytest.raises(Unspecializable, match="helper"):
        UserFunction().kernel(*grids)


class NoOpStatements(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            """5-point Laplacian"""
            out[x] = -4.0 * u[x]
            ...
            for y in u.neighbors(x, 1):
                "a string as a comment"
                out[x] += u[y]
        0


def test_statements_that_do_nothing_compile():
    """A string as a comment, ``...`` or a bare constant inside a loop did nothing in Python,
    yet the kernel ran in Python ("expression statement (e.g. a call)")."""
    from asp_stencil.testing import assert_specialised

    k = NoOpStatements()
    ref, got = run_both(k, make_grids((6, 7), 1, seed=3))
    assert_bitwise(ref, got)
    assert_specialised(k)


@pytest.mark.parametrize("call", ["iterate", "class", "instance"])
def test_the_fallback_warning_names_the_user_s_line_however_the_kernel_is_called(call):
    """A fixed ``stacklevel`` named Asp's files for ``k.iterate(...)`` (``temporal/iterate.py``)
    and ``Class.kernel(k, ...)`` (``kernel.py``): a ``filterwarnings(module=...)`` of the
    user's missed the warning."""
    grids = make_grids((5, 5), 1)
    k = WhileLoop()
    with pytest.warns(SpecializationWarning) as record:
        if call == "iterate":
            line = inspect.currentframe().f_lineno + 1
            k.iterate(*grids, steps=2)
        elif call == "class":
            line = inspect.currentframe().f_lineno + 1
            WhileLoop.kernel(k, *grids)
        else:
            line = inspect.currentframe().f_lineno + 1
            k.kernel(*grids)
    assert [(w.filename, w.lineno) for w in record] == [(__file__, line)]


def test_python_mode_never_specialises(monkeypatch):
    monkeypatch.setenv("ASP_MODE", "python")
    grids = make_grids((5, 5), 1)
    ref = clone_grids(grids)
    k = UserFunction()
    k.pure_python(*ref)
    k.kernel(*grids)
    assert_bitwise(ref[-1].data, grids[-1].data)


# A local a point loop assigns holds, after the loop, the last point's value in Python's order
# only: read there (top level or a later loop) it is refused, however the loop assigned it.
AFTER_LOOP = {
    "later-loop": """
        c = 1.0
        for x in out.interior_points():
            c = u[x] * 2.0
            out[x] = c
        for x in out.border_points():
            out[x] = c  # <- c""",
    "first-assigned-in-the-loop": """
        for x in out.interior_points():
            t = u[x]
            out[x] = t
        d = t + 1.0  # <- t
        for x in out.border_points():
            out[x] = d""",
    "assigned-in-an-if": """
        c = 1.0
        for x in out.interior_points():
            if u[x] > 0.0:
                c = u[x]
            out[x] = u[x]
        for x in out.border_points():
            out[x] = c  # <- c""",
    "assigned-in-a-neighbour-loop": """
        s = 0.0
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                s = u[y]
            out[x] = s
        for x in out.border_points():
            out[x] = s + u[x]  # <- s""",
    "augmented-in-the-loop": """
        c = 0.0
        for x in out.interior_points():
            c = u[x]
            c += 1.0
            out[x] = c
        for x in out.border_points():
            out[x] = c  # <- c""",
    "augmented-after-the-loop": """
        c = 0.0
        for x in out.interior_points():
            c = u[x]
            out[x] = c
        c += 1.0  # <- c
        for x in out.border_points():
            out[x] = c""",
}


def _kernel_source(body):
    return ("class K(StencilKernel):\n    def kernel(self, u, out):"
            + textwrap.indent(textwrap.dedent(body), " " * 8))


def _kernel_class(body, namespace=None):
    return load_kernel(_kernel_source(body), namespace=namespace)


@pytest.mark.parametrize("body", AFTER_LOOP.values(), ids=AFTER_LOOP)
def test_local_read_after_the_point_loop_that_assigned_it_is_refused(body):
    cls = _kernel_class(body)
    lines = _kernel_source(body).splitlines()
    loop = 1 + next(i for i, text in enumerate(lines) if "interior_points()" in text)
    read = 1 + next(i for i, text in enumerate(lines) if "# <- " in text)
    name = lines[read - 1].split("# <- ")[1]
    with pytest.raises(Unspecializable, match=rf"local variable '{name}' read after the point "
                                              rf"loop at line {loop} assigned it") as info:
        cls().kernel.analyse(*make_grids((5, 6), 1))
    assert info.value.lineno == read


class _Ops:
    """An object whose attribute is a property: parsing a kernel must not run it."""

    def __init__(self):
        self.runs = 0

    @property
    def sqrt(self):
        self.runs += 1
        return math.sqrt


def _sum(a, b):
    return a + b


def _closure_root():
    root = math.sqrt  # the DSL's sqrt under a closure variable's name

    class ClosureRoot(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = root(u[x] * u[x])

    return ClosureRoot


# A callee is the object its name has when the kernel runs (Python's lookup: kernel locals, the
# closure, the function's globals, its builtins), not its spelling: anything but a DSL
# function is refused, a DSL function under any name compiles.
CALLEES = {
    "closure-shadows-max": (ClosureMax, False),
    "kernel-local-max": (_kernel_class("""
        max = 2.0
        for x in out.interior_points():
            out[x] = max(u[x], 1.0)"""), False),
    "function-builtins-max": (_kernel_class("""
        for x in out.interior_points():
            out[x] = max(u[x], 1.0)""", {"__builtins__": {**vars(builtins), "max": _sum}}), False),
    "property-of-an-object": (_kernel_class("""
        for x in out.interior_points():
            out[x] = ops.sqrt(u[x])""", {"ops": _Ops()}), False),
    "closure-names-math-sqrt": (_closure_root(), True),
}


@pytest.mark.parametrize("cls,compiles", CALLEES.values(), ids=CALLEES)
def test_callee_is_resolved_as_python_resolves_it_at_call_time(cls, compiles):
    grids = make_grids((5, 6), 1)
    ops = cls.kernel.func.__globals__.get("ops")
    if compiles:
        cls().kernel.analyse(*grids)
    else:
        with pytest.raises(Unspecializable, match=r"call to (user|unknown) function"):
            cls().kernel.analyse(*grids)
    if ops is not None:
        assert ops.runs == 0, "a property of a user's object ran while the kernel was parsed"


def test_a_kernel_wrapped_by_a_decorator_runs_its_wrapper():
    """A ``functools.wraps`` decorator's wrapper is what a call runs: compiling the function
    inside skipped it (the doubled output came back single).  Such a kernel runs in Python."""

    def doubled(func):
        @functools.wraps(func)
        def wrapper(self, u, out):
            func(self, u, out)
            out.data[...] *= 2

        return wrapper

    class Doubled(StencilKernel):
        @doubled
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = u[x] + 1.0

    grids = make_grids((5, 6), 1)
    with pytest.raises(Unspecializable, match="kernel wrapped by a decorator"):
        Doubled().kernel.analyse(*grids)
    with pytest.warns(SpecializationWarning, match="wrapped by a decorator"):
        expected, actual = run_both(Doubled(), grids)
    assert_bitwise(expected, actual)


class Scaled(StencilKernel):
    c = 0.0

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = self.c * u[x]


@pytest.mark.parametrize("zero", [0.0, np.float32(0.0)], ids=["float", "float32"])
def test_an_attribute_changed_to_the_other_zero_or_nan_is_seen(zero, monkeypatch):
    """Attributes key the specialisation by their bits: ``0.0 == -0.0``, so -0.0 reused the
    code compiled for 0.0 (+0.0 where Python gives -0.0); a nan is one key, not a new one per
    call."""
    monkeypatch.setenv("ASP_MODE", "strict")
    k = Scaled()
    grids = make_grids((5, 6), 1, seed=1)
    for c in (zero, -zero, zero, np.nan, float("nan")):
        k.c = type(zero)(c)
        expected, actual = run_both(k, grids)
        assert_bitwise(expected, actual)
    assert len(k.kernel.specializations) == 3   # +0, -0, nan


class BoolAttribute(StencilKernel):
    b = np.True_

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = (self.b + self.b) * u[x]


def test_a_numpy_bool_attribute_keeps_numpys_arithmetic():
    """np.True_ + np.True_ is np.True_ (logical or): compiled as a Python bool it gave 2."""
    grids = make_grids((5, 6), 1, seed=1)
    with pytest.warns(SpecializationWarning, match="self.b"):
        expected, actual = run_both(BoolAttribute(), grids)
    assert_bitwise(expected, actual)


class Static(StencilKernel):
    @staticmethod
    def kernel(u, out):
        for x in out.interior_points():
            out[x] = u[x] + 1.0


class ClassLevel(StencilKernel):
    c = 1.0

    @classmethod
    def kernel(cls, u, out):
        for x in out.interior_points():
            out[x] = u[x] + cls.c


@pytest.mark.parametrize("cls", [Static, ClassLevel])
def test_a_static_or_class_method_kernel_runs_in_python(cls):
    """A @staticmethod kernel raised TypeError (its first grid was taken for self); a
    @classmethod's self is the class, whose attributes an instance may shadow."""
    k = cls()
    k.c = 5.0   # the classmethod reads cls.c = 1.0, never this
    grids = make_grids((5, 6), 1, seed=1)
    with pytest.warns(SpecializationWarning, match="not an instance method"):
        expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)


def test_copies_and_pickles_of_a_kernel_specialise_afresh():
    """A copy made after the first call kept the original's dispatcher (bound to the original:
    its attributes, not the copy's); deepcopy and pickle failed on its lock and closures."""
    import copy
    import pickle

    k = Scaled()
    k.c = 2.0
    grids = make_grids((5, 6), 1, seed=1)
    run_both(k, grids)
    for dup in (copy.copy(k), copy.deepcopy(k), pickle.loads(pickle.dumps(k))):
        dup.c = 5.0
        expected, actual = run_both(dup, grids)
        assert_bitwise(expected, actual)
        assert dup.kernel.instance is dup
    assert k.c == 2.0 and k.kernel.instance is k


class _Smooth(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            s = u[x] * 0.5
            for y in u.neighbors(x, 1):
                s = s + u[y] * 0.125
            out[x] = s


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_library_without_the_kernels_function_falls_back_with_the_reason(tmp_path,
                                                                          monkeypatch):
    """A compiler wrapper that builds something else into ``-o`` "succeeded", and the
    kernel's first call raised ctypes' bare AttributeError (undefined symbol), in every later
    process too. The kernel now runs in Python, the warning naming the missing function."""
    other = tmp_path / "other.c"
    other.write_text("int unrelated(void) { return 0; }\n")
    wrapper = tmp_path / "wrong-cc"
    wrapper.write_text("#!/bin/sh\n"
                       'case "$*" in *probe*|--version) exec gcc "$@";; esac\n'
                       'out=; prev=; for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done\n'
                       f'exec gcc -fPIC -shared -o "$out" {other}\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("ASP_CC", str(wrapper))
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    k = _Smooth()
    grids = make_grids((30, 40), 1, seed=2)
    ref = clone_grids(grids)
    k.pure_python(*ref)
    with pytest.warns(SpecializationWarning, match="has no function"):
        k.kernel(*grids)
    assert_bitwise(ref[-1].data, grids[-1].data)


# -- a subclass's kernel calling super().kernel(...) -------------------------------------------

class _ScaledBase(StencilKernel):
    alpha = 2.0

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * self.alpha


class _ShiftedDerived(_ScaledBase):
    def kernel(self, u, out):
        super().kernel(u, out)  # <- expression statement: this kernel runs in Python
        for x in out.interior_points():
            out[x] = out[x] + 1.0


def test_a_super_kernel_call_does_not_replace_the_subclass_kernel():
    """``super().kernel(...)`` (or ``Base.kernel(k, ...)``) reached the base class's descriptor,
    which cached the base's dispatcher as the instance's ``kernel``: from the second call on
    (or after ``pure_python``) ``k.kernel(...)`` ran only the base's kernel, silently. The
    base's dispatcher also keyed on the subclass's attributes, so changing one only the base's
    kernel reads reused the old constant."""
    k = _ShiftedDerived()
    grids = make_grids((5, 6), 1, seed=2)
    with pytest.warns(SpecializationWarning, match="expression statement"):
        run_both(k, grids)
    for alpha in (2.0, 2.0, 3.5):
        k.alpha = alpha
        expected, actual = run_both(k, grids)
        assert_bitwise(expected, actual)
        assert k.kernel.name == "_ShiftedDerived.kernel"
    # the base's kernel called explicitly on the subclass instance: the base's alone
    ref, test = clone_grids(grids), clone_grids(grids)
    _ScaledBase.kernel.func(k, *ref)
    _ScaledBase.kernel(k, *test)
    assert_bitwise(ref[-1].data, test[-1].data)
    expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)


class _DoublingMixin:   # no StencilKernel: its kernel reached the class as a plain method
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 2.0


def _tripling(self, u, out):
    for x in out.interior_points():
        out[x] = u[x] * 3.0 + 1.0


def test_a_kernel_from_a_mixin_specialises():
    """A kernel a mixin that is no StencilKernel gives ran as a plain method: in Python with
    no warning, and ``iterate`` failed with AttributeError ('function' object has no
    attribute 'tuned')."""
    from asp_core import Dispatcher

    class MixedIn(_DoublingMixin, StencilKernel):
        pass

    k = MixedIn()
    assert isinstance(k.kernel, Dispatcher)
    grids = make_grids((6, 7), 1, seed=3)
    expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)
    np.testing.assert_array_equal(actual[1:-1, 1:-1], grids[0].data[1:-1, 1:-1] * 2.0)
    assert_specialised(k)     # not run as a plain method
    u, out = clone_grids(grids)
    result = k.iterate(u, out, steps=3)
    ref = clone_grids(grids)
    for _ in range(3):
        k.pure_python(*ref)
        ref[0], ref[1] = ref[1], ref[0]
    assert_bitwise(ref[0].data, result.data)


def test_a_kernel_set_on_the_class_later_runs_as_python_and_iterates():
    """``K.kernel = f`` after the class statement: f is what Python calls, so a new instance
    runs it (in Python, as the guide says: the class's parse and keys follow the kernel the
    class statement defined), and ``iterate`` failed on it with AttributeError."""
    class Replaced(StencilKernel):
        alpha = 2.0

        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = u[x] * self.alpha

    old = Replaced()
    old.kernel(*make_grids((6, 7), 1, seed=1))
    Replaced.kernel = _tripling
    k = Replaced()
    grids = make_grids((6, 7), 1, seed=3)
    u, out = clone_grids(grids)
    k.kernel(u, out)
    np.testing.assert_array_equal(out.data[1:-1, 1:-1], grids[0].data[1:-1, 1:-1] * 3.0 + 1.0)
    u, out = clone_grids(grids)
    result = k.iterate(u, out, steps=3)
    ref = clone_grids(grids)
    for _ in range(3):
        _tripling(k, *ref)
        ref[0], ref[1] = ref[1], ref[0]
    assert_bitwise(ref[0].data, result.data)
    g = make_grids((6, 7), 1, seed=4)   # an instance made before runs f too, as in Python
    old.kernel(*g)
    np.testing.assert_array_equal(g[1].data[1:-1, 1:-1], g[0].data[1:-1, 1:-1] * 3.0 + 1.0)


def test_iterate_runs_a_callable_set_on_the_instance():
    """``k.kernel = f`` on the instance: its calls run f, and ``iterate`` failed on it."""
    class Replaced(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = u[x] * 2.0

    k = Replaced()
    calls = []

    def by_hand(u, out):
        calls.append(1)
        out.data[...] = u.data + 1.0
    k.kernel = by_hand
    u, out = make_grids((5, 5), 1, seed=5)
    u.data[...] = np.arange(25.0).reshape(5, 5)
    assert np.array_equal(k.iterate(u, out, steps=4).data, np.arange(25.0).reshape(5, 5) + 4)
    assert len(calls) == 4


# -- grids whose class replaces a DSL method --------------------------------------------------

class _ShorterInterior(StencilGrid):
    def interior_points(self):
        g = self.ghost_depth
        return itertools.product(*(range(g, n - g - 1) for n in self.shape))


class _DoubledReads(StencilGrid):
    def __getitem__(self, x):
        return self.data[x] * 2.0


class _ExtraNeighbour(StencilGrid):
    def neighbors(self, x, id):  # noqa: A002 (the paper's API)
        yield from super().neighbors(x, id)
        yield tuple(x)


class _HalvedWrites(StencilGrid):
    def __setitem__(self, x, value):
        self.data[x] = value * 0.5


class _Clamped(StencilGrid):
    def nearest_interior(self, x):
        return tuple(self.ghost_depth for _ in x)


class _LapBorder(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            acc = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                acc = acc + u[y]
            out[x] = acc
        for x in out.border_points():
            out[x] = u[u.nearest_interior(x)]


def _as(cls, grids):
    out = []
    for g in grids:
        c = cls(g.shape)
        c.data[...] = g.data
        out.append(c)
    return out


@pytest.mark.parametrize("cls", [_ShorterInterior, _DoubledReads, _ExtraNeighbour, _HalvedWrites,
                                 _Clamped])
def test_a_grid_class_replacing_a_dsl_method_runs_the_kernel_in_python(cls):
    """Compiled code builds in StencilGrid's point loops, neighbours, clamp, reads and writes
    and never calls them: a subclass replacing one got StencilGrid's results, silently (even
    after the kernel had run on plain grids, whose specialisation it reused)."""
    k = _LapBorder()
    plain = make_grids((6, 7), 1, seed=3)
    expected, actual = run_both(k, plain)   # compiled for plain grids first
    assert_bitwise(expected, actual)
    ref, test = _as(cls, plain), _as(cls, plain)
    k.pure_python(*ref)
    with pytest.warns(SpecializationWarning, match="is not StencilGrid's"):
        k.kernel(*test)
    assert_bitwise(ref[-1].data, test[-1].data)
    expected, actual = run_both(k, plain)   # plain grids still run the compiled code
    assert_bitwise(expected, actual)


def test_a_dsl_method_assigned_on_a_grid_instance_runs_the_kernel_in_python():
    k = _LapBorder()
    grids = make_grids((6, 7), 1, seed=4)
    run_both(k, grids)
    ref, test = clone_grids(grids), clone_grids(grids)
    for g in (ref[-1], test[-1]):
        g.interior_points = lambda: iter([(1, 1), (2, 3)])
    k.pure_python(*ref)
    with pytest.warns(SpecializationWarning, match="interior_points"):
        k.kernel(*test)
    assert_bitwise(ref[-1].data, test[-1].data)


class _NotValue(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = not u[x]


def test_the_fallback_warning_names_the_unary_operator():
    """``not u[x]`` outside a test was reported as "unary operator 'n'"."""
    with pytest.warns(SpecializationWarning, match="unary operator 'not' here"):
        run_both(_NotValue(), make_grids((4, 5), 1, seed=1))


def test_a_broken_compiler_is_named_once_in_the_platform_s_reason(monkeypatch, tmp_path):
    """The OpenMP platform's reason read "no C compiler: no c compiler: $ASP_CC=..." for a
    compiler that is not there: the toolchain's message says so already."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "stencil:openmp")
    monkeypatch.setenv("ASP_MODE", "strict")
    for cc, says in ((str(tmp_path / "no-such-cc"), "cannot run here: no c compiler: "),
                     ("/bin/true", "cannot run here: no C compiler: ASP_CC='/bin/true' is not "
                                   "a working c compiler")):
        monkeypatch.setenv("ASP_CC", cc)
        with pytest.raises(Exception) as raised:
            _Smooth().kernel(*make_grids((30, 40), 1, seed=2))
        assert says in str(raised.value)
        assert "no C compiler: no c compiler" not in str(raised.value)

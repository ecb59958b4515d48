"""What Asp keeps for a kernel object is that object's alone: in its own ``__dict__`` (never in
a table compared with ``==``), used by no other object a copy of the ``__dict__`` made, and
freed with it."""

from __future__ import annotations

import copy
import gc
import os
import weakref

import numpy as np
import pytest

from pytest_asp import requires_compiler
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.temporal import runner


class Scale(StencilKernel):
    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def __copy__(self) -> Scale:   # the textbook shallow copy
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * self.alpha


def _value(k: StencilKernel) -> float:
    u, out = StencilGrid([4, 4]), StencilGrid([4, 4])
    u.data[:] = 1.0
    k.kernel(u, out)
    return float(out.data[1, 1])


@requires_compiler
def test_a_copy_of_the_dict_runs_with_its_own_attributes(monkeypatch):
    """A copy made with ``new.__dict__.update(self.__dict__)`` after the first call ran the
    original's dispatcher, bound to the original: its results were the original's."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    a = Scale(2.0)
    assert _value(a) == 2.0
    b = copy.copy(a)
    b.alpha = 3.0
    assert _value(b) == 3.0 and _value(a) == 2.0
    c = Scale(5.0)
    vars(c).update(vars(a))   # the other way to copy the attributes
    assert _value(c) == 2.0 and c.kernel is not a.kernel


class Valued(StencilKernel):
    """Kernels as value objects: equal when their parameters are."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Valued) and self.alpha == other.alpha

    def __hash__(self) -> int:
        return hash(self.alpha)


class Blur(Valued):
    def kernel(self, u, out):
        for x in out.interior_points():
            acc = u[x] * self.alpha
            for y in u.neighbors(x, 1):
                acc = acc + u[y]
            out[x] = acc * 0.2


class Sharpen(Valued):
    def kernel(self, u, out):
        for x in out.interior_points():
            acc = u[x] * 5.0
            for y in u.neighbors(x, 1):
                acc = acc - u[y] * self.alpha
            out[x] = acc


def _grids(n: int = 12) -> tuple[StencilGrid, StencilGrid]:
    u, out = StencilGrid([n, n, n]), StencilGrid([n, n, n])
    u.data[:] = np.random.default_rng(0).random((n, n, n))
    return u, out


@requires_compiler
def test_kernels_that_compare_equal_keep_their_own_blocked_code(monkeypatch):
    """Blocked variants were kept in a WeakKeyDictionary keyed by the kernel object: two kernels
    of different classes comparing equal shared them, and ``Sharpen.iterate`` ran Blur's."""
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    for k in (Blur(0.5), Sharpen(0.5)):
        u, out = _grids()
        got = k.iterate(u, out, steps=6).data.copy()
        assert runner.iterators(k), "the blocked variants were not built"
        u, out = _grids()
        for _ in range(6):
            k.pure_python(u, out)
            u, out = out, u
        np.testing.assert_array_equal(got, u.data)


@requires_compiler
@pytest.mark.parametrize("temporal", ["on", "off"])
def test_a_kernel_whose_iterate_built_blocked_code_is_freed(monkeypatch, temporal):
    """The blocked variants hold their kernel (through their context), and the table keyed
    weakly by the kernel kept them, so the kernel lived as long as the process."""
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", temporal)
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    refs = []
    for _ in range(2):
        k = Blur(0.5)
        k.iterate(*_grids(), steps=6)
        assert bool(runner.iterators(k)) == (temporal == "on")
        refs.append(weakref.ref(k))
        del k
    gc.collect()
    assert [r() for r in refs] == [None, None]


class Doubling(StencilKernel):
    factor = 2.0

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * self.factor


@requires_compiler
def test_a_new_object_per_call_lowers_each_key_once(monkeypatch):
    """``Doubling().kernel(u, out)`` at every step (the Asp paper's way of calling) ran the
    frontend, the passes and the lowering at every call, 12 ms a call of a kernel running in
    microseconds: the objects of one class now share what phases 1-4 made of a key, and each
    binds its own code (its attributes stay its own)."""
    from asp_stencil.frontend import StencilFrontend

    parsed = []
    parse = StencilFrontend.parse

    def counting(self, ctx):
        parsed.append(ctx.key)
        return parse(self, ctx)

    monkeypatch.setattr(StencilFrontend, "parse", counting)
    monkeypatch.setenv("ASP_AUTOTUNE", "off")

    class Fresh(Doubling):   # a class of this test's own: no other test lowered it
        pass

    u, out = StencilGrid([6, 6]), StencilGrid([6, 6])
    u.data[:] = np.arange(36.0).reshape(6, 6)
    for factor in (2.0, 2.0, 3.0, 2.0, 3.0):
        k = Fresh()
        k.factor = factor
        k.kernel(u, out)
        np.testing.assert_array_equal(out.data[1:-1, 1:-1], u.data[1:-1, 1:-1] * factor)
        events = [e for e, _ in k.kernel.last_context.events]
        assert "dast" in events and "variants" in events   # asp explain shows every phase
    assert len(parsed) == len(set(parsed)) == 2
    monkeypatch.setenv("ASP_DISABLE_PASSES", "stencil:cse")   # a setting the phases read
    Fresh().kernel(u, out)
    assert len(parsed) == 3


class Adding(StencilKernel):
    def __init__(self, a: float) -> None:
        self.a = a

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] + self.a


@requires_compiler
def test_objects_with_nans_of_either_sign_keep_their_own(monkeypatch):
    """A float's key was its ``hex()``, ``'nan'`` for both signs: an object given -nan ran the
    code compiled for another's nan (shared since objects of a class share their lowering).
    A NaN's payload, and a signalling NaN (quieted by the addition, payload kept), reach the
    result as in Python: the C constant was the default NaN."""
    import math
    import struct

    def bits(text: str) -> float:
        return struct.unpack(">d", bytes.fromhex(text))[0]

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    for a in (math.nan, -math.nan, math.nan, bits("7ff0000000000001"), bits("fff8000000000abc")):
        u, out = StencilGrid([4, 4]), StencilGrid([4, 4])
        kernel = Adding(a)
        kernel.kernel(u, out)
        ref = StencilGrid([4, 4])
        with np.errstate(invalid="ignore"):
            kernel.pure_python(u, ref)
        assert np.isnan(out.data[1, 1])
        assert out.data[1, 1].tobytes() == ref.data[1, 1].tobytes()
    # a float32 one stored as it is keeps its kind too (float() made it quiet)
    signalling = np.array(0x7F800001, np.uint32).view(np.float32)[()]
    u, out, ref = (StencilGrid([4, 4], dtype=np.float32) for _ in range(3))
    Storing(signalling).kernel(u, out)
    Storing(signalling).pure_python(u, ref)
    assert out.data[1, 1].tobytes() == ref.data[1, 1].tobytes() == signalling.tobytes()


class Storing(StencilKernel):
    def __init__(self, a: float) -> None:
        self.a = a

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = self.a


@requires_compiler
def test_a_kernel_replaced_on_the_class_is_keyed_by_what_it_reads(monkeypatch):
    """``K.kernel = KernelMethod(g)`` after K's first call: the names the key follows were
    parsed once per class, so ``self.b``, which ``g`` reads, was in no key and a new object
    ran the code compiled for another's ``b``."""
    from asp_stencil.kernel import KernelMethod

    monkeypatch.setenv("ASP_AUTOTUNE", "off")

    class K(StencilKernel):
        def __init__(self, a: float, b: float) -> None:
            self.a, self.b = a, b

        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = u[x] * self.a

    def g(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * self.b

    assert _value(K(2.0, 0.0)) == 2.0
    desc = KernelMethod(g)
    desc.attr, desc.owner = "kernel", K
    monkeypatch.setattr(K, "kernel", desc)
    assert _value(K(2.0, 3.0)) == 3.0 and _value(K(2.0, 5.0)) == 5.0


@requires_compiler
def test_a_second_object_takes_a_changing_time_as_a_parameter_as_the_first(monkeypatch):
    """The values a key follows were noted by the frontend, which a second object of the class
    does not run for a key the first lowered: its time compiled twice more before it became
    a parameter."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")

    class Fresh(Doubling):
        pass

    keys = []
    for _ in range(2):
        k = Fresh()
        for factor in (0.5, 1.5, 2.5, 3.5):
            k.factor = factor
            u, out = StencilGrid([4, 4]), StencilGrid([4, 4])
            u.data[:] = 1.0
            k.kernel(u, out)
            assert out.data[1, 1] == factor
        keys.append(len(k.kernel.keys()))
    assert keys == [3, 3]


@requires_compiler
def test_a_copy_of_the_dict_counts_its_own_values_and_keeps_a_kernel_set_on_it(monkeypatch):
    """Copies made by copying the ``__dict__`` shared the original's count of values (five
    copies given one value each warned that the original's took five), and a ``kernel`` set
    on the object (``k.kernel = f``, kept as Python keeps it) was dropped by copy and pickle."""
    import pickle
    import warnings

    from asp_core import PerformanceWarning

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    a = Scale(0)
    _value(a)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        for n in range(1, 6):
            b = copy.copy(a)
            b.alpha = n
            assert _value(b) == n
    a.kernel = lambda u, out: out.data.fill(7.0)
    for c in (copy.copy(a), copy.deepcopy(a)):
        u, out = StencilGrid([4, 4]), StencilGrid([4, 4])
        c.kernel(u, out)
        assert out.data[1, 1] == 7.0
    with pytest.raises((pickle.PicklingError, AttributeError)):   # a lambda, as in Python
        pickle.dumps(a)
    a.kernel = None
    del a.kernel
    assert _value(a) == 0.0


@requires_compiler
def test_a_platform_refused_for_want_of_a_compiler_is_asked_again_once_path_has_one(
        monkeypatch, tmp_path):
    """What phases 1-4 made of a key is shared by the objects of its class: ``PATH``, which
    the compiled platform's check reads, was not in what it is shared under, so an object
    made after ``PATH`` was fixed ran on the platform chosen without a compiler."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)

    class Fresh(Doubling):
        pass

    def platform() -> str:
        k = Fresh()
        u, out = StencilGrid([4, 4]), StencilGrid([4, 4])
        k.kernel(u, out)
        return k.kernel.last_context.decision("platform_selection").choice

    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path))   # no compiler there
    monkeypatch.delenv("ASP_CC", raising=False)
    assert platform() != "openmp"
    monkeypatch.setenv("PATH", path)
    assert platform() == "openmp"


@requires_compiler
def test_grids_asked_about_for_blocking_are_not_kept(monkeypatch, tmp_path):
    """Whether the code cache holds the blocked library is asked by lowering it; the lowered
    variants were kept for a build that may never come, with the call's grids."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    k = Blur(0.5)
    u, out = _grids()
    assert not runner.build_is_cached(k, (u, out))
    refs = [weakref.ref(u.data), weakref.ref(out.data)]
    del u, out
    gc.collect()
    assert all(r() is None for r in refs)

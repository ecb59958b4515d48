"""End to end through all five phases: random element-wise expressions compiled to C agree
bitwise with Python evaluating the same function (fully parenthesised printing and
``-ffp-contract=off`` keep IEEE evaluation order), and class-based kernels pass their instance."""

from __future__ import annotations

import importlib.util
import itertools
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asp_core import Dispatcher
from pytest_asp import requires_compiler

_counter = itertools.count()

literals = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False).map(repr)
leaves = st.one_of(st.sampled_from(["x", "y", "z"]), literals)


def _combine(children):
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/"]), children).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})")
    unary = children.map(lambda c: f"(-{c})")
    absolute = children.map(lambda c: f"abs({c})")
    return st.one_of(binary, unary, absolute)


expressions = st.recursive(leaves, _combine, max_leaves=12)


def _load(tmp_path, expr: str):
    name = f"asp_e2e_kernel_{next(_counter)}"
    path = tmp_path / f"{name}.py"
    path.write_text(f"def kernel(x, y, z):\n    return {expr}\n")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kernel


@requires_compiler
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(expr=expressions)
def test_random_expressions_bitwise_equal_to_python(elementwise, tmp_path, monkeypatch, expr):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    kernel = _load(tmp_path, expr)
    rng = np.random.default_rng(len(expr))
    args = [rng.standard_normal(97) * 10 for _ in range(3)]
    args[1][::7] = 0.0  # divisions by zero give inf/nan identically in C and NumPy
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: this is inside the DSL
        got = Dispatcher("elementwise", kernel)(*args)
        want = kernel(*args) * np.ones(97)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), expr
    assert np.array_equal(got[~nan].view(np.uint64), want[~nan].view(np.uint64)), expr


class Scaled:
    """A class-based kernel: the signature sees the instance, the frontend the method."""

    def __init__(self, factor):
        self.factor = factor
        self.seen = []
        self._d = Dispatcher("ew-instance", self.kernel, instance=self, name="Scaled")

    def kernel(self, a):
        return a * 2.0

    def __call__(self, a):
        return self._d(a)


def test_instance_reaches_the_signature(elementwise, derived, fresh_cache, monkeypatch):
    from tests.specializers import elementwise as ew

    def signature(args, kwargs, instance):
        instance.seen.append(len(args))
        return ew.signature(args, kwargs, None)

    name = derived("ew-instance", signature=signature,
                   drop=(("frontend", "python-ast"),),
                   replace={})
    from asp_core import plugins

    # a frontend for methods: drop ``self`` and parse like the element-wise one
    class MethodFrontend(ew.ElementwiseFrontend):
        def parse(self, ctx):
            fn = ctx.tree.body[0]
            fn.args.args = fn.args.args[1:]
            return super().parse(ctx)

    class Extra:
        from asp_core import hookimpl

        @hookimpl
        def asp_register_specializers(self, register):
            register.component(specializer=name, phase="frontend", name="method",
                               obj=MethodFrontend())

    extra = plugins.register_plugin(Extra(), name="test-method-frontend")
    try:
        monkeypatch.setenv("ASP_AUTOTUNE", "off")
        k = Scaled(3.0)
        a = np.arange(4.0)
        np.testing.assert_array_equal(k(a), a * 2.0)
        np.testing.assert_array_equal(k(a), a * 2.0)
        assert k.seen == [1, 1]
        assert k._d.last_context.instance is k
        assert k._d.last_context.kernel_name == "Scaled"
    finally:
        plugins.unregister_plugin(extra)

"""Helpers for differential tests of stencil kernels (also used by the CUDA/blocking backends).

``run_both`` runs a kernel through its specialised entry point and through its pure-Python
semantics on identical copies of the grids; ``assert_bitwise`` compares results bit for bit
(NaNs compare equal to NaNs). ``kernel_sources`` is a Hypothesis strategy producing random
kernels of the whole DSL as source text; ``load_kernel`` turns source text into a class whose
source ``inspect`` can retrieve (so the frontend can parse it).
"""

from __future__ import annotations

import itertools
import linecache
import math
from typing import Any, Sequence

import numpy as np

from .grid import StencilGrid

__all__ = ["make_grids", "clone_grids", "run_both", "assert_bitwise", "assert_specialised", "load_kernel",
           "kernel_sources", "breadth_kernel_sources"]

_counter = itertools.count()


def make_grids(shape: Sequence[int], n_inputs: int = 1, *, ghost_depth: int = 1, seed: int = 0,
               neighbor_definition: Sequence[Sequence[tuple[int, ...]]] | None = None,
               special: bool = False, dtypes: Sequence[Any] | None = None,
               periodic: bool = False) -> list[StencilGrid]:
    """``n_inputs`` input grids and an output grid, all filled with random numbers.

    The output starts random too, so a kernel that reads it, or a border it must not touch, is
    checked as well. ``special`` sprinkles zeros, negative zeros, infinities and NaNs (float
    grids). ``dtypes``: one dtype per grid (default float64); integer grids hold -20..20
    (0..40 unsigned).
    """
    rng = np.random.default_rng(seed)
    grids = []
    for i in range(n_inputs + 1):
        dtype = np.dtype(dtypes[i] if dtypes is not None else np.float64)
        g = StencilGrid(shape, dtype=dtype, ghost_depth=ghost_depth, periodic=periodic)
        if dtype.kind in "iu":
            g.data[...] = rng.integers(0 if dtype.kind == "u" else -20, 20 if dtype.kind == "i"
                                       else 40, size=g.shape)
        else:
            g.data[...] = rng.standard_normal(g.shape) * 3
        if special and dtype.kind == "f":
            flat = g.data.reshape(-1)
            for value in (0.0, -0.0, np.inf, -np.inf, np.nan, 2.0, -2.0):
                idx = rng.integers(0, flat.size, size=max(1, flat.size // 40))
                flat[idx] = value
        if neighbor_definition is not None:
            g.neighbor_definition = [list(map(tuple, ids)) for ids in neighbor_definition]
        grids.append(g)
    return grids


def clone_grids(grids: Sequence[StencilGrid]) -> list[StencilGrid]:
    out = []
    for g in grids:
        c = StencilGrid(g.shape, dtype=g.data.dtype, ghost_depth=g.ghost_depth,
                        periodic=getattr(g, "periodic", False))
        c.data[...] = g.data
        c.neighbor_definition = [list(ids) for ids in g.neighbor_definition]
        out.append(c)
    return out


def run_both(kernel: Any, grids: Sequence[StencilGrid]) -> tuple[np.ndarray, np.ndarray]:
    """(pure-Python result, specialised result) of ``kernel`` on copies of ``grids``; every
    other grid (inputs, further outputs, periodic ghosts) must agree as well."""
    ref = clone_grids(grids)
    test = clone_grids(grids)
    with np.errstate(all="ignore"):
        kernel.pure_python(*ref)
        kernel.kernel(*test)
    for i, (a, b) in enumerate(zip(ref[:-1], test[:-1])):
        assert_bitwise(a.data, b.data, what=f"grid {i + 1} differs from pure Python")
    return ref[-1].data, test[-1].data


def assert_specialised(kernel: Any) -> None:
    """The kernel's dispatcher bound compiled code (not the pure-Python fallback) for every key."""
    d = kernel.kernel
    keys = d.keys()
    assert keys, "the kernel was never called through its dispatcher"
    for key in keys:
        assert d.tuning(key) is not None or d.tuned(key) is not None, \
            f"key {key!r} fell back to pure Python"


def assert_bitwise(expected: np.ndarray, actual: np.ndarray, what: str = "results differ") -> None:
    """Bit-for-bit equality of two float arrays (any NaN equals any NaN)."""
    assert expected.shape == actual.shape, (expected.shape, actual.shape)
    e = np.ascontiguousarray(expected)
    a = np.ascontiguousarray(actual)
    assert e.dtype == a.dtype, (e.dtype, a.dtype)
    if e.dtype.kind != "f":
        same = e == a
    else:
        iview = np.uint64 if e.dtype.itemsize == 8 else np.uint32
        same = (e.view(iview) == a.view(iview)) | (np.isnan(e) & np.isnan(a))
    if not same.all():
        bad = np.argwhere(~same)
        i = tuple(bad[0])
        raise AssertionError(f"{what}: {len(bad)} of {same.size} points differ; first at {i}: "
                             f"expected {e[i]!r}, got {a[i]!r}")


def load_kernel(source: str, class_name: str = "K", namespace: dict[str, Any] | None = None
                ) -> type:
    """Execute ``source`` (defining ``class_name``) under a unique pseudo-file name registered
    with ``linecache``, so ``inspect.getsource`` works on the kernel."""
    filename = f"<asp-stencil-generated-{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    import stencil_kernel

    ns: dict[str, Any] = {"__name__": f"asp_stencil_generated_{next(_counter)}", "math": math,
                          "StencilKernel": stencil_kernel.StencilKernel,
                          "distance": stencil_kernel.distance}
    ns.update(namespace or {})
    exec(compile(source, filename, "exec"), ns)  # noqa: S102 - test helper
    return ns[class_name]


def _function_call(draw: Any, fn: str, sub: Any, exp_cap: str) -> str:
    """A call of DSL function ``fn`` on random subexpressions ``sub()``, arguments kept in the
    function's domain (Python raises where C returns NaN)."""
    from hypothesis import strategies as st

    if fn == "abs":
        return f"abs({sub()})"
    if fn in ("min", "max"):
        n = draw(st.integers(2, 3))
        return f"{fn}({', '.join(sub() for _ in range(n))})"
    if fn == "sqrt":
        return f"math.sqrt(abs({sub()}))"
    if fn == "exp":
        return f"math.exp(min({sub()}, {exp_cap}))"
    if fn == "log":
        return f"math.log(abs({sub()}) + 1.0)"
    if fn == "pow":
        return f"math.pow(abs({sub()}) + 0.5, {draw(st.sampled_from(['2', '0.5', '-1.5', '3']))})"
    return f"math.{fn}(min(max({sub()}, -1e6), 1e6))"


def kernel_sources(max_depth: int = 3) -> Any:
    """Hypothesis strategy: ``(source, dim, n_inputs, ghost_depth, custom_offsets)``.

    Kernels use the whole DSL: interior and border loops, neighbour loops over the default ids
    and a custom id, reads of every grid (the output too, making some loops Gauss–Seidel),
    locals, ``= += -= *=``, literals, attributes ``self.alpha``/``self.k``, ``+ - * / ** //``,
    unary minus, ``abs/min/max``, ``math.sqrt/exp/log/sin/cos`` (arguments kept in each
    function's domain, as Python raises where C returns NaN), ``distance`` and conditional
    expressions. Literal divisors are never zero (Python raises on ``1 / 0``).
    """
    from hypothesis import strategies as st

    @st.composite
    def build(draw: Any) -> tuple[str, int, int, int, list[tuple[int, ...]]]:
        dim = draw(st.integers(1, 3))
        ghost = draw(st.integers(1, 2))
        n_inputs = draw(st.integers(1, 2))
        custom = draw(st.lists(st.tuples(*[st.integers(-ghost, ghost)] * dim), min_size=1,
                               max_size=4))
        inputs = [f"a{i}" for i in range(n_inputs)]
        grids = inputs + ["out"]
        lits = st.sampled_from(["2", "3", "0.5", "1.5", "-1.25", "0.1", "7", "1e-3", "-4"])

        def expr(locs: list[str], point_vars: list[str], depth: int) -> str:
            leaf = st.one_of(
                lits, st.just("self.alpha"), st.just("self.k"),
                st.sampled_from([f"{g}[{p}]" for g in grids for p in point_vars]),
                *( [st.sampled_from(locs)] if locs else []),
                *( [st.just(f"distance({point_vars[0]}, {point_vars[-1]})")]
                   if len(point_vars) > 1 else []))
            if depth <= 0:
                return draw(leaf)
            kind = draw(st.sampled_from(["leaf", "leaf", "bin", "bin", "bin", "neg", "call",
                                         "cond", "pow", "div"]))
            sub = lambda: expr(locs, point_vars, depth - 1)  # noqa: E731
            if kind == "leaf":
                return draw(leaf)
            if kind == "bin":
                return f"({sub()} {draw(st.sampled_from(['+', '-', '*']))} {sub()})"
            if kind == "div":
                op = draw(st.sampled_from(["/", "//"]))
                right = draw(st.one_of(lits, st.just("__sub__")))
                return f"({sub()} {op} {sub() if right == '__sub__' else right})"
            if kind == "pow":
                return f"({sub()} ** {draw(st.sampled_from(['2', '3', '0.5', '-1']))})"
            if kind == "neg":
                return f"(-{sub()})"
            if kind == "cond":
                cmp = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
                return f"({sub()} if {sub()} {cmp} {sub()} else {sub()})"
            fn = draw(st.sampled_from(["abs", "min", "max", "sqrt", "exp", "log", "sin", "cos"]))
            return _function_call(draw, fn, sub, exp_cap="50.0")

        lines = ["class K(StencilKernel):",
                 "    alpha = 0.75",
                 "    k = 3",
                 f"    def kernel(self, {', '.join(grids)}):",
                 "        c0 = self.alpha * 2"]
        n_loops = draw(st.integers(1, 2))
        for li in range(n_loops):
            region = draw(st.sampled_from(["interior", "interior", "border"]))
            pad = "            "
            lines.append(f"        for x in out.{region}_points():")
            locs = ["c0"]
            n_stmts = draw(st.integers(1, 4))
            for si in range(n_stmts):
                kind = draw(st.sampled_from(["local", "store", "aug", "nbr"]))
                if kind == "nbr" and region == "interior":
                    nid = draw(st.sampled_from([0, 1, 2]))
                    src = draw(st.sampled_from(grids))
                    acc = f"s{li}_{si}"
                    lines.append(f"{pad}{acc} = {expr(locs, ['x'], 1)}")
                    lines.append(f"{pad}for y in {src}.neighbors(x, {nid}):")
                    inner = locs + [acc]
                    op = draw(st.sampled_from(["+", "-", "*"]))
                    lines.append(f"{pad}    {acc} = {acc} {op} {expr(inner, ['x', 'y'], max_depth - 1)}")
                    if draw(st.booleans()):
                        lines.append(f"{pad}    out[x] += {expr(inner, ['x', 'y'], 1)}")
                    locs = inner
                elif kind == "local":
                    name = f"t{li}_{si}"
                    lines.append(f"{pad}{name} = {expr(locs, ['x'], max_depth)}")
                    locs = locs + [name]
                elif kind == "aug":
                    op = draw(st.sampled_from(["+=", "-=", "*="]))
                    lines.append(f"{pad}out[x] {op} {expr(locs, ['x'], max_depth)}")
                else:
                    lines.append(f"{pad}out[x] = {expr(locs, ['x'], max_depth)}")
        source = "\n".join(lines) + "\n"
        return source, dim, n_inputs, ghost, custom

    return build()


def breadth_kernel_sources(max_depth: int = 3) -> Any:
    """Hypothesis strategy for the DSL's breadth (issue 15):
    ``(source, dim, dtypes, ghost_depth, custom_offsets, periodic)``.

    Beyond :func:`kernel_sources`: grids of their own dtypes (float64, float32, and int32/int8
    inputs read through ``m[x] * 0.5``-like uses), ``if``/``elif``/``else`` blocks with
    temporaries assigned in every branch and stores in some, tests with comparisons,
    ``and``/``or``/``not`` and chained comparisons, ``math.pow`` and ``**`` with integer and
    float exponents, border loops with Dirichlet values and Neumann copies
    (``g[g.nearest_interior(x)]``), one or two output grids, periodic grids; and, one kernel in
    four, integer kernels (int8/16/32/64, uint8/16/32 grids) computing ``+ - * // %``, negation,
    ``abs``/``min``/``max``, conditionals and neighbour sums in the grids' integer type.
    """
    from hypothesis import strategies as st

    @st.composite
    def build(draw: Any) -> tuple:
        dim = draw(st.integers(1, 3))
        ghost = draw(st.integers(1, 2))
        n_inputs = draw(st.integers(1, 2))
        n_outputs = draw(st.integers(1, 2))
        if draw(st.integers(0, 3)) == 0:
            return draw(_integer_kernel(dim, ghost, max_depth))
        float_dt = draw(st.sampled_from(["f8", "f4", "mixed"]))

        def fdt() -> str:
            return draw(st.sampled_from(["f8", "f4"])) if float_dt == "mixed" else float_dt

        in_dts = [draw(st.sampled_from([fdt(), fdt(), fdt(), "i4", "i1"])) for _ in range(n_inputs)]
        if all(d in ("i4", "i1") for d in in_dts):
            in_dts[0] = fdt()
        out_dts = [fdt() for _ in range(n_outputs)]
        dtypes = in_dts + out_dts
        names = [f"a{i}" for i in range(n_inputs)] + [f"o{i}" for i in range(n_outputs - 1)] + ["out"]
        kinds = dict(zip(names, dtypes))
        floats = [g for g in names if not kinds[g].startswith("i")]
        ints = [g for g in names if kinds[g].startswith("i")]
        outputs = names[n_inputs:]
        custom = draw(st.lists(st.tuples(*[st.integers(-ghost, ghost)] * dim), min_size=1,
                               max_size=3))
        periodic = draw(st.booleans())
        lits = st.sampled_from(["2", "3", "0.5", "1.5", "-1.25", "0.1", "7", "-4", "0"])

        def leaf(locs: list[str], pts: list[str], region: str) -> str:
            options = [lits, st.just("self.alpha"), st.just("self.k"),
                       st.sampled_from([f"{g}[{p}]" for g in floats for p in pts])]
            if ints:
                options.append(st.sampled_from([f"({g}[{p}] * 0.5)" for g in ints for p in pts]
                                               + [f"({g}[{p}] / 3)" for g in ints for p in pts]))
            if region == "border":
                options.append(st.sampled_from([f"{g}[{g}.nearest_interior(x)]" for g in floats]))
            if locs:
                options.append(st.sampled_from(locs))
            return draw(st.one_of(*options))

        def cond(locs: list[str], pts: list[str], region: str, depth: int) -> str:
            kind = draw(st.sampled_from(["cmp", "cmp", "and", "or", "not", "chain", "int"]))
            sub = lambda: expr(locs, pts, region, depth - 1)  # noqa: E731
            op = lambda: draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))  # noqa: E731
            if kind == "cmp":
                return f"{sub()} {op()} {sub()}"
            if kind == "chain":
                return f"{sub()} < {sub()} <= {sub()}"
            if kind == "not":
                return f"not {sub()} {op()} {sub()}"
            if kind == "int" and ints:
                return f"{draw(st.sampled_from(ints))}[x] {op()} {draw(st.sampled_from(['0', '3', '-2']))}"
            joiner = "and" if kind == "and" else "or"
            return f"({sub()} {op()} {sub()} {joiner} {sub()} {op()} {sub()})"

        def expr(locs: list[str], pts: list[str], region: str, depth: int) -> str:
            if depth <= 0:
                return leaf(locs, pts, region)
            kind = draw(st.sampled_from(["leaf", "bin", "bin", "bin", "neg", "call", "cond",
                                         "pow", "div"]))
            sub = lambda: expr(locs, pts, region, depth - 1)  # noqa: E731
            if kind == "leaf":
                return leaf(locs, pts, region)
            if kind == "bin":
                return f"({sub()} {draw(st.sampled_from(['+', '-', '*']))} {sub()})"
            if kind == "div":
                op = draw(st.sampled_from(["/", "/", "//"]))
                return f"({sub()} {op} {draw(st.sampled_from(['2', '0.5', '-3', '1.5']))})"
            if kind == "pow":
                return f"({sub()} ** {draw(st.sampled_from(['2', '3', '0.5', '-1', '1.5']))})"
            if kind == "neg":
                return f"(-{sub()})"
            if kind == "cond":
                return f"({sub()} if {cond(locs, pts, region, depth)} else {sub()})"
            fn = draw(st.sampled_from(["abs", "min", "max", "sqrt", "exp", "log", "sin", "cos",
                                       "pow"]))
            return _function_call(draw, fn, sub, exp_cap="30.0")

        lines = ["class K(StencilKernel):", "    alpha = 0.75", "    k = 3",
                 f"    def kernel(self, {', '.join(names)}):", "        c0 = self.alpha * 2"]
        counter = itertools.count()

        def statements(pad: str, locs: list[str], region: str, depth: int, n: int) -> list[str]:
            out: list[str] = []
            for _ in range(n):
                kind = draw(st.sampled_from(["local", "store", "store", "aug", "nbr", "if"]))
                name = f"t{next(counter)}"
                if kind == "nbr" and region == "interior":
                    src = draw(st.sampled_from(floats))
                    out.append(f"{pad}{name} = {expr(locs, ['x'], region, 1)}")
                    out.append(f"{pad}for y in {src}.neighbors(x, {draw(st.sampled_from([0, 1, 2]))}):")
                    out.append(f"{pad}    {name} = {name} {draw(st.sampled_from(['+', '-', '*']))} "
                               f"{expr(locs + [name], ['x', 'y'], region, max_depth - 1)}")
                    locs.append(name)
                elif kind == "if" and depth > 0:
                    fresh = f"t{next(counter)}"
                    n_branches = draw(st.integers(1, 3))
                    for b in range(n_branches):
                        head = "if" if b == 0 else ("elif" if b < n_branches - 1 or
                                                    draw(st.booleans()) else "else")
                        test = "" if head == "else" else f" {cond(locs, ['x'], region, 2)}"
                        out.append(f"{pad}{head}{test}:")
                        inner = list(locs)
                        out.append(f"{pad}    {fresh} = {expr(inner, ['x'], region, max_depth - 1)}")
                        out += statements(pad + "    ", inner + [fresh], region, depth - 1,
                                          draw(st.integers(0, 2)))
                        if head == "else":
                            break
                    if head == "else":
                        locs.append(fresh)  # assigned on every path
                elif kind == "local":
                    out.append(f"{pad}{name} = {expr(locs, ['x'], region, max_depth)}")
                    locs.append(name)
                else:
                    g = draw(st.sampled_from(outputs))
                    op = "=" if kind == "store" else draw(st.sampled_from(["+=", "-=", "*="]))
                    if kinds[g].startswith("i"):
                        continue
                    out.append(f"{pad}{g}[x] {op} {expr(locs, ['x'], region, max_depth)}")
            return out

        for _ in range(draw(st.integers(1, 2))):
            region = draw(st.sampled_from(["interior", "interior", "border"]))
            lines.append(f"        for x in out.{region}_points():")
            body = statements("            ", ["c0"], region, 1, draw(st.integers(1, 4)))
            lines += body or ["            out[x] = 1.0"]
        source = "\n".join(lines) + "\n"
        return source, dim, tuple(dtypes), ghost, custom, periodic

    return build()


_INT_CODES = ("i1", "i2", "i4", "i8", "u1", "u2", "u4")


def _integer_kernel(dim: int, ghost: int, max_depth: int) -> Any:
    """Strategy: an integer kernel for :func:`breadth_kernel_sources` (same tuple shape).

    Every grid has one integer dtype, and every value the kernel computes has it too (NumPy
    would pick the type of ``m[x] if c else 3`` per value), so integer arithmetic, overflow
    wrap-around, floor division and modulo by zero are what is exercised."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw: Any) -> tuple:
        code = draw(st.sampled_from(_INT_CODES))
        signed = code.startswith("i")
        n_inputs = draw(st.integers(1, 2))
        names = [f"a{i}" for i in range(n_inputs)] + ["out"]
        lits = ["2", "3", "7", "0", "1"] + (["-1", "-3"] if signed else [])
        periodic = draw(st.booleans())
        custom = draw(st.lists(st.tuples(*[st.integers(-ghost, ghost)] * dim), min_size=1,
                               max_size=3))

        def expr(locs: list[str], pts: list[str], depth: int) -> str:
            reads = [f"{g}[{p}]" for g in names for p in pts]
            if depth <= 0:
                return draw(st.sampled_from(reads + locs))
            kind = draw(st.sampled_from(["leaf", "bin", "bin", "lit", "div", "neg", "abs",
                                         "minmax", "cond"]))
            sub = lambda: expr(locs, pts, depth - 1)  # noqa: E731
            if kind == "leaf":
                return draw(st.sampled_from(reads + locs))
            if kind == "bin":
                return f"({sub()} {draw(st.sampled_from(['+', '-', '*', '//', '%']))} {sub()})"
            if kind == "lit":
                return f"({sub()} {draw(st.sampled_from(['+', '-', '*']))} " \
                       f"{draw(st.sampled_from(lits))})"
            if kind == "div":
                return f"({sub()} {draw(st.sampled_from(['//', '%']))} " \
                       f"{draw(st.sampled_from([x for x in lits if x != '0']))})"
            if kind == "neg":
                return f"(-{sub()})"
            if kind == "abs":
                return f"abs({sub()})"
            if kind == "minmax":
                return f"{draw(st.sampled_from(['min', 'max']))}({sub()}, {sub()})"
            cmp = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
            right = draw(st.one_of(st.just(sub()), st.sampled_from(lits)))
            return f"({sub()} if {sub()} {cmp} {right} else {sub()})"

        lines = ["class K(StencilKernel):", "    alpha = 0.75", "    k = 3",
                 f"    def kernel(self, {', '.join(names)}):"]
        counter = itertools.count()
        for _ in range(draw(st.integers(1, 2))):
            region = draw(st.sampled_from(["interior", "interior", "border"]))
            pad = "            "
            lines.append(f"        for x in out.{region}_points():")
            locs: list[str] = []
            for _ in range(draw(st.integers(1, 4))):
                kind = draw(st.sampled_from(["local", "store", "aug", "nbr", "if"]))
                name = f"t{next(counter)}"
                if kind == "nbr" and region == "interior":
                    lines.append(f"{pad}{name} = {expr(locs, ['x'], 1)}")
                    lines.append(f"{pad}for y in {draw(st.sampled_from(names))}.neighbors(x, "
                                 f"{draw(st.sampled_from([0, 1, 2]))}):")
                    lines.append(f"{pad}    {name} = {name} "
                                 f"{draw(st.sampled_from(['+', '-', '*']))} "
                                 f"{expr(locs + [name], ['x', 'y'], max_depth - 1)}")
                    locs.append(name)
                elif kind == "if":
                    cmp = draw(st.sampled_from(["<", ">=", "==", "!="]))
                    lines.append(f"{pad}if {expr(locs, ['x'], 1)} {cmp} "
                                 f"{draw(st.sampled_from(lits))}:")
                    lines.append(f"{pad}    {name} = {expr(locs, ['x'], max_depth - 1)}")
                    lines.append(f"{pad}else:")
                    lines.append(f"{pad}    {name} = {expr(locs, ['x'], max_depth - 1)}")
                    locs.append(name)
                elif kind == "local":
                    lines.append(f"{pad}{name} = {expr(locs, ['x'], max_depth)}")
                    locs.append(name)
                else:
                    op = "=" if kind == "store" else draw(st.sampled_from(["+=", "-=", "*="]))
                    lines.append(f"{pad}out[x] {op} {expr(locs, ['x'], max_depth)}")
            if not any(line.strip().startswith("out[x]") for line in lines[-12:]):
                lines.append(f"{pad}out[x] = {expr(locs, ['x'], 1)}")
        source = "\n".join(lines) + "\n"
        return source, dim, (code,) * len(names), ghost, custom, periodic

    return build()

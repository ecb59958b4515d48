"""Differential testing: compiled stencil kernels against the plugin's own Python execution.

:func:`kernel_cases` and :func:`jacobi_cases` are Hypothesis strategies producing small random
kernels of the documented DSL (1-3 dimensions, ragged shapes from :data:`SIZES`, ghost depths
0-3 and neighbour offsets of radius up to the ghost depth, float32/float64/integer grids,
several inputs and outputs, constants of Python and NumPy scalar types, interior loops,
Dirichlet, Neumann, ``if``-selected and periodic borders, in-place Gauss-Seidel kernels, the
DSL's math functions) as :class:`KernelCase` objects. :func:`compare_call` runs a case under
``ASP_MODE=python`` and compiled (the dispatcher's choice, then every schedule variant) and
checks every grid bit for bit; :func:`compare_iterate` does the same for ``iterate``. A kernel
the compiled path declines must warn once, naming the generated file, a line of the kernel and
a construct the user guide lists (:data:`DOCUMENTED_REFUSALS`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from .grid import StencilGrid, default_neighbor_definition
from .testing import _function_call, assert_bitwise, clone_grids, load_kernel

__all__ = ["SIZES", "KernelCase", "kernel_cases", "jacobi_cases", "case_grids", "env",
           "in_python", "PythonRaises", "compare_call", "compare_iterate",
           "DOCUMENTED_REFUSALS", "check_refusal"]

#: sizes of each axis (ghost layers included): empty and one-point interiors, odd rows
SIZES = (1, 2, 3, 7, 17, 33)
FLOATS = ("f8", "f4")
INTS = ("i1", "i2", "i4", "i8", "u1", "u2", "u4")
#: class attributes a kernel may read, as written in the class body
CONSTANTS = {
    "c_int": "3", "c_negint": "-2", "c_float": "0.1", "c_negzero": "-0.0", "c_big": "1e10",
    "c_f32": "np.float32(0.1)", "c_f64": "np.float64(1.5)", "c_i32": "np.int32(3)",
    "c_i8": "np.int8(-3)", "c_u8": "np.uint8(200)", "c_i64": "np.int64(-7)",
    "c_u16": "np.uint16(7)",
}
LITERALS = ("2", "3", "0.5", "1.5", "-1.25", "0.1", "7", "1e-3", "-4", "0", "-0.0")
_NP_NAMES = {"i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64", "u1": "uint8",
             "u2": "uint16", "u4": "uint32"}

#: what a compiled kernel may decline (the user guide's list of what runs in Python), as
#: patterns of the construct a fallback warning names
DOCUMENTED_REFUSALS = (
    r"nearest_interior\(\) of grid '\w+', which has no interior points",
    r"a value that is an integer on one path and a float on another",
    r".* whose (precision|dtype) depends on the (value|path) taken( at run time)?",
    r"constant expression[ :].*",
    r"integer power .*",
    r"'\*\*' of a \w+ value to a \w+ power: NumPy computes it .*",
    r"the constant .* is out of bounds for \w+ \(NumPy raises OverflowError\)",
)

_COMPLEX_WARNING = getattr(np, "exceptions", np).ComplexWarning


@dataclass
class KernelCase:
    """One generated kernel (class ``K`` in ``source``) and the grids it runs on."""

    source: str
    shape: tuple[int, ...]
    ghost: int
    dtypes: tuple[str, ...]
    custom: list[tuple[int, ...]]
    periodic: bool
    family: str

    @property
    def dim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        return (f"KernelCase(shape={self.shape}, ghost={self.ghost}, dtypes={self.dtypes}, "
                f"custom={self.custom}, periodic={self.periodic}, family={self.family!r})\n"
                + self.source)


def _shape(draw: Any, dim: int, max_points: int) -> tuple[int, ...]:
    from hypothesis import strategies as st

    sizes = [draw(st.sampled_from(SIZES)) for _ in range(dim)]
    while math.prod(sizes) > max_points:  # shrink the largest axis to the next size down
        i = sizes.index(max(sizes))
        sizes[i] = SIZES[SIZES.index(sizes[i]) - 1]
    return tuple(sizes)


def _offsets(draw: Any, dim: int, radius: int) -> list[tuple[int, ...]]:
    from hypothesis import strategies as st

    return draw(st.lists(st.tuples(*[st.integers(-radius, radius)] * dim), min_size=1,
                         max_size=4))


def kernel_cases(max_points: int = 1200,
                 families: Sequence[str] = ("float", "float", "int", "inplace")) -> Any:
    """Hypothesis strategy of :class:`KernelCase`: ``float`` kernels (float outputs, inputs of
    any dtype), ``int`` kernels (one integer dtype, integer arithmetic) and ``inplace``
    kernels (one grid, read at neighbours and written: Gauss-Seidel)."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw: Any) -> KernelCase:
        family = draw(st.sampled_from(list(families)))
        dim = draw(st.integers(1, 3))
        ghost = draw(st.sampled_from([0, 1, 1, 2, 3]))
        shape = _shape(draw, dim, max_points)
        radius = draw(st.integers(1, ghost)) if ghost else 0
        custom = _offsets(draw, dim, radius)
        periodic = draw(st.integers(0, 4)) == 0
        if family == "int":
            code = draw(st.sampled_from(INTS))
            names = [f"a{i}" for i in range(draw(st.integers(1, 3)))] + ["out"]
            return KernelCase(_IntKernel(draw, names, code, ghost).source(), shape, ghost,
                              (code,) * len(names), custom, periodic, family)
        if family == "inplace":
            dt = draw(st.sampled_from(FLOATS))
            src = _FloatKernel(draw, ["g"], {"g": dt}, ["g"], ghost).source()
            return KernelCase(src, shape, ghost, (dt,), custom, periodic, family)
        ins = [f"a{i}" for i in range(draw(st.integers(1, 3)))]
        outs = [f"o{i}" for i in range(draw(st.integers(1, 2)) - 1)] + ["out"]
        kinds = {n: draw(st.sampled_from(FLOATS + FLOATS + INTS)) for n in ins}
        kinds.update({n: draw(st.sampled_from(FLOATS)) for n in outs})
        src = _FloatKernel(draw, ins + outs, kinds, outs, ghost).source()
        return KernelCase(src, shape, ghost, tuple(kinds[n] for n in ins + outs), custom,
                          periodic, family)

    return build()


class _FloatKernel:
    """Source of a kernel writing float grids ``outs`` (the last one is ``out``)."""

    def __init__(self, draw: Any, names: list[str], kinds: dict[str, str], outs: list[str],
                 ghost: int) -> None:
        from hypothesis import strategies as st

        self.st, self.draw = st, draw
        self.names, self.outs, self.ghost = names, outs, ghost
        self.floats = [n for n in names if kinds[n] in FLOATS]
        self.ints = [n for n in names if kinds[n] not in FLOATS]
        self.consts = draw(st.lists(st.sampled_from(sorted(CONSTANTS)), min_size=1, max_size=4,
                                    unique=True))
        self.counter = itertools.count()

    def pick(self, options: Sequence[str]) -> str:
        return self.draw(self.st.sampled_from(list(options)))

    def leaf(self, locs: list[str], pts: list[str], region: str) -> str:
        out = self.outs[-1]
        options = [list(LITERALS), [f"self.{c}" for c in self.consts], ["math.pi", "math.e"],
                   [f"{g}[{p}]" for g in self.floats for p in pts]]
        if self.ints:
            options.append([f"{g}[{p}]" for g in self.ints for p in pts])
        if region == "border":
            options.append([f"{g}[{out}.nearest_interior(x)]" for g in self.names])
        if locs:
            options.append(locs)
        if len(pts) > 1:
            options.append([f"distance(x, {pts[-1]})"])
        return self.pick(self.draw(self.st.sampled_from(options)))

    def cond(self, locs: list[str], pts: list[str], region: str, depth: int) -> str:
        def sub() -> str:
            return self.expr(locs, pts, region, depth - 1)

        def op() -> str:
            return self.pick(["<", "<=", ">", ">=", "==", "!="])

        kind = self.pick(["cmp", "cmp", "chain", "and", "or", "not"])
        if kind == "cmp":
            return f"{sub()} {op()} {sub()}"
        if kind == "chain":
            return f"{sub()} < {sub()} <= {sub()}"
        if kind == "not":
            return f"not {sub()} {op()} {sub()}"
        return f"({sub()} {op()} {sub()} {kind} {sub()} {op()} {sub()})"

    def expr(self, locs: list[str], pts: list[str], region: str, depth: int) -> str:
        if depth <= 0:
            return self.leaf(locs, pts, region)

        def sub() -> str:
            return self.expr(locs, pts, region, depth - 1)

        kind = self.pick(["leaf", "bin", "bin", "bin", "neg", "call", "cond", "pow", "div"])
        if kind == "leaf":
            return self.leaf(locs, pts, region)
        if kind == "bin":
            return f"({sub()} {self.pick(['+', '-', '*'])} {sub()})"
        if kind == "div":
            right = self.pick(["2", "0.5", "-3", "1.5", f"self.{self.consts[0]}", ""])
            return f"({sub()} {self.pick(['/', '/', '//', '%'])} {right or sub()})"
        if kind == "pow":
            base = f"(abs({sub()}) + 0.5)" if self.draw(self.st.booleans()) else f"({sub()} * 1.0)"
            return f"({base} ** {self.pick(['2', '3', '0.5', '-1', '1.5', '-2'])})"
        if kind == "neg":
            return f"(-{sub()})"
        if kind == "cond":
            return f"({sub()} if {self.cond(locs, pts, region, depth)} else {sub()})"
        fn = self.pick(["abs", "min", "max", "sqrt", "exp", "log", "sin", "cos", "pow"])
        return _function_call(self.draw, fn, sub, "30.0")

    def statements(self, pad: str, locs: list[str], region: str, depth: int, n: int
                   ) -> list[str]:
        body: list[str] = []
        ids = [0, 1, 2] if self.ghost else [0]
        for _ in range(n):
            kind = self.pick(["local", "store", "store", "aug", "nbr", "if"])
            name = f"t{next(self.counter)}"
            if kind == "nbr" and region == "interior" and self.ghost:
                body.append(f"{pad}{name} = {self.expr(locs, ['x'], region, 1)}")
                src, nid = self.pick(self.names), self.pick([str(i) for i in ids])
                body.append(f"{pad}for y in {src}.neighbors(x, {nid}):")
                body.append(f"{pad}    {name} = {name} {self.pick(['+', '-', '*'])} "
                            f"{self.expr(locs + [name], ['x', 'y'], region, 1)}")
                if self.draw(self.st.integers(0, 3)) == 0:
                    body.append(f"{pad}    {self.pick(self.outs)}[x] += "
                                f"{self.expr(locs + [name], ['x', 'y'], region, 1)}")
                locs.append(name)
            elif kind == "if" and depth > 0:
                fresh = f"t{next(self.counter)}"
                branches = self.draw(self.st.integers(1, 3))
                head = "if"
                for b in range(branches):
                    head = "if" if b == 0 else (
                        "elif" if b < branches - 1 or self.draw(self.st.booleans()) else "else")
                    test = "" if head == "else" else f" {self.cond(locs, ['x'], region, 2)}"
                    body.append(f"{pad}{head}{test}:")
                    body.append(f"{pad}    {fresh} = {self.expr(list(locs), ['x'], region, 1)}")
                    body += self.statements(pad + "    ", locs + [fresh], region, depth - 1,
                                            self.draw(self.st.integers(0, 2)))
                    if head == "else":
                        break
                if head == "else":  # assigned on every path: readable after the if
                    locs.append(fresh)
            elif kind == "local":
                body.append(f"{pad}{name} = {self.expr(locs, ['x'], region, 2)}")
                locs.append(name)
            else:
                op = "=" if kind == "store" else self.pick(["+=", "-=", "*="])
                body.append(f"{pad}{self.pick(self.outs)}[x] {op} "
                            f"{self.expr(locs, ['x'], region, 2)}")
        return body

    def source(self) -> str:
        out = self.outs[-1]
        lines = ["class K(StencilKernel):"]
        lines += [f"    {c} = {CONSTANTS[c]}" for c in self.consts]
        lines.append(f"    def kernel(self, {', '.join(self.names)}):")
        top: list[str] = []
        if self.draw(self.st.booleans()):
            lines.append(f"        c0 = self.{self.consts[0]} * 2")
            top = ["c0"]
        pad = " " * 12
        for region in self.draw(self.st.lists(self.st.sampled_from(
                ["interior", "interior", "border", "dirichlet", "neumann", "bc"]),
                min_size=1, max_size=3)):
            points = "interior" if region == "interior" else "border"
            lines.append(f"        for x in {out}.{points}_points():")
            if region in ("interior", "border"):
                body = self.statements(pad, list(top), region, 1,
                                       self.draw(self.st.integers(1, 4)))
                lines += body or [f"{pad}{out}[x] = 1.0"]
            elif region == "dirichlet":
                value = self.pick(LITERALS + tuple(f"self.{c}" for c in self.consts))
                lines.append(f"{pad}{out}[x] = {value}")
            elif region == "neumann":
                lines.append(f"{pad}{out}[x] = {self.pick(self.names)}[{out}.nearest_interior(x)]")
            else:
                lines += [f"{pad}if {self.pick(self.names)}[x] > 0:",
                          f"{pad}    {out}[x] = {self.pick(LITERALS)}",
                          f"{pad}else:",
                          f"{pad}    {out}[x] = {out}[{out}.nearest_interior(x)]"]
        return "\n".join(lines) + "\n"


class _IntKernel:
    """Source of a kernel whose grids and values all have one integer dtype."""

    def __init__(self, draw: Any, names: list[str], code: str, ghost: int) -> None:
        from hypothesis import strategies as st

        self.st, self.draw, self.names, self.ghost = st, draw, names, ghost
        self.lits = ["2", "3", "7", "0", "1"] + (["-1", "-3"] if code.startswith("i") else [])
        self.np_name = _NP_NAMES[code]

    def pick(self, options: Sequence[str]) -> str:
        return self.draw(self.st.sampled_from(list(options)))

    def expr(self, locs: list[str], pts: list[str], depth: int) -> str:
        leaves = [f"{g}[{p}]" for g in self.names for p in pts] + locs + ["self.c_same"]
        if depth <= 0:
            return self.pick(leaves)

        def sub() -> str:
            return self.expr(locs, pts, depth - 1)

        kind = self.pick(["leaf", "bin", "bin", "lit", "div", "neg", "abs", "minmax", "cond"])
        if kind == "leaf":
            return self.pick(leaves)
        if kind == "bin":
            return f"({sub()} {self.pick(['+', '-', '*', '//', '%'])} {sub()})"
        if kind == "lit":
            lit = self.pick(self.lits + ["self.c_small"])
            return f"({sub()} {self.pick(['+', '-', '*'])} {lit})"
        if kind == "div":
            divisor = self.pick([v for v in self.lits if v != "0"])
            return f"({sub()} {self.pick(['//', '%'])} {divisor})"
        if kind == "neg":
            return f"(-{sub()})"
        if kind == "abs":
            return f"abs({sub()})"
        if kind == "minmax":
            return f"{self.pick(['min', 'max'])}({sub()}, {sub()})"
        cmp = self.pick(["<", "<=", ">", ">=", "==", "!="])
        return f"({sub()} if {sub()} {cmp} {self.pick(self.lits)} else {sub()})"

    def source(self) -> str:
        lines = ["class K(StencilKernel):", f"    c_same = np.{self.np_name}(3)", "    c_small = 2",
                 f"    def kernel(self, {', '.join(self.names)}):"]
        counter = itertools.count()
        pad = " " * 12
        for region in self.draw(self.st.lists(self.st.sampled_from(
                ["interior", "interior", "border", "neumann"]), min_size=1, max_size=2)):
            points = "border" if region == "neumann" else region
            lines.append(f"        for x in out.{points}_points():")
            if region == "neumann":
                lines.append(f"{pad}out[x] = {self.pick(self.names)}[out.nearest_interior(x)]")
                continue
            locs: list[str] = []
            stored = False
            for _ in range(self.draw(self.st.integers(1, 4))):
                kind = self.pick(["local", "store", "aug", "nbr", "if"])
                name = f"t{next(counter)}"
                if kind == "nbr" and region == "interior" and self.ghost:
                    lines.append(f"{pad}{name} = {self.expr(locs, ['x'], 1)}")
                    lines.append(f"{pad}for y in {self.pick(self.names)}.neighbors(x, "
                                 f"{self.pick(['0', '1', '2'])}):")
                    lines.append(f"{pad}    {name} = {name} {self.pick(['+', '-', '*'])} "
                                 f"{self.expr(locs + [name], ['x', 'y'], 1)}")
                    locs.append(name)
                elif kind == "if":
                    lines += [f"{pad}if {self.expr(locs, ['x'], 1)} "
                              f"{self.pick(['<', '>=', '==', '!='])} {self.pick(self.lits)}:",
                              f"{pad}    {name} = {self.expr(locs, ['x'], 1)}",
                              f"{pad}else:",
                              f"{pad}    {name} = {self.expr(locs, ['x'], 1)}"]
                    locs.append(name)
                elif kind == "local":
                    lines.append(f"{pad}{name} = {self.expr(locs, ['x'], 2)}")
                    locs.append(name)
                else:
                    op = "=" if kind == "store" else self.pick(["+=", "-=", "*="])
                    lines.append(f"{pad}out[x] {op} {self.expr(locs, ['x'], 2)}")
                    stored = True
            if not stored:
                lines.append(f"{pad}out[x] = {self.expr(locs, ['x'], 1)}")
        return "\n".join(lines) + "\n"


def jacobi_cases(max_points: int = 400) -> Any:
    """Hypothesis strategy of :class:`KernelCase` for ``iterate``: constant input grids, the
    state (the last input) and the output, one dtype (float64, float32 one case in five);
    interior loops read only the inputs, borders are left alone, set to a value, recomputed
    from the point itself or copied from the nearest interior point."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw: Any) -> KernelCase:
        dim = draw(st.integers(1, 3))
        ghost = draw(st.sampled_from([1, 1, 2, 3]))
        shape = _shape(draw, dim, max_points)
        custom = _offsets(draw, dim, draw(st.integers(1, ghost)))
        dt = "f4" if draw(st.integers(0, 4)) == 0 else "f8"
        names = [f"a{i}" for i in range(draw(st.integers(0, 2)))] + ["u", "out"]
        return KernelCase(_jacobi_source(draw, names), shape, ghost, (dt,) * len(names),
                          custom, False, "jacobi")

    return build()


def _jacobi_source(draw: Any, names: list[str]) -> str:
    from hypothesis import strategies as st

    consts = draw(st.lists(st.sampled_from(["c_float", "c_f64", "c_int", "c_negzero", "c_f32",
                                            "c_i32"]), min_size=1, max_size=3, unique=True))
    ins = names[:-1]

    def pick(options: Sequence[str]) -> str:
        return draw(st.sampled_from(list(options)))

    def expr(locs: list[str], pts: list[str], depth: int) -> str:
        leaves = (["0.25", "0.5", "-0.125", "2", "1e-3"] + [f"self.{c}" for c in consts]
                  + [f"{g}[{p}]" for g in ins for p in pts] + locs)
        kind = pick(["leaf", "bin", "bin", "scale", "call", "cond", "neg"]) if depth > 0 else "leaf"
        if kind == "leaf":
            return pick(leaves)

        def sub() -> str:
            return expr(locs, pts, depth - 1)

        if kind == "bin":
            return f"({sub()} {pick(['+', '-'])} {sub()})"
        if kind == "scale":
            return f"({sub()} * {pick(['0.25', '0.5', '0.1', 'self.' + consts[0]])})"
        if kind == "neg":
            return f"(-{sub()})"
        if kind == "cond":
            return f"({sub()} if {sub()} < {sub()} else {sub()})"
        fn = pick(["abs", "min", "max", "sin", "sqrt"])
        if fn in ("min", "max"):
            return f"{fn}({sub()}, {sub()})"
        return {"abs": f"abs({sub()})", "sin": f"math.sin({sub()})",
                "sqrt": f"math.sqrt(abs({sub()}))"}[fn]

    lines = ["class K(StencilKernel):"] + [f"    {c} = {CONSTANTS[c]}" for c in consts]
    lines.append(f"    def kernel(self, {', '.join(names)}):")
    pad = " " * 12
    lines.append("        for x in out.interior_points():")
    locs: list[str] = []
    for i in range(draw(st.integers(0, 2))):
        lines.append(f"{pad}t{i} = {expr(locs, ['x'], 1)}")
        lines.append(f"{pad}for y in {pick(ins)}.neighbors(x, {pick(['1', '2', '2'])}):")
        lines.append(f"{pad}    t{i} = t{i} + {expr(locs, ['x', 'y'], 1)}")
        locs.append(f"t{i}")
    if draw(st.booleans()):
        lines += [f"{pad}if {expr(locs, ['x'], 1)} > 0:",
                  f"{pad}    out[x] = {expr(locs, ['x'], 2)}",
                  f"{pad}else:",
                  f"{pad}    out[x] = {expr(locs, ['x'], 2)}"]
    else:
        lines.append(f"{pad}out[x] = {expr(locs, ['x'], 2)}")
    border = pick(["none", "dirichlet", "self", "neumann"])
    if border != "none":
        lines.append("        for x in out.border_points():")
        lines.append(pad + {"dirichlet": f"out[x] = {pick(['0.0', '1.5', 'self.' + consts[0]])}",
                            "self": f"out[x] = u[x] * 0.5 + {names[0]}[x]",
                            "neumann": "out[x] = u[out.nearest_interior(x)]"}[border])
    return "\n".join(lines) + "\n"


def case_grids(case: KernelCase, seed: int = 0, special: bool = False) -> list[StencilGrid]:
    """The grids of ``case``, random (integers -20..20, 0..40 unsigned); ``special`` sprinkles
    zeros, negative zeros, infinities and NaNs over float grids. Every grid gets the default
    neighbour ids and, as id 2, the case's offsets."""
    rng = np.random.default_rng(seed)
    nd = default_neighbor_definition(case.dim) + [case.custom]
    grids = []
    for code in case.dtypes:
        dt = np.dtype(code)
        g = StencilGrid(case.shape, dtype=dt, ghost_depth=case.ghost, periodic=case.periodic)
        if dt.kind == "f":
            g.data[...] = rng.standard_normal(case.shape) * 3
            if special:
                flat = g.data.reshape(-1)
                for v in (0.0, -0.0, np.inf, -np.inf, np.nan):
                    flat[rng.integers(0, flat.size, size=max(1, flat.size // 30))] = v
        else:
            g.data[...] = rng.integers(0 if dt.kind == "u" else -20, 40 if dt.kind == "u" else 20,
                                       size=case.shape)
        g.neighbor_definition = nd
        grids.append(g)
    return grids


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Set (``None``: unset) environment variables for the block."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class PythonRaises(Exception):
    """The kernel raises in Python (``1.0 / 0`` on Python floats, a complex power): there is
    no real-valued result to compare, and compiled code documentedly returns inf/NaN."""


def in_python(run: Any) -> Any:
    """``run()`` under ``ASP_MODE=python``; :class:`PythonRaises` where Python raises (or goes
    complex)."""
    with env(ASP_MODE="python"), np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error", _COMPLEX_WARNING)
        try:
            return run()
        except (ArithmeticError, ValueError, TypeError, IndexError, _COMPLEX_WARNING) as exc:
            raise PythonRaises(repr(exc)) from exc


def check_refusal(messages: list[str], source: str, filename: str | None = None) -> str:
    """The construct of the one fallback warning in ``messages``, checked: it names the file
    and a line of the kernel and a construct :data:`DOCUMENTED_REFUSALS` lists."""
    assert len(messages) == 1, f"expected one fallback warning, got {messages}"
    m = re.search(r"unsupported construct `(.*)` at (\S+):(\d+):(\d+)", messages[0])
    assert m, f"a fallback warning that names no construct and location: {messages[0]}"
    construct, file, line = m.group(1), m.group(2), int(m.group(3))
    if filename is not None:
        assert file == filename, (file, filename)
    assert 1 <= line <= source.count("\n"), f"line {line} is not a line of the kernel"
    assert any(re.fullmatch(p, construct) for p in DOCUMENTED_REFUSALS), \
        f"a refusal the user guide does not list: {construct!r}"
    return construct


def _kernel(case: KernelCase) -> tuple[Any, str]:
    """The kernel class of ``case`` and the file name its warnings must name."""
    cls: Any = load_kernel(case.source, namespace={"np": np})
    return cls, cls.kernel.func.__code__.co_filename


def compare_call(case: KernelCase, *, seed: int = 0, special: bool = False,
                 variants: bool = True) -> str:
    """Run ``case`` under ``ASP_MODE=python`` and compiled (its dispatcher, then, with
    ``variants``, every schedule variant built), asserting every grid bit for bit; returns
    ``"compiled"``, ``"python-raises"`` or the construct of a documented refusal."""
    cls, filename = _kernel(case)
    grids = case_grids(case, seed=seed, special=special)
    ref = clone_grids(grids)
    try:
        in_python(lambda: cls().kernel(*ref))
    except PythonRaises:
        return "python-raises"
    k = cls()
    test = clone_grids(grids)
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        k.kernel(*test)
    for i, (a, b) in enumerate(zip(ref, test)):
        assert_bitwise(a.data, b.data, what=f"grid {i} ({case.dtypes[i]}) of {case!r}")
    from asp_core import SpecializationWarning

    fallbacks = [str(w.message) for w in caught if issubclass(w.category, SpecializationWarning)]
    if fallbacks:
        return check_refusal(fallbacks, case.source, filename)
    if variants:
        with np.errstate(all="ignore"):
            for name, fn in k.kernel.build_variants(*grids).items():
                out = clone_grids(grids)
                fn(*out)
                for i, (a, b) in enumerate(zip(ref, out)):
                    assert_bitwise(a.data, b.data, what=f"variant {name}, grid {i} of {case!r}")
    return "compiled"


def compare_iterate(case: KernelCase, steps: Sequence[int], *, seed: int = 0,
                    repeats: int = 2, **settings: str | None) -> str:
    """``iterate(steps=T)`` of ``case`` for each ``T``, compiled under the environment
    ``settings`` (e.g. ``ASP_STENCIL_TEMPORAL="on"``), against ``ASP_MODE=python``: every grid
    bit for bit and the same grid returned, ``repeats`` times (later calls run the tuned
    winner); returns ``"compiled"`` or ``"python-raises"``."""
    cls, filename = _kernel(case)
    grids = case_grids(case, seed=seed)
    refs = {}
    try:
        for t in steps:
            ref = clone_grids(grids)
            refs[t] = (ref, ref.index(in_python(lambda: cls().iterate(*ref, steps=t))))
    except PythonRaises:
        return "python-raises"
    k = cls()
    from asp_core import SpecializationWarning

    with env(**settings), warnings.catch_warnings(record=True) as caught, \
            np.errstate(all="ignore"):
        warnings.simplefilter("always")
        for rep in range(repeats):
            for t in steps:
                test = clone_grids(grids)
                got = test.index(k.iterate(*test, steps=t))
                ref, want = refs[t]
                assert got == want, f"iterate(steps={t}) returned grid {got}, Python {want}"
                for i, (a, b) in enumerate(zip(ref, test)):
                    assert_bitwise(a.data, b.data, what=f"steps={t} call {rep + 1} grid {i} "
                                                        f"{settings} of {case!r}")
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, SpecializationWarning)]
    if fallbacks:
        return check_refusal(fallbacks, case.source, filename)
    return "compiled"

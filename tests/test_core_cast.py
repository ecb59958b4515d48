"""The platform AST: structural equality, clone, exact printer output per node (C and CUDA),
float literals that round-trip bitwise through a real compiler, refusal of non-PAST nodes, and
generated C/CUDA that compiles."""

from __future__ import annotations

import ctypes
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asp_core import cast as c
from asp_core.ir import Node, Transformer, Visitor, dump, walk
from pytest_asp import requires_compiler, requires_nvcc

i, n, a = c.Name("i"), c.Name("n"), c.Name("a")


# -- structure ----------------------------------------------------------------------------------
def _loop() -> c.For:
    return c.For("i", c.Constant(0), n, c.Block([
        c.Assign(c.Index(a, i), c.BinOp(c.Index(a, i), "*", c.Constant(2.0)))]),
        pragmas=[c.Pragma("omp", "parallel for")])


def test_structural_equality_and_clone():
    one, two = _loop(), _loop()
    assert one == two and one is not two
    clone = one.clone()
    assert clone == one
    clone.body.body[0].value.right.value = 3.0
    assert clone != one and one == two  # deep copy: the original is untouched
    assert one.replace(var="j") != one and one.replace(var="j").var == "j"
    assert c.Constant(1.0) != c.Constant(1.0, c.FLOAT)
    assert c.DOUBLE.ptr() == c.CType("double", 1) and c.DOUBLE.ptr() != c.DOUBLE


def test_walk_visitor_transformer_dump():
    loop = _loop()
    names = [x.id for x in walk(loop) if isinstance(x, c.Name)]
    assert names == ["n", "a", "i", "a", "i"]

    class Count(Visitor):
        def __init__(self):
            self.n = 0

        def visit_Index(self, node):
            self.n += 1
            self.generic_visit(node)

    counter = Count()
    counter.visit(loop)
    assert counter.n == 2

    class Rename(Transformer):
        def visit_Name(self, node):
            return c.Name("b") if node.id == "a" else node

    renamed = Rename().visit(loop)
    assert c.print_c(renamed).count("b[i]") == 2 and c.print_c(loop).count("a[i]") == 2

    class DropPragmas(Transformer):
        def visit_Pragma(self, node):
            return None

    assert DropPragmas().visit(loop).pragmas == []
    text = dump(loop)
    assert text.splitlines()[0].startswith("For(var='i'") and "BinOp(op='*')" in text


def test_bad_operators_are_refused():
    with pytest.raises(ValueError, match="unknown C binary operator '\\*\\*'"):
        c.BinOp(a, "**", i)
    with pytest.raises(ValueError, match="unknown C unary operator"):
        c.UnaryOp("not", a)
    with pytest.raises(ValueError):
        c.print_c(c.AugAssign(a, "**", i))


def test_ctype_for():
    assert c.ctype_for(np.float32) == c.FLOAT and c.ctype_for("int64").base == "int64_t"
    with pytest.raises(TypeError, match="no C type for NumPy dtype complex128"):
        c.ctype_for(np.complex128)


# -- exact printing -------------------------------------------------------------------------
@pytest.mark.parametrize("node, text", [
    (c.Name("x"), "x"),
    (c.Constant(3), "3"),
    (c.Constant(2**40), "1099511627776LL"),
    (c.Constant(True), "1"),
    (c.Constant(0.5), "0.5"),
    (c.Constant(2.0), "2.0"),
    (c.Constant(-1.5), "(-1.5)"),
    (c.Constant(1e300), "1e+300"),
    (c.Constant(0.1, c.FLOAT), "0.1f"),
    (c.Constant(float("inf")), "__builtin_inf()"),
    (c.Constant(float("-inf")), "(-__builtin_inf())"),
    (c.Constant(float("nan")), '__builtin_nan("")'),
    (c.Constant(-float("nan")), '(-__builtin_nan(""))'),
    (c.Constant(float("inf"), c.FLOAT), "__builtin_inff()"),
    (c.Constant(-float("nan"), c.FLOAT), '(-__builtin_nanf(""))'),
    (c.Constant(struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0]),
     '__builtin_nans("0x1")'),
    (c.Constant(struct.unpack(">d", bytes.fromhex("fff8000000000abc"))[0]),
     '(-__builtin_nan("0xabc"))'),
    (c.Constant(struct.unpack(">f", bytes.fromhex("7fc00005"))[0], c.FLOAT),
     '__builtin_nanf("0x5")'),
    (c.BinOp(c.BinOp(a, "+", i), "*", n), "((a + i) * n)"),
    (c.UnaryOp("-", a), "(-a)"),
    (c.Call("fmax", [a, c.Constant(0.0)]), "fmax(a, 0.0)"),
    (c.Call("f"), "f()"),
    (c.Index(a, c.BinOp(i, "+", c.Constant(1))), "a[(i + 1)]"),
    (c.Cast(c.LONG, a), "((long)a)"),
    (c.Cast(c.DOUBLE.ptr(), a), "((double *)a)"),
    (c.Ternary(c.BinOp(a, "<", i), a, i), "((a < i) ? a : i)"),
    (c.Member(c.Name("threadIdx"), "x"), "threadIdx.x"),
    (c.Member(c.Name("p"), "next", arrow=True), "p->next"),
])
def test_print_expressions(node, text):
    assert c.print_c(node) == text
    assert c.print_cuda(node) == text


@pytest.mark.parametrize("node, text", [
    (c.Decl(c.DOUBLE, "x"), "double x;"),
    (c.Decl(c.DOUBLE, "x", c.Constant(1.0)), "double x = 1.0;"),
    (c.Decl(c.DOUBLE.as_const(), "k", c.Constant(2.0)), "const double k = 2.0;"),
    (c.Decl(c.FLOAT, "t", dims=(4, 8), align=64),
     "float t[4][8] __attribute__((aligned(64)));"),
    (c.Assign(a, i), "a = i;"),
    (c.AugAssign(c.Index(a, i), "+", c.Constant(1.0)), "a[i] += 1.0;"),
    (c.ExprStmt(c.Call("g", [a])), "g(a);"),
    (c.Pragma("omp", "barrier"), "#pragma omp barrier"),
    (c.Pragma("GCC", "unroll 4"), "#pragma GCC unroll 4"),
    (c.Pragma("omp", "parallel for simd", [c.Clause("schedule", ("dynamic", 2)),
                                           c.Clause("num_threads", (c.Name("nt"),)),
                                           c.Clause("nowait")]),
     "#pragma omp parallel for simd schedule(dynamic, 2) num_threads(nt) nowait"),
    (c.Pragma("omp", "simd", [c.Clause("aligned", (a, c.Name("b"))),
                              c.Clause("reduction", (c.Name("s"),), modifier="max")]),
     "#pragma omp simd aligned(a, b) reduction(max:s)"),
    (c.Comment("note */ end"), "/* note * / end */"),
    (c.Return(), "return;"),
    (c.Return(c.Constant(0)), "return 0;"),
    (c.Break(), "break;"),
    (c.Continue(), "continue;"),
    (c.Include("math.h"), "#include <math.h>"),
    (c.Include("k.h", system=False), '#include "k.h"'),
    (c.Define("N", c.Constant(16)), "#define N 16"),
    (c.Block([c.Break()]), "{\n    break;\n}"),
    (c.While(c.BinOp(i, "<", n), c.Block([c.AugAssign(i, "+", c.Constant(1))])),
     "while ((i < n)) {\n    i += 1;\n}"),
    (c.If(a, c.Block([c.Return()])), "if (a) {\n    return;\n}"),
    (c.If(a, c.Block([c.Return()]), c.Block([c.Break()])),
     "if (a) {\n    return;\n} else {\n    break;\n}"),
    (c.For("i", c.Constant(0), n, c.Block([c.Continue()])),
     "for (long i = 0; i < n; ++i) {\n    continue;\n}"),
    (c.For("j", c.Constant(1), n, c.Block([]), step=c.Constant(4), ctype=c.INT,
           pragmas=[c.Pragma("omp", "simd"), c.Pragma("GCC", "ivdep")]),
     "#pragma omp simd\n#pragma GCC ivdep\nfor (int j = 1; j < n; j += 4) {\n}"),
])
def test_print_statements(node, text):
    assert c.print_c(node) == text + "\n"


@pytest.mark.parametrize("pragma", [
    c.Pragma("omp parallel for", ""),  # the old free-text form
    c.Pragma("omp", "parallel for schedule(static)"),
    c.Pragma("omp", "for", [c.Clause("schedule(static)")]),
    c.Pragma("omp", "for", [c.Clause("schedule", ("static); system(\"x\"",))]),
    c.Pragma("omp", "for", [c.Clause("reduction", (c.Name("s"),), modifier="+:")]),
    c.Pragma("omp", "for", [c.Clause("nowait", modifier="+")]),
    c.Pragma("omp", "for", [c.Clause("collapse", (True,))]),
    c.Pragma("omp", "for", ["schedule(static)"]),  # type: ignore[list-item]
])
def test_malformed_pragmas_are_refused(pragma):
    with pytest.raises(ValueError, match="malformed|not an identifier|not a C expression|"
                                         "modifier but no arguments"):
        c.print_c(pragma)


def test_print_function_and_module_c():
    fn = c.FunctionDef("f", [c.Param(c.DOUBLE.as_const().ptr(restrict=True), "x"),
                             c.Param(c.LONG, "n")], c.Block([c.Return(c.Index(c.Name("x"), n))]),
                       ret=c.DOUBLE, storage=("static", "inline"))
    mod = c.Module([c.Include("math.h"), fn, c.FunctionDef("g", [], c.Block([]))])
    assert c.print_c(mod) == (
        "#include <math.h>\n"
        "\n"
        "static inline double f(const double *restrict x, long n) {\n"
        "    return x[n];\n"
        "}\n"
        "\n"
        "void g(void) {\n"
        "}\n")


def test_print_cuda_specifics():
    kern = c.FunctionDef("k", [c.Param(c.DOUBLE.ptr(restrict=True), "x")], c.Block([]),
                         extern_c=False, qualifier="__global__")
    launch = c.CudaLaunch("k", [c.Name("g")], [c.Constant(128)], [c.Name("x")])
    host = c.FunctionDef("run", [c.Param(c.DOUBLE.ptr(), "x")], c.Block([launch]))
    text = c.print_cuda(c.Module([kern, host]))
    assert text == ("__global__ void k(double *__restrict__ x) {\n"
                    "}\n"
                    "\n"
                    'extern "C" void run(double *x) {\n'
                    "    k<<<dim3(g), dim3(128)>>>(x);\n"
                    "}\n")
    full = c.CudaLaunch("k", [c.Name("a"), c.Name("b")], [c.Constant(8)] * 3, [],
                        shared=c.Constant(1024), stream=c.Name("s"))
    assert c.print_cuda(full) == "k<<<dim3(a, b), dim3(8, 8, 8), 1024, s>>>();\n"
    only_stream = c.CudaLaunch("k", [c.Constant(1)], [c.Constant(1)], [], stream=c.Name("s"))
    assert c.print_cuda(only_stream) == "k<<<dim3(1), dim3(1), 0, s>>>();\n"
    with pytest.raises(ValueError, match="1 to 3 dimensions"):
        c.print_cuda(c.CudaLaunch("k", [], [c.Constant(1)], []))
    with pytest.raises(TypeError, match="CudaLaunch can only be printed as CUDA"):
        c.print_c(launch)


# -- refusing what is not a platform AST --------------------------------------------------
def test_printer_refuses_non_past_nodes():
    from dataclasses import dataclass

    @dataclass
    class DomainNode(Node):
        x: int

    with pytest.raises(TypeError, match="cannot print DomainNode: not a lowered platform-AST"):
        c.print_c(DomainNode(1))
    with pytest.raises(TypeError, match="cannot print DomainNode"):
        c.print_c(c.Assign(a, c.BinOp(i, "+", DomainNode(1))))  # nested inside an expression
    with pytest.raises(TypeError, match="cannot print str"):
        c.print_c(c.Block(["x = 1;"]))
    with pytest.raises(TypeError, match="cannot print str"):
        c.print_cuda(c.ExprStmt("f()"))


# -- float literals through the compiler ---------------------------------------------------
_SEEN = {"compiles": 0}


def _literal_roundtrip(values: list[float], single: bool) -> None:
    from asp_core.build import compile_library

    ctype = c.FLOAT if single else c.DOUBLE
    body = [c.Assign(c.Index(c.Name("out"), c.Constant(k)), c.Constant(v, ctype))
            for k, v in enumerate(values)]
    fn = c.FunctionDef("lits", [c.Param(ctype.ptr(), "out")], c.Block(body))
    lib = compile_library(c.print_c(c.Module([fn])), name="lits", openmp=False)  # no math.h
    _SEEN["compiles"] += 0 if lib.cached else 1
    dtype = np.float32 if single else np.float64
    out = np.zeros(len(values), dtype)
    lib.cdll.lits.argtypes = [ctypes.c_void_p]
    lib.cdll.lits(out.ctypes.data)
    with np.errstate(over="ignore"):   # doubles beyond float32: inf, as the literal
        expect = np.array(values, dtype)
    nan = np.isnan(expect)
    assert np.array_equal(np.isnan(out), nan)
    assert np.array_equal(np.signbit(out[nan]), np.signbit(expect[nan]))
    bits = np.uint32 if single else np.uint64
    assert np.array_equal(out[~nan].view(bits), expect[~nan].view(bits)), [
        (v, c.print_c(c.Constant(v, ctype)), o) for v, o in zip(values, out) if
        struct.pack("d", v) != struct.pack("d", float(o))][:5]


_EDGE = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
         -1.7976931348623157e308, 0.1, 1 / 3, math.pi, 1e16, 123456789.0, float("inf"),
         float("-inf"), float("nan"), -float("nan")]


@requires_compiler
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=150, max_size=250))
def test_double_literals_round_trip_bitwise(fresh_cache, values):
    _literal_roundtrip(_EDGE + values, single=False)


@requires_compiler
@settings(max_examples=2, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.floats(width=32, allow_nan=False), min_size=150, max_size=250))
def test_float_literals_round_trip_bitwise(fresh_cache, values):
    _literal_roundtrip([0.0, -0.0, 1.4e-45, 3.4028234663852886e38, 0.1, float("inf"),
                        float("-inf"), float("nan"), -float("nan")] + values, single=True)


@requires_compiler
@settings(max_examples=2, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=150, max_size=250))
def test_doubles_printed_as_float_literals_round_as_numpy_does(fresh_cache, values):
    """A FLOAT constant of a double is NumPy's float32 of it: its double digits with an ``f``
    suffix rounded twice (1 + 2**-24 became 1 + 2**-23, NumPy's float32 of it is 1.0)."""
    _literal_roundtrip([1 + 2**-24, 1 + 3 * 2**-25, 3.5e38, 1e-46] + values, single=True)


def test_integer_constants_print_exactly_or_are_refused():
    """``-(-5)`` printed ``--5`` (a decrement: no C), an integer DOUBLE constant printed as an
    int (``1 / 2`` integer division), NumPy integers printed as doubles (``7.0 % 2``: no
    C), integers beyond 64 bits printed and wrapped by the compiler."""
    assert c.print_c(c.UnaryOp("-", c.Constant(-5))) == "(-(-5))"
    assert c.print_c(c.UnaryOp("-", c.Constant(-2**40))) == "(-(-1099511627776LL))"
    assert c.print_c(c.BinOp(c.Constant(1, c.DOUBLE), "/", c.Constant(2, c.DOUBLE))) == \
        "(1.0 / 2.0)"
    assert c.print_c(c.BinOp(c.Constant(np.int32(7)), "%", c.Constant(2))) == "(7 % 2)"
    assert c.print_c(c.Constant(np.bool_(True))) == "1"
    assert c.print_c(c.Constant(3.0, c.INT)) == "3"
    assert c.print_c(c.Constant(-2**63)) == "(-9223372036854775807LL - 1)"
    assert c.print_c(c.Constant(2**64 - 1)) == "18446744073709551615ULL"
    with pytest.raises(ValueError, match="does not fit 64 bits"):
        c.print_c(c.Constant(2**64))
    with pytest.raises(ValueError, match="does not fit 64 bits"):
        c.print_c(c.Constant(-2**63 - 1))
    with pytest.raises(ValueError, match="0.5 is not an integer, but its ctype is 'int'"):
        c.print_c(c.Constant(0.5, c.INT))


@requires_compiler
def test_integer_constants_compute_in_c_as_in_python(fresh_cache):
    from asp_core.build import compile_library

    i64 = c.CType("long long")
    exprs = [(c.UnaryOp("-", c.Constant(-5)), i64),
             (c.BinOp(c.Constant(-2**63), "+", c.Constant(1)), i64),
             (c.BinOp(c.Constant(np.int64(7)), "/", c.Constant(2)), i64),
             (c.BinOp(c.Constant(1, c.DOUBLE), "/", c.Constant(2, c.DOUBLE)), c.DOUBLE),
             (c.BinOp(c.Constant(np.int64(2**53 + 1)), "-", c.Constant(2**53)), i64)]
    fns = [c.FunctionDef(f"e{k}", [], c.Block([c.Return(e)]), ret=t)
           for k, (e, t) in enumerate(exprs)]
    lib = compile_library(c.print_c(c.Module(fns)), name="ints", openmp=False)
    got = []
    for k, (_, t) in enumerate(exprs):
        fn = getattr(lib.cdll, f"e{k}")
        fn.restype = ctypes.c_double if t is c.DOUBLE else ctypes.c_longlong
        got.append(fn())
    assert got == [5, -2**63 + 1, 3, 0.5, 1]


# -- everything compiles --------------------------------------------------------------------
def _every_c_node() -> c.Module:
    x, y = c.Name("x"), c.Name("y")
    body = c.Block([
        c.Comment("every statement kind"),
        c.Decl(c.DOUBLE, "acc", c.Constant(0.0)),
        c.Decl(c.LONG.as_const(), "m", c.Cast(c.LONG, c.Constant(3.0))),
        c.Decl(c.DOUBLE, "tmp", dims=(4,), align=32),
        c.For("i", c.Constant(0), c.Constant(4), c.Block([
            c.Assign(c.Index(c.Name("tmp"), i), c.Constant(1.5))])),
        c.For("i", c.Constant(0), n, c.Block([
            c.If(c.BinOp(c.Index(x, i), ">", c.Constant(0.0)),
                 c.Block([c.AugAssign(c.Name("acc"), "+", c.Call("sqrt", [c.Index(x, i)]))]),
                 c.Block([c.AugAssign(c.Name("acc"), "-", c.UnaryOp("-", c.Index(x, i)))])),
            c.If(c.BinOp(c.BinOp(i, "%", c.Constant(2)), "==", c.Constant(1)),
                 c.Block([c.Continue()])),
            c.Assign(c.Index(y, i), c.Ternary(c.BinOp(c.Index(x, i), "<", c.Constant(0.0)),
                                              c.Constant(-1.0), c.Index(c.Name("tmp"),
                                                                        c.BinOp(i, "&",
                                                                                c.Constant(3)))
                                              )),
        ]), pragmas=[c.Pragma("omp", "parallel for",
                              [c.Clause("reduction", (c.Name("acc"),), modifier="+")])]),
        c.Decl(c.LONG, "k", c.Constant(0)),
        c.While(c.Constant(1), c.Block([
            c.If(c.BinOp(c.Name("k"), ">=", c.Name("m")), c.Block([c.Break()])),
            c.AugAssign(c.Name("k"), "+", c.Constant(1))])),
        c.ExprStmt(c.Call("helper", [c.Name("acc")])),
        c.Return(c.BinOp(c.Name("acc"), "+", c.Name("N"))),
    ])
    helper = c.FunctionDef("helper", [c.Param(c.DOUBLE, "v")], c.Block([c.Return()]),
                           storage=("static",))
    fn = c.FunctionDef("every", [c.Param(c.DOUBLE.as_const().ptr(restrict=True), "x"),
                                 c.Param(c.DOUBLE.ptr(restrict=True), "y"), c.Param(c.LONG, "n")],
                       body, ret=c.DOUBLE)
    return c.Module([c.Include("math.h"), c.Include("stdint.h"), c.Define("N", c.Constant(7.0)),
                     helper, fn])


@requires_compiler
def test_generated_c_compiles_and_runs(fresh_cache):
    from asp_core.build import compile_library

    lib = compile_library(c.print_c(_every_c_node()), name="every")
    fn = lib.cdll.every
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long], ctypes.c_double
    x = np.array([4.0, -2.0, 9.0, -1.0])
    y = np.zeros(4)
    assert fn(x.ctypes.data, y.ctypes.data, 4) == (2.0 - 2.0 + 3.0 - 1.0) + 7.0
    np.testing.assert_array_equal(y, [1.5, 0.0, 1.5, 0.0])


@requires_nvcc
def test_generated_cuda_compiles_with_nvcc():
    from asp_core.toolchain import find_toolchain

    x, idx = c.Name("x"), c.Name("idx")
    gid = c.BinOp(c.BinOp(c.Member(c.Name("blockIdx"), "x"), "*",
                          c.Member(c.Name("blockDim"), "x")), "+",
                  c.Member(c.Name("threadIdx"), "x"))
    kern = c.FunctionDef("scale", [c.Param(c.DOUBLE.ptr(restrict=True), "x"),
                                   c.Param(c.LONG, "n")],
                         c.Block([c.Decl(c.LONG, "idx", gid),
                                  c.If(c.BinOp(idx, "<", n), c.Block([
                                      c.AugAssign(c.Index(x, idx), "*", c.Constant(2.0))]))]),
                         extern_c=False, qualifier="__global__")
    blocks = c.BinOp(c.BinOp(n, "+", c.Constant(255)), "/", c.Constant(256))
    host = c.FunctionDef("asp_scale", [c.Param(c.DOUBLE.ptr(), "x"), c.Param(c.LONG, "n")],
                         c.Block([c.CudaLaunch("scale", [blocks], [c.Constant(256)], [x, n],
                                               shared=c.Constant(0))]), ret=c.VOID)
    source = c.print_cuda(c.Module([kern, host]))
    assert 'extern "C" void asp_scale' in source
    result = find_toolchain("cuda").check(source)
    assert result.command[0].endswith("nvcc") and "-c" in result.command

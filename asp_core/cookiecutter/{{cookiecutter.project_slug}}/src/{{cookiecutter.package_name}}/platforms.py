"""Phase 3, platform selection: which platforms can run the kernel, and lowering to their IR.

``openmp`` lowers the DAST to Asp's C platform AST (:mod:`asp_core.cast`): one loop over the
elements, exported with a plain C ABI. ``python`` (lowest priority) needs nothing and is chosen
when no C compiler is installed, or on request (``ASP_PLATFORM_SELECTION=python``).
"""

from __future__ import annotations


from asp_core import Platform, PlatformProgram, SpecializationContext
from asp_core import cast as c
from asp_core.ir import walk
from asp_core.toolchain import compiler_unavailable_reason

from {{ cookiecutter.package_name }}.dast import Bin, Fn, Map, Neg, Node, Num, Param

__all__ = ["OpenMPPlatform", "PythonPlatform", "lower_expr", "domain_errors", "FUNCTION",
           "ERRORS", "RAISES"]

#: The exported C function.
FUNCTION = "asp_{{ cookiecutter.package_name }}_map"
#: Its local of the exceptions Python raises on some element (its return value, bits of RAISES).
ERRORS = "raised"

_LIBM = {"abs": "fabs", "sqrt": "sqrt"}


def lower_expr(node: Node) -> c.Expr:
    """One DAST expression → one C expression, operation for operation (same order, so the
    C result equals Python's bit for bit; the core compiles with ``-ffp-contract=off``)."""
    if isinstance(node, Param):
        return c.Index(c.Name(f"in{node.index}"), c.Name("i"))
    if isinstance(node, Num):   # a double, as Python's int or float meets an array's element
        return c.Constant(node.value, c.DOUBLE)
    if isinstance(node, Bin):
        return c.BinOp(lower_expr(node.left), node.op, lower_expr(node.right))
    if isinstance(node, Neg):
        return c.UnaryOp("-", lower_expr(node.operand))
    if isinstance(node, Fn):
        args = [lower_expr(a) for a in node.args]
        if node.name in ("min", "max"):  # Python's left-to-right scan, NaN and -0.0 included
            acc = args[0]
            for a in args[1:]:
                acc = c.Call(f"asp_{node.name}", [acc, a])
            return acc
        return c.Call(_LIBM[node.name], args)
    raise TypeError(f"cannot lower {node!r}")


#: the bits of the C function's result: an element for which Python raises this exception
RAISES = {1: ZeroDivisionError("float division by zero"), 2: ValueError("math domain error")}


def domain_errors(node: Node) -> c.Expr | None:
    """Where Python raises on an element and C computes on (``x / 0.0`` is inf, ``sqrt`` of a
    negative number NaN): the bits of :data:`RAISES` for it, which the loop ORs up and the
    binding raises. None where nothing can raise."""
    tests = []
    for n in walk(node):
        if isinstance(n, Bin) and n.op == "/":
            tests.append(c.BinOp(lower_expr(n.right), "==", c.Constant(0.0)))
        elif isinstance(n, Fn) and n.name == "sqrt":
            tests.append(c.BinOp(c.BinOp(lower_expr(n.args[0]), "<", c.Constant(0.0)), "*",
                                 c.Constant(2)))
    if not tests:
        return None
    test = tests[0]
    for more in tests[1:]:
        test = c.BinOp(test, "|", more)
    return test


def _helpers() -> list[c.FunctionDef]:
    r, v = c.Name("r"), c.Name("v")
    params = [c.Param(c.DOUBLE, "r"), c.Param(c.DOUBLE, "v")]
    return [c.FunctionDef(f"asp_{name}", params,
                          c.Block([c.Return(c.Ternary(c.BinOp(v, op, r), v, r))]),
                          ret=c.DOUBLE, extern_c=False, storage=("static", "inline"))
            for name, op in (("min", "<"), ("max", ">"))]


class OpenMPPlatform(Platform):
    name = "openmp"
    compiler = "c"   # asp list names the platform unavailable where there is no C compiler

    def check(self, dast: Map, ctx: SpecializationContext) -> str | None:
        return compiler_unavailable_reason("c")

    def lower(self, dast: Map, ctx: SpecializationContext) -> PlatformProgram:
        params = [c.Param(c.DOUBLE.as_const().ptr(restrict=True), f"in{k}")
                  for k in range(dast.nparams)]
        params += [c.Param(c.DOUBLE.ptr(restrict=True), "out"), c.Param(c.LONG, "n")]
        store = [c.Assign(c.Index(c.Name("out"), c.Name("i")), lower_expr(dast.body))]
        errors = domain_errors(dast.body)
        if errors is not None:
            store.append(c.AugAssign(c.Name(ERRORS), "|", errors))
        loop = c.For("i", c.Constant(0), c.Name("n"), c.Block(store))
        # returns whether some element raised in Python (the loop variants reduce it)
        fn = c.FunctionDef(FUNCTION, params, c.Block([
            c.Decl(c.INT, ERRORS, c.Constant(0)), loop, c.Return(c.Name(ERRORS))]), ret=c.INT)
        module = c.Module([c.Include("math.h"), *_helpers(), fn])
        return PlatformProgram("openmp", module, {"nparams": dast.nparams})


class PythonPlatform(Platform):
    """Always available: the kernel's own Python function, mapped with ``numpy.vectorize``."""

    name = "python"

    def lower(self, dast: Map, ctx: SpecializationContext) -> PlatformProgram:
        return PlatformProgram("python", ctx.func, {"nparams": dast.nparams})

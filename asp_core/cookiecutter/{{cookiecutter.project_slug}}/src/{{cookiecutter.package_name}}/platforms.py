"""Phase 3, platform selection: which platforms can run the kernel, and lowering to their IR.

``openmp`` lowers the DAST to Asp's C platform AST (:mod:`asp_core.cast`): one loop over the
elements, exported with a plain C ABI. ``python`` (lowest priority) needs nothing and is chosen
when no C compiler is installed, or on request (``ASP_PLATFORM_SELECTION=python``).
"""

from __future__ import annotations


from asp_core import Platform, PlatformProgram, SpecializationContext
from asp_core import cast as c

from {{ cookiecutter.package_name }}.dast import Bin, Fn, Map, Neg, Node, Num, Param

__all__ = ["OpenMPPlatform", "PythonPlatform", "lower_expr", "FUNCTION"]

#: The exported C function.
FUNCTION = "asp_{{ cookiecutter.package_name }}_map"

_LIBM = {"abs": "fabs", "sqrt": "sqrt"}


def lower_expr(node: Node) -> c.Expr:
    """One DAST expression → one C expression, operation for operation (same order, so the
    C result equals Python's bit for bit; the core compiles with ``-ffp-contract=off``)."""
    if isinstance(node, Param):
        return c.Index(c.Name(f"in{node.index}"), c.Name("i"))
    if isinstance(node, Num):
        return c.Constant(node.value)
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


def _helpers() -> list[c.FunctionDef]:
    r, v = c.Name("r"), c.Name("v")
    params = [c.Param(c.DOUBLE, "r"), c.Param(c.DOUBLE, "v")]
    return [c.FunctionDef(f"asp_{name}", params,
                          c.Block([c.Return(c.Ternary(c.BinOp(v, op, r), v, r))]),
                          ret=c.DOUBLE, extern_c=False, storage=("static", "inline"))
            for name, op in (("min", "<"), ("max", ">"))]


class OpenMPPlatform(Platform):
    name = "openmp"

    def check(self, dast: Map, ctx: SpecializationContext) -> str | None:
        from asp_core.errors import CompilerNotFound
        from asp_core.toolchain import find_toolchain

        try:
            find_toolchain("c")
        except CompilerNotFound as exc:
            return str(exc)
        return None

    def lower(self, dast: Map, ctx: SpecializationContext) -> PlatformProgram:
        params = [c.Param(c.DOUBLE.as_const().ptr(restrict=True), f"in{k}")
                  for k in range(dast.nparams)]
        params += [c.Param(c.DOUBLE.ptr(restrict=True), "out"), c.Param(c.LONG, "n")]
        loop = c.For("i", c.Constant(0), c.Name("n"), c.Block([
            c.Assign(c.Index(c.Name("out"), c.Name("i")), lower_expr(dast.body))]))
        fn = c.FunctionDef(FUNCTION, params, c.Block([loop]))
        module = c.Module([c.Include("math.h"), *_helpers(), fn])
        return PlatformProgram("openmp", module, {"nparams": dast.nparams})


class PythonPlatform(Platform):
    """Always available: the kernel's own Python function, mapped with ``numpy.vectorize``."""

    name = "python"

    def lower(self, dast: Map, ctx: SpecializationContext) -> PlatformProgram:
        return PlatformProgram("python", ctx.func, {"nparams": dast.nparams})

"""A small element-wise specializer used to test the core through all five phases.

DSL: a function of scalars returning one arithmetic expression of its parameters and numeric
literals (``+ - * /``, unary minus, ``abs``, ``min``, ``max``, ``math.sqrt``). Applied to
equally shaped float64 arrays it returns a new array, as ``numpy.vectorize(f)(*arrays)`` would.
"""

from __future__ import annotations

import ast
import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from asp_core import (Backend, DomainOptimizer, Frontend, Platform, PlatformOptimizer,
                     PlatformProgram, SpecializationContext, Variant, asp_pass, hookimpl)
from asp_core import cast as c
from asp_core.ir import Node, Transformer
from asp_core.passes import PassManager

if TYPE_CHECKING:
    from asp_core.registry import Registry

NAME = "elementwise"


# -- DAST -------------------------------------------------------------------------------------
@dataclass
class Param(Node):
    index: int


@dataclass
class Num(Node):
    value: float


@dataclass
class Bin(Node):
    op: str
    left: Node
    right: Node


@dataclass
class Neg(Node):
    operand: Node


@dataclass
class Fn(Node):
    name: str
    args: list[Node]


@dataclass
class Map(Node):
    nparams: int
    body: Node


# -- phase 1 ------------------------------------------------------------------------------------
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_FUNCS = {"abs": "fabs", "min": "fmin", "max": "fmax", "sqrt": "sqrt"}


class ElementwiseFrontend(Frontend):
    def parse(self, ctx: SpecializationContext) -> Map:
        fn = ctx.tree.body[0]
        params = [a.arg for a in fn.args.args]
        body = [s for s in fn.body if not (isinstance(s, ast.Expr) and
                                           isinstance(s.value, ast.Constant))]
        if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
            raise ctx.unsupported(body[0] if body else fn, "a body other than one return")
        return Map(len(params), self._expr(body[0].value, params, ctx))

    def _expr(self, node: ast.AST, params: list[str], ctx: SpecializationContext) -> Node:
        if isinstance(node, ast.Name) and node.id in params:
            return Param(params.index(node.id))
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return Num(float(node.value))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return Bin(_OPS[type(node.op)], self._expr(node.left, params, ctx),
                       self._expr(node.right, params, ctx))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return Neg(self._expr(node.operand, params, ctx))
        if isinstance(node, ast.Call) and not node.keywords:
            name = node.func.id if isinstance(node.func, ast.Name) else (
                node.func.attr if isinstance(node.func, ast.Attribute) and isinstance(
                    node.func.value, ast.Name) and node.func.value.id == "math" else None)
            if name in _FUNCS:
                return Fn(name, [self._expr(a, params, ctx) for a in node.args])
            raise ctx.unsupported(node, f"call to {ast.unparse(node.func)}")
        raise ctx.unsupported(node, type(node).__name__)


# -- phase 2 ------------------------------------------------------------------------------------
class _Fold(Transformer):
    def visit_Bin(self, node: Bin) -> Node:
        node = self.generic_visit(node)
        if isinstance(node.left, Num) and isinstance(node.right, Num):
            a, b = node.left.value, node.right.value
            if node.op == "/" and b == 0:
                return node
            return Num({"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0.0}[node.op])
        return node


@asp_pass("constant-folding")
def fold_constants(dast: Map, ctx: SpecializationContext) -> tuple[Map, bool]:
    """Evaluate operations on literals at specialisation time."""
    new = _Fold().visit(dast)
    return new, new is not dast  # a Transformer returns the same node when nothing changed


class ElementwiseOptimizer(DomainOptimizer):
    def optimize(self, dast: Map, ctx: SpecializationContext) -> Map:
        return PassManager("elementwise-domain", [fold_constants]).run(dast, ctx)


# -- phase 3 ------------------------------------------------------------------------------------
def _lower_expr(node: Node) -> c.Expr:
    if isinstance(node, Param):
        return c.Index(c.Name(f"in{node.index}"), c.Name("i"))
    if isinstance(node, Num):
        return c.Constant(node.value)
    if isinstance(node, Bin):
        return c.BinOp(_lower_expr(node.left), node.op, _lower_expr(node.right))
    if isinstance(node, Neg):
        return c.UnaryOp("-", _lower_expr(node.operand))
    if isinstance(node, Fn):
        return c.Call(_FUNCS[node.name], [_lower_expr(a) for a in node.args])
    raise TypeError(f"cannot lower {node!r}")


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
            c.Assign(c.Index(c.Name("out"), c.Name("i")), _lower_expr(dast.body))]))
        fn = c.FunctionDef("asp_map", params, c.Block([loop]))
        return PlatformProgram("openmp", c.Module([c.Include("math.h"), fn]),
                               {"nparams": dast.nparams})


class PythonPlatform(Platform):
    """Runs the kernel with NumPy's vectorize: always available, lowest priority."""

    name = "python"

    def lower(self, dast: Map, ctx: SpecializationContext) -> PlatformProgram:
        return PlatformProgram("python", ctx.func, {"nparams": dast.nparams})


# -- phase 4 ------------------------------------------------------------------------------------
class LoopVariants(PlatformOptimizer):
    platforms = ("openmp",)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        out = []
        for name, parallel in (("parallel-simd", True), ("serial", False)):
            ir = program.ir.clone()
            loop = ir.body[-1].body.body[0]
            loop.pragmas = [c.Pragma("omp", "parallel for simd",
                                     [c.Clause("schedule", ("static",))])] if parallel else []
            out.append(Variant(name, PlatformProgram(program.platform, ir, program.meta),
                               {"parallel": parallel}))
        return out


# -- phase 5 ------------------------------------------------------------------------------------
class CBackend(Backend):
    platforms = ("openmp",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., np.ndarray]:
        lib = ctx.compile(c.print_c(variant.program.ir), name="asp_map",
                          specialised_on={"nparams": variant.program.meta["nparams"]})
        fn = lib.cdll.asp_map
        nparams = variant.program.meta["nparams"]
        fn.argtypes = [ctypes.c_void_p] * (nparams + 1) + [ctypes.c_long]
        fn.restype = None

        def run(*arrays: np.ndarray) -> np.ndarray:
            out = np.empty_like(arrays[0])
            fn(*[a.ctypes.data for a in arrays], out.ctypes.data, out.size)
            return out

        run.c_function = fn  # type: ignore[attr-defined]
        return run


class PythonBackend(Backend):
    platforms = ("python",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., np.ndarray]:
        vec = np.vectorize(variant.program.ir, otypes=[np.float64])
        return lambda *arrays: vec(*arrays)


# -- registration -------------------------------------------------------------------------------
def signature(args: tuple, kwargs: dict, instance: Any) -> tuple:
    """Validates the arrays: same shape, float64, C-contiguous."""
    if kwargs:
        raise TypeError("element-wise kernels take positional arrays only")
    if not args:
        raise TypeError("element-wise kernels need at least one array")
    shape = None
    for k, a in enumerate(args):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"argument {k} is {type(a).__name__}, expected a numpy array")
        if a.dtype != np.float64:
            raise TypeError(f"argument {k} has dtype {a.dtype}, expected float64")
        if not a.flags.c_contiguous:
            raise ValueError(f"argument {k} is not C-contiguous")
        if shape is not None and a.shape != shape:
            raise ValueError(f"argument {k} has shape {a.shape}, expected {shape}")
        shape = a.shape
    return (len(args),)


@hookimpl
def asp_register_specializers(register: Registry) -> None:
    register.specializer(name=NAME, description="element-wise maps (test specializer)",
                         signature=signature)
    register.component(specializer=NAME, phase="frontend", name="python-ast",
                       obj=ElementwiseFrontend())
    register.component(specializer=NAME, phase="domain_optimization", name="fold",
                       obj=ElementwiseOptimizer())
    register.component(specializer=NAME, phase="platform_selection", name="openmp",
                       obj=OpenMPPlatform(), priority=10)
    register.component(specializer=NAME, phase="platform_selection", name="python",
                       obj=PythonPlatform(), priority=-100)
    register.component(specializer=NAME, phase="platform_optimization", name="loops",
                       obj=LoopVariants())
    register.component(specializer=NAME, phase="backend", name="c", obj=CBackend())
    register.component(specializer=NAME, phase="backend", name="vectorize", obj=PythonBackend())

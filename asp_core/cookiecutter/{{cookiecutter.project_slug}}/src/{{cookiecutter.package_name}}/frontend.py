"""Phase 1, frontend: the kernel's Python AST → the DAST.

The DSL is one ``return`` of an arithmetic expression over the parameters and numeric literals.
Anything else raises ``ctx.unsupported(node, construct)``: Asp then runs the kernel in pure
Python and warns once, naming the file, line and construct.
"""

from __future__ import annotations

import ast
import builtins
import math
import types
from typing import Any, Callable

from asp_core import Frontend, SpecializationContext

from {{ cookiecutter.package_name }}.dast import FUNCTIONS, Bin, Fn, Map, Neg, Node, Num, Param

__all__ = ["ElementwiseFrontend"]

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
#: The object each DSL function (:data:`.dast.FUNCTIONS`) must be where the kernel calls it.
_CALLABLES: dict[str, Any] = {"abs": builtins.abs, "min": builtins.min, "max": builtins.max,
                              "sqrt": math.sqrt}
_UNBOUND = object()


class ElementwiseFrontend(Frontend):
    name = "python-ast"

    def parse(self, ctx: SpecializationContext) -> Map:
        fn = ctx.tree.body[0]
        args = fn.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs or args.defaults:
            raise ctx.unsupported(fn, "parameters other than plain positional names")
        params = [a.arg for a in args.args]
        body = [s for s in fn.body
                if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
            raise ctx.unsupported(body[0] if body else fn, "a body other than one return")
        return Map(len(params), self._expr(body[0].value, params, ctx))

    def _expr(self, node: ast.AST, params: list[str], ctx: SpecializationContext) -> Node:
        if isinstance(node, ast.Name) and node.id in params:
            return Param(params.index(node.id))
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            if abs(node.value) > 1.7976931348623157e308:   # Python: OverflowError
                raise ctx.unsupported(node, "an integer literal beyond the float range")
            return Num(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return Bin(_OPS[type(node.op)], self._expr(node.left, params, ctx),
                       self._expr(node.right, params, ctx))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return Neg(self._expr(node.operand, params, ctx))
        if isinstance(node, ast.Call) and not node.keywords:
            name = self._function_name(node.func, params, ctx)
            if name in FUNCTIONS:
                arity = {"abs": (1,), "sqrt": (1,)}.get(name)
                if (arity and len(node.args) not in arity) or len(node.args) < 1 or \
                        (name in ("min", "max") and len(node.args) < 2):
                    raise ctx.unsupported(node, f"{name}() with {len(node.args)} arguments")
                return Fn(name, [self._expr(a, params, ctx) for a in node.args])
            raise ctx.unsupported(node, f"call to {ast.unparse(node.func)}")
        if isinstance(node, ast.Name):
            raise ctx.unsupported(node, f"name '{node.id}' that is not a parameter")
        raise ctx.unsupported(node, f"{type(node).__name__} expression")

    @staticmethod
    def _function_name(func: ast.AST, params: list[str], ctx: SpecializationContext
                       ) -> str | None:
        """The DSL function a call's callee is, judged by the object it names when the kernel
        runs, not by its spelling: a module's own ``max``, or ``math.sqrt`` where ``math`` is
        not imported, is not the DSL's (compiled, it gave other results than Python, or none
        where Python raises NameError), while ``from math import sqrt`` is."""
        kernel = getattr(ctx.func, "__func__", ctx.func)   # never a wrapper: kernel_source
        target = _resolve(func, params, kernel)
        return next((name for name, obj in _CALLABLES.items() if target is obj), None)


def _resolve(node: ast.AST, params: list[str], kernel: Callable[..., Any]) -> Any:
    """The object a ``name`` or ``module.attribute`` callee is in ``kernel``, looked up as Python
    does when it runs: a parameter (not known yet: unbound here), the closure, the module's
    globals, the builtins. Only modules' attributes are read: no property of a user's object
    runs while the kernel is parsed."""
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, params, kernel)
        return getattr(owner, node.attr, _UNBOUND) if isinstance(owner, types.ModuleType) \
            else _UNBOUND
    if not isinstance(node, ast.Name) or node.id in params:
        return _UNBOUND
    code = getattr(kernel, "__code__", None)
    cells = dict(zip(code.co_freevars, getattr(kernel, "__closure__", None) or ())) if code \
        else {}
    if node.id in cells:
        try:
            return cells[node.id].cell_contents
        except ValueError:  # an empty cell: NameError in Python
            return _UNBOUND
    for namespace in (getattr(kernel, "__globals__", {}),
                      getattr(kernel, "__builtins__", vars(builtins))):
        if node.id in namespace:
            return namespace[node.id]
    return _UNBOUND

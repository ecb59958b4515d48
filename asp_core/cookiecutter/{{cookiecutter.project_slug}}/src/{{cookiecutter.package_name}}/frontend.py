"""Phase 1, frontend: the kernel's Python AST → the DAST.

The DSL is one ``return`` of an arithmetic expression over the parameters and numeric literals.
Anything else raises ``ctx.unsupported(node, construct)``: Asp then runs the kernel in pure
Python and warns once, naming the file, line and construct.
"""

from __future__ import annotations

import ast

from asp_core import Frontend, SpecializationContext

from {{ cookiecutter.package_name }}.dast import FUNCTIONS, Bin, Fn, Map, Neg, Node, Num, Param

__all__ = ["ElementwiseFrontend"]

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


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
            return Num(float(node.value))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return Bin(_OPS[type(node.op)], self._expr(node.left, params, ctx),
                       self._expr(node.right, params, ctx))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return Neg(self._expr(node.operand, params, ctx))
        if isinstance(node, ast.Call) and not node.keywords:
            name = self._function_name(node.func)
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
    def _function_name(func: ast.AST) -> str | None:
        if isinstance(func, ast.Name) and func.id in ("abs", "min", "max"):
            return func.id
        if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id == "math" and func.attr == "sqrt"):
            return "sqrt"
        return None

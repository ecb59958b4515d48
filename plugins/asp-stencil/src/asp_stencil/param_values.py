"""The values a call passes for its code's parameters (:class:`~asp_stencil.dast.Param`).

A parameter is a float attribute of the kernel object, read at each call, or a Python float
the call computes from such attributes (``math.sin(self.w * self.t)``, ``2.0 / self.t``): that
expression is turned back into Python source and compiled once, so Python computes it, with
its own arithmetic and its own exceptions, in about a microsecond a call.
"""

from __future__ import annotations

import builtins
import math
from typing import Any, Callable

from . import dast as D

__all__ = ["values_reader"]

#: what the DSL's calls name (the frontend admits only these)
_FUNCS = {"abs": builtins.abs, "min": builtins.min, "max": builtins.max, "sqrt": math.sqrt,
          "exp": math.exp, "log": math.log, "sin": math.sin, "cos": math.cos, "pow": math.pow}


def values_reader(params: tuple[D.Param, ...]) -> Callable[[Any], list[float]]:
    """A function of the kernel object giving the value of each of ``params`` for a call; it
    raises what reading the attributes or computing from them raises in Python (the caller
    then runs the kernel in Python, which raises that where Python does, or not at all)."""
    names: list[str] = []
    terms = []
    for p in params:
        terms.append(_source(p.expr, names) if p.expr is not None else _arg(p.name, names))
    reads = "".join(f"    a{i} = obj.{name}\n" for i, name in enumerate(names))
    source = (f"def values(obj):\n{reads}"
              f"    return [{', '.join(f'float({t})' for t in terms)}]\n")
    namespace: dict[str, Any] = {"_f": _FUNCS}
    exec(compile(source, "<asp-stencil parameters>", "exec"), namespace)  # noqa: S102
    return namespace["values"]


def _arg(name: str, names: list[str]) -> str:
    if name not in names:
        names.append(name)
    return f"a{names.index(name)}"


def _source(e: D.Expr, names: list[str]) -> str:
    """Python source computing ``e`` (constants, parameters, and Python's operators on them,
    in the tree's order: each operation parenthesised)."""
    if isinstance(e, D.Param):
        return _arg(e.name, names)
    if isinstance(e, D.Const):   # a Python int, float or bool: repr reads back exactly
        value = e.value
        return f"float({str(value)!r})" if type(value) is float and not math.isfinite(value) \
            else repr(value)
    if isinstance(e, D.BinOp):
        return f"({_source(e.left, names)} {e.op} {_source(e.right, names)})"
    if isinstance(e, D.UnaryOp):
        op = "not " if e.op == "not" else e.op
        return f"({op}{_source(e.operand, names)})"
    if isinstance(e, D.Call):
        return f"_f[{e.func!r}]({', '.join(_source(a, names) for a in e.args)})"
    if isinstance(e, D.Compare):
        parts = [_source(e.left, names)]
        for op, c in zip(e.ops, e.comparators):
            parts += [op, _source(c, names)]
        return f"({' '.join(parts)})"
    if isinstance(e, D.BoolOp):
        return f"bool({f' {e.op} '.join(_source(v, names) for v in e.values)})"
    if isinstance(e, D.IfExp):
        return (f"({_source(e.body, names)} if {_source(e.test, names)} "
                f"else {_source(e.orelse, names)})")
    raise TypeError(f"{type(e).__name__} in a parameter's expression")

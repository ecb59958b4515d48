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


def values_reader(params: tuple[D.Param, ...], checked: tuple[D.Param, ...] = ()
                  ) -> Callable[[Any], list[float]]:
    """A function of the kernel object giving the value of each of ``params`` for a call,
    after computing each of ``checked`` (assignments no statement reads, computed for their
    exceptions only); it raises what reading the attributes or computing from them raises in
    Python (the caller then runs the kernel in Python, which raises that where Python does,
    or not at all)."""
    names: list[str] = []
    consts: list[Any] = []
    terms = [_source(p.expr, names, consts) if p.expr is not None else _arg(p.name, names)
             for p in params]
    checks = "".join(f"    {_source(p.expr, names, consts)}\n" for p in checked)
    reads = "".join(f"    a{i} = obj.{name}\n" for i, name in enumerate(names))
    source = (f"def values(obj):\n{reads}{checks}"
              f"    return [{', '.join(f'float({t})' for t in terms)}]\n")
    namespace: dict[str, Any] = {"_f": _FUNCS, "_k": consts}
    exec(compile(source, "<asp-stencil parameters>", "exec"), namespace)  # noqa: S102
    return namespace["values"]


def _arg(name: str, names: list[str]) -> str:
    if name not in names:
        names.append(name)
    return f"a{names.index(name)}"


def _source(e: D.Expr, names: list[str], consts: list[Any]) -> str:
    """Python source computing ``e`` (constants, parameters, and Python's operators on them,
    in the tree's order: each operation parenthesised). Constants are the folded objects
    themselves (``_k[i]``): a NumPy scalar's repr (``np.float32(1.0)``) named nothing there,
    and every call ran in Python."""
    if isinstance(e, D.Param):
        return _arg(e.name, names)
    if isinstance(e, D.Const):
        consts.append(e.value)
        return f"_k[{len(consts) - 1}]"
    if isinstance(e, D.BinOp):
        return f"({_source(e.left, names, consts)} {e.op} {_source(e.right, names, consts)})"
    if isinstance(e, D.UnaryOp):
        op = "not " if e.op == "not" else e.op
        return f"({op}{_source(e.operand, names, consts)})"
    if isinstance(e, D.Call):
        return f"_f[{e.func!r}]({', '.join(_source(a, names, consts) for a in e.args)})"
    if isinstance(e, D.Compare):
        parts = [_source(e.left, names, consts)]
        for op, c in zip(e.ops, e.comparators):
            parts += [op, _source(c, names, consts)]
        return f"({' '.join(parts)})"
    if isinstance(e, D.BoolOp):
        return f"bool({f' {e.op} '.join(_source(v, names, consts) for v in e.values)})"
    if isinstance(e, D.IfExp):
        return (f"({_source(e.body, names, consts)} if {_source(e.test, names, consts)} "
                f"else {_source(e.orelse, names, consts)})")
    raise TypeError(f"{type(e).__name__} in a parameter's expression")

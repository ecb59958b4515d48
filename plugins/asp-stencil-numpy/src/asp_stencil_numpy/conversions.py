"""Locals that stand for a grid element, converted to the grid's dtype only where that matters.

``output-forwarding`` turns ``out[x] = e; ... out[x] ...`` into a local ``_out_1 = e`` marked
``as_dtype``: in Python the value went through the grid, so it was converted to the grid's dtype
and reads back as a NumPy scalar of it (``out[x] = u64[x]`` into a float32 grid rounds; ``out[x] =
1.0`` reads back as ``float64(1.0)``, which unlike the Python float ``1.0`` is not *weak* under
NEP 50, so ``out[x] * u32[x]`` is float64). On this platform the local is a whole array, so the
conversion is kept where NumPy would otherwise compute in another precision.

Almost always the value already has the grid's dtype (all grids of one dtype and constants that
are Python numbers): the mark is dropped, and the local can be folded into its use
(:mod:`asp_stencil_numpy.inline`) as before. Otherwise the mark stays and the lowering converts
the value when the code runs (``_np.float32(...)``, which raises or overflows as the store in
Python would); such locals are not folded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from asp_stencil import dast as D

__all__ = ["UFUNCS", "settle_conversions", "value_dtype"]

#: Functions of one argument lowered to the NumPy ufunc of that name (result: the argument's
#: dtype for float arguments, the only kind of grid this platform runs).
UFUNCS = ("abs", "sqrt", "exp", "log", "sin", "cos")


def _operand(e: Any, grids: dict[str, str], local: dict[str, np.dtype | None]) -> Any:
    """``e`` as :func:`numpy.result_type` takes it: a Python number as itself (weak), else its
    dtype (``None``: not known)."""
    if isinstance(e, D.Const) and not e.kind:
        return e.value
    return value_dtype(e, grids, local)


def value_dtype(e: Any, grids: dict[str, str],
                local: dict[str, np.dtype | None]) -> np.dtype | None:
    """The dtype of ``e`` as the lowered code computes it, when that is a NumPy value (an array,
    or a NumPy scalar constant); ``None`` for Python numbers and where it is not known.

    ``grids``: each grid's dtype; ``local``: what this function gave each local's value.
    """
    if isinstance(e, D.Const):
        return np.dtype(e.kind) if e.kind else None
    if isinstance(e, D.Read):
        return np.dtype(grids[e.grid])
    if isinstance(e, D.Var):
        return local.get(e.name)
    if isinstance(e, D.UnaryOp) and e.op in ("-", "+"):
        return value_dtype(e.operand, grids, local)
    if isinstance(e, D.Call) and e.func in UFUNCS and len(e.args) == 1:
        return value_dtype(e.args[0], grids, local)
    if isinstance(e, D.BinOp):
        operands: tuple[Any, ...] = (e.left, e.right)
    elif isinstance(e, D.Call) and e.func in ("min", "max"):
        operands = e.args
    elif isinstance(e, D.IfExp):
        operands = (e.body, e.orelse)
    else:
        return None
    values = [_operand(o, grids, local) for o in operands]
    if any(v is None for v in values) or not any(isinstance(v, np.dtype) for v in values):
        return None
    return np.result_type(*values)


def settle_conversions(body: tuple, grids: dict[str, str]) -> tuple:
    """``body`` (a point loop's statements) with ``as_dtype`` dropped where the value already
    has that dtype (and kept on the other locals)."""
    local: dict[str, np.dtype | None] = {}
    out = []
    for s in body:
        if isinstance(s, D.Assign):
            dtype = value_dtype(s.value, grids, local)
            if s.as_dtype:
                want = np.dtype(s.as_dtype)
                if dtype is not None and dtype == want:  # (a dtype equals None: float64)
                    s = s.replace(as_dtype="")
                dtype = want
            local[s.target] = dtype
        out.append(s)
    return tuple(out)

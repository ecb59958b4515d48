"""What the NumPy platform can run: the reason it declines a stencil DAST, or ``None``.

Vectorising evaluates each statement of a point loop for all points at once. That keeps Python's
results exactly when no point depends on another point of the same loop and every read stays
inside the arrays, so the platform declines (and the next platform is tried, usually OpenMP or
pure Python):

* loops marked ``sequential`` (a grid they store read at another point: Gauss-Seidel order);
* border loops reading at a non-zero offset (Python's indexing would wrap or raise there);
* border loops reading a grid they store at its ``nearest_interior`` point when that grid's ghost
  depth is smaller than the loop's: the point read may be another border point of the loop,
  stored before or after it in Python's point order;
* locals carried from one point to the next (read before being assigned in the loop body);
* nodes an earlier pass should have removed (a required domain pass was disabled);
* float32 grids with ``min/max``, ``math`` functions or conditional expressions: in Python those
  mix Python floats (double) with float32 scalars in ways whole-array NumPy does not reproduce;
* arithmetic on a value that is a Python int on some paths (``t = 0 if c else u[x]``) whose
  result Python computes as an int and NumPy's float64 arrays could not: ``-t``, ``t * -1``,
  ``t // -3`` and ``t % -3`` are 0 for ``t = 0`` in Python and -0.0 in float64, and ints beyond
  2**53 are exact in Python only (``asp_stencil.python_ints``);
* operations whose precision Python picks per point from the type of the value a conditional,
  ``min``/``max`` or a ``math`` function gave (``(0.3 if c else 0.7) * float32(0.1)`` is float32
  arithmetic in Python, float64 on a whole float64 array), and selections holding a value
  inexactly (``0.1 if c else float32(0.1)``): :mod:`asp_stencil_numpy.kinds`. It also refuses,
  as the ``type-check`` pass does (a user may disable it), integer powers and Python ints out
  of int64's bounds where NumPy would raise.

A loop may store several grids (several outputs, or an input), each at the loop's point.
"""

from __future__ import annotations

from typing import Any, Callable

from asp_stencil import dast as D
from asp_stencil.python_ints import check_python_ints
from asp_stencil.scalar_types import TypeRefusal

from asp_stencil_numpy.kinds import kinds_reason

__all__ = ["SUPPORTED_DTYPES", "unsupported_reason"]

SUPPORTED_DTYPES = ("<f8", "<f4")


def _var_names(e: Any) -> set[str]:
    return {n.name for n in D.expr_nodes(e) if isinstance(n, D.Var)}


def _float32_reason(prog: D.StencilProgram) -> str | None:
    for n in D.expr_nodes(prog):
        if isinstance(n, D.Call) and n.func != "abs":
            return (f"float32 grid with {n.func}(): Python computes it in double precision "
                    "(the whole-array NumPy version would not)")
        if isinstance(n, D.IfExp):
            return "float32 grid with a conditional expression (mixed double/float32 in Python)"
    return None


def _loop_reason(loop: D.PointLoop, prog: D.StencilProgram, scalars: set[str],
                 kinds: dict[str, Any], at: Callable[[int], str]) -> str | None:
    """Why ``loop`` cannot be vectorised; ``scalars``: top-level locals holding one value,
    ``kinds``: their kinds (:func:`~asp_stencil_numpy.kinds.kinds_reason`); ``at(line)``
    names a kernel line."""
    where = f"the {loop.region} loop at {at(loop.line)}"
    if loop.sequential:
        return (f"{where} reads a grid it stores at another point (Gauss-Seidel order); "
                "whole-array slicing cannot keep Python's point order")
    ghost = prog.grid(loop.grid).ghost_depth
    dim = len(prog.output.shape)
    try:
        signed = check_python_ints(loop.body)
    except TypeRefusal as exc:
        return f"{where}: {exc}"
    if signed:
        return f"{where}: {signed[0]}"
    mixed = kinds_reason(loop.body, {g.name: g.dtype for g in prog.grids}, dict(kinds), at)
    if mixed:
        return f"{where}: {mixed}"
    assigned_in_loop = {s.target for s in loop.body if isinstance(s, D.Assign)}
    stored = {s.grid for s in loop.body if isinstance(s, D.Store)}
    before: set[str] = set()
    for s in loop.body:
        if not isinstance(s, (D.Assign, D.Store)):  # neighbour loops are unrolled by now
            return f"{where} holds a loop the domain passes did not unroll"
        for r in D.reads(s.value):
            off = r.at.offset
            if len(off) != dim:
                return f"{where} reads {r.grid} with a {len(off)}-D offset in a {dim}-D kernel"
            if loop.region == "border" and any(off):
                return (f"{where} reads {r.grid} at offset {off}; border points would index "
                        "outside the grid")
            if any(abs(o) > ghost for o in off):
                return f"{where} reads {r.grid} at offset {off}, beyond the ghost depth {ghost}"
            if 0 < r.at.clamp < ghost and r.grid in stored:
                return (f"{where} reads {r.grid}.nearest_interior(x), a point this loop may also "
                        f"store ({r.grid}'s ghost depth {r.at.clamp} is below the loop's {ghost}): "
                        "Python's point order decides which value it sees")
        for name in sorted(_var_names(s.value)):
            if name in before or (name in scalars and name not in assigned_in_loop):
                continue
            return (f"{where} reads local '{name}' before assigning it: a value carried from "
                    "one point to the next")
        if isinstance(s, D.Assign):
            before.add(s.target)
        elif any(s.at.offset):  # any grid the loop stores, at the loop's point (several outputs)
            return f"{where} stores to {s.grid} at offset {s.at.offset}"
    return None


def unsupported_reason(prog: Any, where: Callable[[int], str] = "kernel line {}".format
                       ) -> str | None:
    """``None`` when :func:`asp_stencil_numpy.lowering.lower_numpy` keeps Python's results;
    ``where(line)``: how a reason names a kernel line (the platform gives its file and line)."""
    if not isinstance(prog, D.StencilProgram):
        return f"not a stencil program ({type(prog).__name__})"
    dtypes = {g.dtype for g in prog.grids}
    bad = dtypes - set(SUPPORTED_DTYPES)
    if bad:
        return f"grid dtype {', '.join(sorted(bad))} (supported: float64, float32)"
    reason = D.unlowered_reason(prog)
    if reason:
        return reason
    if "<f4" in dtypes:
        reason = _float32_reason(prog)
        if reason:
            return reason
    scalars: set[str] = set()  # top-level locals whose current value is one scalar
    kinds: dict[str, Any] = {}  # what kinds_reason found for them
    for s in prog.body:
        if isinstance(s, D.PointLoop):
            reason = _loop_reason(s, prog, scalars, kinds, where)
            if reason:
                return reason
            scalars -= {t.target for t in s.body if isinstance(t, D.Assign)}
        elif isinstance(s, D.Assign):
            if D.reads(s.value):
                return f"a grid read outside a point loop (at {where(s.line)})"
            missing = sorted(_var_names(s.value) - scalars)
            if missing:
                return (f"{where(s.line)} reads local '{missing[0]}' as left by a point "
                        "loop (the last point's value)")
            reason = kinds_reason((s,), {g.name: g.dtype for g in prog.grids}, kinds, where)
            if reason:
                return reason
            scalars.add(s.target)
        else:
            return f"a {type(s).__name__} statement outside a point loop"
    return None

"""Can a kernel's ``iterate`` be temporally blocked, and with which geometry?

Temporal blocking computes several Jacobi sweeps on a piece of the grid while it is in cache. It
must give exactly what ``steps`` plain sweeps give, including the values the plain sweeps leave
alone, so it is only applied to kernels whose sweep is a pure function of the previous state:

* the last input grid is the *state* that ``iterate`` swaps with the output; the other inputs are
  constant fields (read at any offset);
* no point loop reads the output grid (after ``output-forwarding``: ``reads_output`` is false),
  none is ``sequential``, and no loop writes the same point as another loop *in a different way*
  that could depend on order (loops only store, so the last loop writing a point wins, exactly as
  in the plain sweep);
* every point loop uses the same ghost depth ``g`` and interior loops read within ``g``; border
  loops read only at the point itself (offset zero), so the set of points a sweep writes is the
  same every step: the interior box, the border, or both;
* state and output grids are described identically (shape, dtype, ghost depth, neighbours), so
  swapping them does not change the specialisation;
* grids and program carry nothing the generator does not know: a property added to
  :class:`~asp_stencil.dast.GridParam` or :class:`~asp_stencil.dast.StencilProgram` later
  (periodic boundaries, say) makes the plan decline while it has a non-default value, so a new
  DSL feature falls back to plain sweeps until this generator learns it;
* point loops hold only assignments and stores (no statement types added later).

:func:`temporal_plan` returns a :class:`TemporalPlan` or the reason blocking does not apply.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Union

from .. import dast as D

__all__ = ["TemporalPlan", "temporal_plan", "pad3", "stores"]


def pad3(values: tuple[int, ...], fill: int) -> tuple[int, int, int]:
    """Map a 1-, 2- or 3-D tuple onto the generator's 3-D frame ``(wave, tile, row)``.

    1-D ``(n,)`` → ``(fill, fill, n)``; 2-D ``(a, b)`` → ``(a, fill, b)``; 3-D unchanged. The
    outer dimension is swept as a wavefront, the middle one is tiled, rows stay whole.
    """
    if len(values) == 1:
        return (fill, fill, values[0])
    if len(values) == 2:
        return (values[0], fill, values[1])
    if len(values) == 3:
        return (values[0], values[1], values[2])
    raise ValueError(f"temporal blocking supports 1-3 dimensions, got {len(values)}")


@dataclass(frozen=True)
class TemporalPlan:
    """Geometry of a temporally blockable kernel in the padded 3-D frame."""

    dim: int
    shape: tuple[int, int, int]          # padded shape (N0, N1, N2)
    ghost: tuple[int, int, int]          # padded ghost depth (0 on padded dimensions)
    radius: tuple[int, int, int]         # max |offset| of state reads per padded dimension
    state: str                           # the last input grid (swapped with the output)
    output: str
    constants: tuple[str, ...]           # the other inputs, in call order
    coverage: str                        # "interior" | "border" | "all": points a sweep writes
    dtype: str

    @property
    def untouched(self) -> str:
        """Which points a sweep leaves alone: "border", "interior" or "none"."""
        return {"interior": "border", "border": "interior", "all": "none"}[self.coverage]


def _loops(prog: D.StencilProgram) -> list[D.PointLoop]:
    """The point loops that store (a loop without a store has no observable effect)."""
    return [s for s in prog.body if isinstance(s, D.PointLoop) and stores(s)]


def stores(loop: D.PointLoop) -> bool:
    return any(isinstance(s, D.Store) for s in loop.body)


#: the fields of the DAST descriptions this generator knows how to honour
KNOWN_GRID_FIELDS = frozenset({"name", "index", "shape", "dtype", "ghost_depth", "neighbors",
                               "output"})
KNOWN_PROGRAM_FIELDS = frozenset({"name", "grids", "body", "info"})
KNOWN_LOOP_FIELDS = frozenset({"var", "grid", "region", "body", "line", "depth"})


def _unknown_property(node: Any, known: frozenset) -> str | None:
    """The first field of ``node`` outside ``known`` whose value is not its default."""
    for f in fields(node):
        if f.name in known:
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        value = getattr(node, f.name)
        if default is MISSING or value != default:
            return f"{f.name}={value!r}"
    return None


def temporal_plan(prog: D.StencilProgram) -> Union[TemporalPlan, str]:
    """The plan for ``prog`` (an optimised DAST), or a sentence saying why it cannot be blocked."""
    unknown = _unknown_property(prog, KNOWN_PROGRAM_FIELDS)
    if unknown:
        return f"the kernel has {unknown}, which temporal blocking does not support"
    for grid in prog.grids:
        unknown = _unknown_property(grid, KNOWN_GRID_FIELDS)
        if unknown:
            return f"grid {grid.name!r} has {unknown}, which temporal blocking does not support"
    if len(prog.grids) < 2:
        return "iterate needs an input grid to swap with the output"
    dims = prog.dim
    if dims not in (1, 2, 3):
        return f"temporal blocking supports 1-3 dimensions, not {dims}"
    state, out = prog.grids[-2], prog.grids[-1]
    if (state.shape, state.dtype, state.ghost_depth, state.neighbors) != \
            (out.shape, out.dtype, out.ghost_depth, out.neighbors):
        return ("the state grid and the output grid differ (shape, dtype, ghost depth or "
                "neighbours), so each swap re-specialises")
    if len(prog.outputs) > 1:
        return "the kernel writes several grids"
    if any(g.dtype != "<f8" for g in prog.grids):
        return "temporal blocking is generated for float64 grids only"
    if any(g.shape != out.shape for g in prog.grids):
        return "grids of different shapes"
    for s in prog.body:
        if not isinstance(s, (D.PointLoop, D.Assign)):
            return f"top-level {type(s).__name__} statement"
    loops = _loops(prog)
    if not loops:
        return "no point loop writes the output"
    reason = D.unlowered_reason(prog)
    if reason is not None:
        return reason
    depths = {prog.grid(lp.grid).ghost_depth for lp in loops}
    if len(depths) != 1:
        return "point loops over grids with different ghost depths"
    g = depths.pop()
    radius = [0] * dims
    for loop in loops:
        if loop.sequential:
            return f"the {loop.region} loop reads its own output at a neighbour (sequential)"
        unknown = _unknown_property(loop, KNOWN_LOOP_FIELDS)
        if unknown or loop.region not in ("interior", "border"):
            return (f"the {loop.region} loop has {unknown or 'that region'}, which temporal "
                    f"blocking does not support")
        simple = [s for s in loop.body if isinstance(s, (D.Assign, D.Store))]
        if len(simple) != len(loop.body):
            other = next(s for s in loop.body if not isinstance(s, (D.Assign, D.Store)))
            return f"a {type(other).__name__} statement inside the {loop.region} loop"
        for s in simple:
            for r in D.reads(s.value):
                if r.grid == out.name:
                    return f"the {loop.region} loop reads the output grid"
                if r.at.clamp >= 0:
                    return "a border loop reads the nearest interior point (Neumann)"
                if loop.region == "border" and any(r.at.offset):
                    return "a border loop reads a neighbour (only the point itself is supported)"
                if any(abs(o) > g for o in r.at.offset):
                    return f"a read at offset {r.at.offset} exceeds the ghost depth {g}"
                if r.grid == state.name:
                    radius = [max(a, abs(o)) for a, o in zip(radius, r.at.offset)]
    regions = {lp.region for lp in loops}
    coverage = "all" if regions == {"interior", "border"} else regions.pop()
    if g == 0:
        coverage = "all" if "interior" in {lp.region for lp in loops} else "border"
    return TemporalPlan(
        dim=dims, shape=pad3(out.shape, 1), ghost=pad3((g,) * dims, 0),
        radius=pad3(tuple(radius), 0), state=state.name, output=out.name,
        constants=tuple(p.name for p in prog.grids[:-2]), coverage=coverage, dtype=out.dtype)

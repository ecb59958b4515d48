"""C source of the temporally blocked ``iterate`` of one kernel.

The row kernels (one per point loop) are platform-AST functions printed with ``print_c``; the
driver that arranges them into wavefronts, ring buffers and blocks is the Mako template
``templates/temporal.c.mako`` (fixed logic with a handful of specialised constants). The library
exports ``<prefix>_run(x0, x1, constants..., steps, K, B0, B1, B2, sk, jam, wt, nt, wide)``: ``steps``
Jacobi sweeps of the kernel, exactly equal to ``steps`` plain sweeps with swaps, blocked ``K``
time levels deep over chunks of ``B0`` planes, tiles of ``B1`` rows and segments of ``B2``
points (rows skewed level by level too with ``sk``; two rows per pass with ``jam``), or as wavefront tiles (``wt``: the tiles
of a chunk swept in order, passing their edges on instead of recomputing them), with streaming
stores of each
block's last level (``nt``) and the full-width vector engine (``wide``, where ``<prefix>_wide()``
says the library has one; 2: with x-shifted rows): the tuning parameters, chosen at run time,
so every variant shares one compiled library. Calls and parameter declarations are printed by the core's C printer.
"""

from __future__ import annotations

import re

from asp_core import cast as C
from asp_core.templates import render

from .. import dast as D
from ..lower_c import helper_functions
from .analysis import TemporalPlan
from .rows import row_kernels

__all__ = ["temporal_source", "run_symbol", "symbol_prefix", "wide_symbol"]


def symbol_prefix(prog: D.StencilProgram) -> str:
    return "asp_temporal_" + re.sub(r"\W", "_", prog.name)


def run_symbol(prog: D.StencilProgram) -> str:
    return symbol_prefix(prog) + "_run"


def wide_symbol(prog: D.StencilProgram) -> str:
    return symbol_prefix(prog) + "_wide"


#: suffixes of the engines in one library: default vector width, and full-width AVX-512 where
#: gcc targets it (the template compiles that copy only then; ``<prefix>_wide()`` says which).
#: The full-width engine also holds x-shifted rows (:func:`~.rows.xshift_row`), which it runs
#: where ``wide`` is 2
ENGINES = ("", "_w512")

IN_PTR = C.CType("double", 1, True, True)


def _name(n: str) -> C.Name:
    return C.Name(n)


def _call(func: str, *args: C.Expr) -> str:
    """A call printed by the core's printer (no argument lists assembled from strings)."""
    return C.print_c(C.Call(func, list(args)))


def _min(a: C.Expr, b: C.Expr) -> C.Expr:
    return C.Call("asp_lmin", [a, b])


def _max(a: C.Expr, b: C.Expr) -> C.Expr:
    return C.Call("asp_lmax", [a, b])


#: the row segments the driver passes to a row kernel, each clipped to the unit's [xlo, xhi):
#: interior, whole row, and the two ends of an interior row (for a border loop)
_N2, _G2, _XLO, _XHI = _name("N2"), _name("G2"), _name("xlo"), _name("xhi")
_SEGMENTS = {
    "interior": (_max(_G2, _XLO), _min(C.BinOp(_N2, "-", _G2), _XHI)),
    "whole": (_XLO, _XHI),
    "left": (_XLO, _min(_min(_G2, _N2), _XHI)),
    "right": (_max(_max(C.BinOp(_N2, "-", _G2), _G2), _XLO), _XHI),
}


class _RowCall:
    """What the template needs to call one row kernel: per engine, the call for each segment."""

    def __init__(self, index: int, region: str, calls: dict[str, dict[str, str]]) -> None:
        self.index, self.region, self.calls = index, region, calls


def temporal_source(prog: D.StencilProgram, plan: TemporalPlan) -> str:
    """The whole translation unit (C11 + OpenMP) for ``prog`` under ``plan``."""
    engines = {sfx: row_kernels(prog, plan, sfx, xshift=sfx == "_w512") for sfx in ENGINES}
    dzs = sorted({dz for rk in engines[""] for dz in rk.dzs})
    zdzs = sorted({dz for rk in engines[""] for dz in rk.zdzs})
    consts = [_name(f"c_{n}") for n in plan.constants]
    printer = C.CPrinter()
    const_params = [printer.ctype(IN_PTR, f"c_{n}") for n in plan.constants]
    calls = []
    for i, rk in enumerate(engines[""]):
        per: dict[str, dict[str, str]] = {}
        for sfx, rows in engines.items():
            s_args = [C.Index(_name("s"), C.Constant(dzs.index(dz))) for dz in rk.dzs]
            per[sfx] = {seg: _call(rows[i].name, _name("out"), *s_args, *consts, _name("p"),
                                   _name("y"), _name("ys"), lo, hi)
                        for seg, (lo, hi) in _SEGMENTS.items()}
            # row y + 1 of a pair (its own output and input row pointers), and both rows in
            # one pass (interior loops)
            s1_args = [C.Index(_name("s1"), C.Constant(dzs.index(dz))) for dz in rk.dzs]
            per[sfx].update({"next_" + seg: _call(rows[i].name, _name("out1"), *s1_args,
                                                  *consts, _name("p"), _name("y1"), _name("ys"),
                                                  lo, hi)
                             for seg, (lo, hi) in _SEGMENTS.items()})
            # row y of planes p (pointers sz[dz]) and p + 1 (sz[dz + 1]), one at a time or
            # both in one pass
            for tag, dp, o, pl in (("z0_", 0, "out", "p"), ("z1_", 1, "out1", "p1")):
                z_args = [C.Index(_name("sz"), C.Constant(zdzs.index(dz + dp)))
                          for dz in rk.dzs]
                per[sfx].update({tag + seg: _call(rows[i].name, _name(o), *z_args, *consts,
                                                  _name(pl), _name("y"), _name("ys"), lo, hi)
                                 for seg, (lo, hi) in _SEGMENTS.items()})
            pair, zpair = rows[i].pair, rows[i].zpair
            if pair is not None and zpair is not None:
                lo, hi = _SEGMENTS["interior"]
                zp_args = [C.Index(_name("sz"), C.Constant(zdzs.index(dz)))
                           for dz in rk.zdzs]
                args = {"interior": [_name("out"), *s_args, *consts, _name("p"), _name("y"),
                                     _name("ys"), lo, hi],
                        "pair": [_name("out"), _name("out1"), *s_args, *consts, _name("p"),
                                 _name("y"), _name("ys"), lo, hi],
                        "zpair": [_name("out"), _name("out1"), *zp_args, *consts, _name("p"),
                                  _name("y"), _name("ys"), lo, hi]}
                for key, fn, xs in zip(args, (rows[i].function, pair, zpair),
                                       rows[i].xs or (None,) * 3):
                    call = C.Call(fn.name, args[key])
                    per[sfx][key] = C.print_c(call if xs is None else C.Ternary(
                        _name("xs"), C.Call(xs.name, args[key]), call))
        calls.append(_RowCall(rk.index, rk.region, per))
    row_all_calls = {sfx: _call(f"asp_row_all{sfx}", _name("out"), _name("s"), *consts,
                                _name("p"), _name("y"), _name("ys"), _XLO, _XHI,
                                _name("xs"))
                     for sfx in ENGINES}
    row_all2_calls = {sfx: _call(f"asp_row_all2{sfx}", _name("out"), _name("out1"), _name("s"),
                                 *consts, _name("p"), _name("y"), _name("ys"), _XLO, _XHI,
                                 _name("xs"))
                      for sfx in ENGINES}
    row_allz_calls = {sfx: _call(f"asp_row_allz{sfx}", _name("out"), _name("out1"),
                                 _name("sz"), *consts, _name("p"), _name("y"), _name("ys"),
                                 _XLO, _XHI, _name("xs"))
                      for sfx in ENGINES}
    x = _name("x")
    t = _name("t")
    block_calls = {sfx: {depth: _call(
        f"asp_block{sfx}", C.Index(x, C.BinOp(t, "%", C.Constant(2))),
        C.Index(x, C.BinOp(C.BinOp(t, "+", C.Constant(1)), "%", C.Constant(2))), *consts,
        _name(depth) if depth == "k" else C.Constant(1), _name("B0"), _name("B1"), _name("B2"),
        _name("sk"), _name("jam"), _name("nt"), _name("xs" if sfx else "0"),
        _name("scratch")) for depth in ("k", "1")} for sfx in ENGINES}
    wblock_calls = {sfx: _call(
        f"asp_wblock{sfx}", C.Index(x, C.BinOp(t, "%", C.Constant(2))),
        C.Index(x, C.BinOp(C.BinOp(t, "+", C.Constant(1)), "%", C.Constant(2))), *consts,
        _name("k"), _name("B0"), _name("B1"), _name("sk"), _name("jam"), _name("nt"),
        _name("xs" if sfx else "0"), _name("scratch"))
        for sfx in ENGINES}
    helpers = C.print_c(C.Module(list(helper_functions(C.DOUBLE))))
    functions = {sfx: C.print_c(C.Module([f for rk in rows
                                          for f in (rk.function, rk.pair, rk.zpair, *rk.xs)
                                          if f is not None]))
                 for sfx, rows in engines.items()}
    n0, n1, n2 = plan.shape
    g0, g1, g2 = plan.ghost
    r0, r1, r2 = plan.radius
    return render("asp_stencil.temporal", "temporal.c.mako",
                  n0=n0, n1=n1, n2=n2, g0=g0, g1=g1, g2=g2, r0=r0, r1=r1, r2=r2,
                  helpers=helpers, row_functions=functions, rows=calls, dzs=dzs,
                  untouched=plan.untouched, prefix=symbol_prefix(prog),
                  const_params=const_params, row_all_calls=row_all_calls,
                  row_all2_calls=row_all2_calls, row_allz_calls=row_allz_calls, zdzs=zdzs,
                  block_calls=block_calls, wblock_calls=wblock_calls)

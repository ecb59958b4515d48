"""The C helper functions generated code calls (shared by the OpenMP, CUDA and temporal paths).

Each reproduces what Python computes on NumPy scalars, where C's own operator or libm call
differs: Python's left-to-right ``min``/``max``, NumPy's floor division and remainder for floats
(``npy_floor_divide``, ``npy_remainder``) and integers (floor semantics, 0 for a zero divisor,
``MIN // -1 == MIN``), and ``pow`` behind a call gcc cannot specialise. They are
``asp_core.cast`` function definitions, one per C type, named with the type's suffix
(:data:`SUFFIX`).
"""

from __future__ import annotations

import numpy as np

from asp_core import cast as C

from . import scalar_types as T

__all__ = ["helper_functions", "SUFFIX", "INT_DTYPES", "unsigned_type"]

#: name suffix of each precision's helpers
SUFFIX = {"<f8": "", "<f4": "f", "<i8": "_l", "|i1": "_i1", "<i2": "_i2", "<i4": "_i4",
          "|u1": "_u1", "<u2": "_u2", "<u4": "_u4"}
#: the integer precisions generated code computes in
INT_DTYPES = ("|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4")


def unsigned_type(prec: str) -> C.CType:
    """The unsigned C type integer arithmetic of ``prec`` wraps in (at least 32 bits, so the
    C integer promotions cannot bring in signed overflow)."""
    return C.CType("uint64_t" if np.dtype(prec).itemsize == 8 else "uint32_t")



def _helpers(t: C.CType, sfx: str, storage: tuple[str, ...], qualifier: str,
             opaque: tuple[str, ...]) -> list[C.FunctionDef]:
    a, b, r, v = C.Name("a"), C.Name("b"), C.Name("r"), C.Name("v")
    f = "f" if t.base == "float" else ""

    def fn(name: str, params: list[C.Param], body: list[C.Stmt], st: tuple[str, ...] = storage
           ) -> C.FunctionDef:
        return C.FunctionDef(name, params, C.Block(body), ret=t, extern_c=False,
                             qualifier=qualifier, storage=st)

    out = [fn(f"asp_min{sfx}", [C.Param(t, "r"), C.Param(t, "v")],
              [C.Return(C.Ternary(C.BinOp(v, "<", r), v, r))]),
           fn(f"asp_max{sfx}", [C.Param(t, "r"), C.Param(t, "v")],
              [C.Return(C.Ternary(C.BinOp(v, ">", r), v, r))])]
    if t.base not in ("double", "float"):
        return out
    zero, one, half = (C.Constant(0.0, t), C.Constant(1.0, t), C.Constant(0.5, t))
    mod, div, fl = C.Name("mod"), C.Name("div"), C.Name("fl")
    # NumPy's npy_remainder: fmod, then Python's sign rule (the divisor's sign)
    out.append(fn(f"asp_mod{sfx}", [C.Param(t, "a"), C.Param(t, "b")], [
        C.Decl(t, "mod", C.Call("fmod" + f, [a, b])),
        C.If(C.BinOp(b, "==", zero), C.Block([C.Return(mod)])),
        C.If(C.BinOp(mod, "!=", zero),
             C.Block([C.If(C.BinOp(C.BinOp(b, "<", zero), "!=", C.BinOp(mod, "<", zero)),
                           C.Block([C.Assign(mod, C.BinOp(mod, "+", b))]))]),
             C.Block([C.Assign(mod, C.Call("copysign" + f, [zero, b]))])),
        C.Return(mod),
    ]))
    out.append(fn(f"asp_floordiv{sfx}", [C.Param(t, "a"), C.Param(t, "b")], [
        C.If(C.BinOp(b, "==", zero), C.Block([C.Return(C.BinOp(a, "/", b))])),
        C.Decl(t, "mod", C.Call("fmod" + f, [a, b])),
        C.Decl(t, "div", C.BinOp(C.BinOp(a, "-", mod), "/", b)),
        C.If(C.BinOp(mod, "!=", zero),
             C.Block([C.If(C.BinOp(C.BinOp(b, "<", zero), "!=", C.BinOp(mod, "<", zero)),
                           C.Block([C.Assign(div, C.BinOp(div, "-", one))]))])),
        C.If(C.BinOp(div, "!=", zero), C.Block([
            C.Decl(t, "fl", C.Call("floor" + f, [div])),
            C.If(C.BinOp(C.BinOp(div, "-", fl), ">", half),
                 C.Block([C.Assign(fl, C.BinOp(fl, "+", one))])),
            C.Return(fl)])),
        C.Return(C.Call("copysign" + f, [zero, C.BinOp(a, "/", b)])),
    ]))
    out.append(fn(f"asp_pow{sfx}", [C.Param(t, "a"), C.Param(t, "b")],
                  [C.Return(C.Call("pow" + f, [a, b]))], st=opaque))
    return out


def _int_helpers(prec: str, storage: tuple[str, ...], qualifier: str) -> list[C.FunctionDef]:
    """``asp_floordiv_<sfx>`` and ``asp_mod_<sfx>`` for integer dtype ``prec`` with NumPy's
    semantics: floor division and a remainder with the divisor's sign, 0 for a zero divisor
    (NumPy warns and returns 0), ``MIN // -1`` wrapping to ``MIN`` (C would trap)."""
    t = T.ctype_of(prec)
    sfx = SUFFIX[prec]
    a, b, q, r = C.Name("a"), C.Name("b"), C.Name("q"), C.Name("r")
    zero = C.Constant(0)
    params = [C.Param(t, "a"), C.Param(t, "b")]

    def fn(name: str, body: list[C.Stmt]) -> C.FunctionDef:
        return C.FunctionDef(name + sfx, params, C.Block(body), ret=t, extern_c=False,
                             qualifier=qualifier, storage=storage)

    by_zero = C.If(C.BinOp(b, "==", zero), C.Block([C.Return(zero)]))
    if np.dtype(prec).kind == "u":
        return [fn("asp_floordiv", [by_zero, C.Return(C.BinOp(a, "/", b))]),
                fn("asp_mod", [by_zero, C.Return(C.BinOp(a, "%", b))])]
    u = unsigned_type(prec)
    minus_one = C.BinOp(b, "==", C.UnaryOp("-", C.Constant(1)))
    opposite = C.BinOp(C.BinOp(r, "<", zero), "!=", C.BinOp(b, "<", zero))
    return [
        fn("asp_floordiv", [
            by_zero,
            C.If(minus_one, C.Block([C.Return(C.Cast(t, C.BinOp(C.Cast(u, zero), "-",
                                                                C.Cast(u, a))))])),
            C.Decl(t, "q", C.Cast(t, C.BinOp(a, "/", b))),
            C.Decl(t, "r", C.Cast(t, C.BinOp(a, "%", b))),
            C.If(C.BinOp(C.BinOp(r, "!=", zero), "&&", opposite),
                 C.Block([C.Assign(q, C.Cast(t, C.BinOp(q, "-", C.Constant(1))))])),
            C.Return(q)]),
        fn("asp_mod", [
            C.If(C.BinOp(C.BinOp(b, "==", zero), "||", minus_one), C.Block([C.Return(zero)])),
            C.Decl(t, "r", C.Cast(t, C.BinOp(a, "%", b))),
            C.If(C.BinOp(C.BinOp(r, "!=", zero), "&&", opposite),
                 C.Block([C.Assign(r, C.Cast(t, C.BinOp(r, "+", b)))])),
            C.Return(r)]),
    ]


def helper_functions(ctype: C.CType = C.DOUBLE, storage: tuple[str, ...] = ("static", "inline"),
                     qualifier: str = "", opaque: tuple[str, ...] | None = None
                     ) -> list[C.FunctionDef]:
    """``asp_min``, ``asp_max``, ``asp_floordiv`` and ``asp_pow`` as cast functions, for double
    and (suffix ``f``) float, ``asp_min_l``/``asp_max_l`` for int64 and ``asp_min_f``/``asp_max_f``
    (float32 and Python float values held in a double, compared in float32)
    (``qualifier``: e.g. ``__device__`` for CUDA; ``opaque``: the storage of ``asp_pow``, by
    default gcc's ``noipa`` for host code so it stays a real call and the compiler cannot
    specialise ``pow`` on a constant exponent, and ``storage`` for device code, whose ``pow`` is
    CUDA's own). ``ctype`` is unused (every variant is emitted; unused static inline functions
    cost nothing)."""
    if opaque is None:
        opaque = storage if qualifier else ("static", "__attribute__((noipa))")
    out = _helpers(C.DOUBLE, "", storage, qualifier, opaque)
    out += _helpers(C.FLOAT, "f", storage, qualifier, opaque)
    for prec in INT_DTYPES:
        out += _helpers(T.ctype_of(prec), SUFFIX[prec], storage, qualifier, opaque)
        out += _int_helpers(prec, storage, qualifier)
    r, v = C.Name("r"), C.Name("v")
    for name, op in (("asp_min_f", "<"), ("asp_max_f", ">")):
        cmp = C.BinOp(C.Cast(C.FLOAT, v), op, C.Cast(C.FLOAT, r))
        out.append(C.FunctionDef(name, [C.Param(C.DOUBLE, "r"), C.Param(C.DOUBLE, "v")],
                                 C.Block([C.Return(C.Ternary(cmp, v, r))]), ret=C.DOUBLE,
                                 extern_c=False, qualifier=qualifier, storage=storage))
    return out

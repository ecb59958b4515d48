"""Lowering an EM problem to a platform program: the PAST around the Mako kernel bodies.

The generated translation unit has three parts: a prelude of platform-AST nodes (includes and
the compile-time constants as ``#define``s: sizes, padding, offsets of the statistics vector,
block size), the kernel bodies rendered from a Mako template, and the exported entry points as
``extern "C"`` :class:`asp_core.cast.FunctionDef` nodes. Platform passes rewrite the prelude
(e.g. the block size) to make variants; the backend prints the three parts in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from asp_core import cast as c
from asp_core.ir import Node
from asp_gmm.dast import EMProblem, Fused, LogDensity, Moments, find
from asp_gmm.layout import Layout, layout_for
from asp_gmm.reference import KMEANS_CHUNK

__all__ = [
    "CPU_OPS",
    "MOMENT_OPS",
    "KernelPlan",
    "exports",
    "kmeans_trials",
    "plan_for",
    "prelude",
    "program_module",
    "set_define",
    "split_module",
]


@dataclass(frozen=True)
class KernelPlan:
    """What the template needs besides the layout (kept in ``PlatformProgram.meta['plan']``)."""

    op: str
    layout: Layout
    ctype: str  # C type of X
    triangular: bool
    center: str  # origin | component
    fused: bool  # the fuse-em pass ran: fused variants allowed


def simd_shape(isa: tuple[str, ...]) -> tuple[int, int]:
    """``(doubles per SIMD register, SIMD registers)`` of a CPU with these ISA flags
    (:attr:`asp_core.hardware.HardwareInfo.isa`): what the vectors and register tiles are
    sized by."""
    if "avx512f" in isa:
        return 8, 32
    if "avx" in isa or "avx2" in isa:
        return 4, 16
    if "neon" in isa or "asimd" in isa or "sve" in isa:
        return 2, 32
    return 2, 16


def plan_for(problem: EMProblem, isa: tuple[str, ...] | None = None) -> KernelPlan:
    """The plan for ``problem``; ``isa`` (hardware-query flags of the CPU the code is compiled
    for) sizes the SIMD vectors and register tiles, None keeps the AVX-512 shape."""
    density = find(problem, LogDensity)
    moments = find(problem, Moments)
    width, registers = simd_shape(isa) if isa is not None else (8, 32)
    return KernelPlan(
        op=problem.op,
        layout=layout_for(problem.n_components, problem.n_features, problem.covariance,
                          vector_doubles=width, registers=registers),
        ctype="float" if problem.x_dtype == "float32" else "double",
        triangular=bool((density is not None and density.triangular)
                        or (moments is not None and moments.triangular)),
        center=moments.center if moments is not None else "origin",
        fused=any(isinstance(s, Fused) for s in problem.steps),
    )


def _define(name: str, value: int | str) -> c.Define:
    return c.Define(name, c.Constant(value) if isinstance(value, int) else c.Name(value))


def prelude(plan: KernelPlan, block: int, *, cuda: bool = False) -> list[Node]:
    lay = plan.layout
    full = lay.cov == "full"
    nodes: list[Node] = [c.Comment(f"asp_gmm: EM step and log-densities for M={lay.M}, "
                                     f"D={lay.D}, cov={lay.cov}, X {plan.ctype}")]
    nodes += [c.Include(h) for h in ("math.h", "stdint.h", "stdlib.h", "string.h")]
    s1 = lay.s1_size
    s2 = lay.s2_size
    values: list[tuple[str, int | str]] = [
        ("M", lay.M), ("D", lay.D), ("DP", lay.DP), ("MP", lay.MP), ("VW", lay.VW),
        ("VK", lay.VK), ("NV", lay.NV), ("NQ", lay.NQ), ("XS", lay.DP if full else lay.D),
        ("BLOCK", block), ("S1OFF", lay.MP), ("S2OFF", lay.MP + s1),
        ("LPNOFF", lay.MP + s1 + s2), ("NSTAT", lay.n_stat),
        ("NSTATP", (lay.n_stat + 7) // 8 * 8), ("xtype", plan.ctype)]
    if not cuda:  # scikit-learn's k-means++ tries 2 + int(log M) candidates per centre
        values += [("KM_TRIALS", kmeans_trials(lay.M)), ("KM_CHUNK", KMEANS_CHUNK)]
    nodes += [_define(name, value) for name, value in values]
    return nodes


def kmeans_trials(n_clusters: int) -> int:
    """The candidates per k-means++ seeding step: scikit-learn's default ``n_local_trials``."""
    return 2 + int(math.log(n_clusters))


def _ptr(base: str, const: bool = True) -> c.CType:
    return c.CType(base, 1, const)


#: each entry point's pointer parameters after (X, N): (C element type, name, written?)
_POINTERS: dict[str, list[tuple[str, str, bool]]] = {
    "em_step": [("double", "pa", False), ("double", "pb", False), ("double", "pc", False),
                ("double", "shift", False), ("double", "out", True), ("double", "work", True)],
    "log_prob": [("double", "pa", False), ("double", "pb", False), ("double", "pc", False),
                 ("double", "out", True)],
    "e_step": [("double", "pa", False), ("double", "pb", False), ("double", "pc", False),
               ("double", "resp", True), ("double", "lse", True), ("int64_t", "labels", True),
               ("double", "total", True)],
    "m_step": [("double", "resp", False), ("int64_t", "labels", False),
               ("double", "shift", False), ("double", "out", True)],
    "kmeans_assign": [("double", "centers", False), ("double", "moved", False),
                      ("int64_t", "labels", True),
                      ("double", "sums", True), ("double", "counts", True),
                      ("double", "bounds", True)],
    "kmeans_seed": [("double", "xx", False), ("double", "uniforms", False),
                    ("int64_t", "indices", True), ("double", "closest", True)],
}


def exports(op: str) -> list[c.FunctionDef]:
    """The extern "C" entry point forwarding to the template's static ``<op>_impl``."""
    params = [c.Param(_ptr("xtype"), "X"), c.Param(c.CType("int64_t"), "N")]
    params += [c.Param(_ptr(ctype, not written), name) for ctype, name, written in _POINTERS[op]]
    call = c.Call(f"{op}_impl", [c.Name(p.name) for p in params])
    return [c.FunctionDef(f"asp_gmm_{op}", params, c.Block([c.Return(call)]), ret=c.INT,
                          extern_c=True)]


#: the entry points of every OpenMP translation unit (CUDA units have the first two)
CPU_OPS = ("em_step", "log_prob", "e_step", "m_step", "kmeans_assign", "kmeans_seed")
#: the ops computed without the log-densities (no fold-constants needed), OpenMP only
MOMENT_OPS = ("m_step", "kmeans_assign", "kmeans_seed")


def program_module(plan: KernelPlan, block: int, *, cuda: bool = False) -> c.Module:
    """Every entry point, whatever the op: the E-step behind ``predict`` and the initial
    M-step are then the same shared object as the default EM variant (one compile, cache hits
    for the other ops)."""
    ops = CPU_OPS[:2] if cuda else CPU_OPS
    return c.Module(prelude(plan, block, cuda=cuda) + [
        c.Comment("kernel bodies: templates/" + ("em_cuda.cu.mako" if cuda else
                                                 "em_openmp.c.mako")),
        *(fn for op in ops for fn in exports(op))])


def set_define(module: c.Module, name: str, value: int) -> c.Module:
    """A copy of ``module`` with ``#define name value`` (a platform pass's rewrite)."""
    if all(not (isinstance(n, c.Define) and n.name == name) for n in module.body):
        raise KeyError(name)
    return c.Module([c.Define(name, c.Constant(value))
                     if isinstance(n, c.Define) and n.name == name else n for n in module.body])


def split_module(module: c.Module) -> tuple[c.Module, c.Module]:
    """(prelude, exported functions): the template's text goes between them."""
    head = [n for n in module.body if not isinstance(n, c.FunctionDef)]
    tail: list[Node] = [n for n in module.body if isinstance(n, c.FunctionDef)]
    return c.Module(head), c.Module(tail)

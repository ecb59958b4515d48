"""The matrix-powers domain AST.

There is no loop nest to parse here: the "kernel" is the recurrence
``V[j+1] = alpha_j A V[j] + beta_j V[j] + gamma_j V[j-1]`` over a given sparse matrix, and the
frontend turns the matrix description plus the call's shapes into one :class:`MatrixPowersOp`
node.  Domain passes annotate it (structure, ordering, candidate storage formats, block counts,
k-splits); platform optimisation turns the annotations into variants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asp_core.ir import Node

__all__ = ["MatrixStructure", "MatrixPowersOp", "Candidate", "kernel_format"]


@dataclass
class MatrixStructure(Node):
    """Facts about A (from :func:`asp_mpk.analysis.analyse`)."""

    n: int
    nnz: int
    pattern: str
    symmetric: bool
    bandwidth: int
    offsets: tuple[int, ...] | None
    dia_fill: float
    rcm_bandwidth: int | None = None
    dia_compressible: int = 0
    bcsr: tuple[int, ...] = ()
    values_vary: bool = False   # matrices of this pattern came with several values (a stream
                                #   such as A * dt): constants are not compiled in


@dataclass
class Candidate(Node):
    """One storage/partitioning choice the platform optimiser may turn into a variant."""

    format: str                 # "dia-c"/"dia" (banded PA1), "csr" (graph PA1), "csr-sym",
                                #   "bcsrR" (graph PA1 over R x R blocks), "naive"
    nblocks: int = 1
    ksplit: int = 0             # 0: all k levels in one pass
    threads: int = 0            # 0: all cores
    note: str = ""
    nt: bool = False            # streaming stores for the basis (dia formats)
    wave: int = 0               # dia formats: rows per step of a wavefront sweep of each
                                #   block (no redundant ghost rows); 0: PA1 ghost zones
    sizing: str = ""            # what set nblocks ("l2", "l3q", "l3h": the cache share a
                                #   block fills; "few": two per thread; "wave": two per
                                #   thread, swept as wavefronts; "one"), so variant
                                #   names do not depend on n and winners carry over


def kernel_format(fmt: str) -> tuple[str, int]:
    """``(template format, register block size)`` of a candidate format: "dia-c" is a "dia"
    kernel, "csr-sym" and "bcsrR" are "csr" kernels (the latter over R x R blocks)."""
    if fmt.startswith("bcsr"):
        return "csr", int(fmt[4:])
    return {"csr-sym": "csr", "dia-c": "dia"}.get(fmt, fmt), 1


@dataclass
class MatrixPowersOp(Node):
    """Compute ``nvec`` Krylov bases of depth ``k`` (and optionally their Gram matrix)."""

    matrix: MatrixStructure
    dtype: str
    k: int
    nvec: int
    monomial: bool
    gram: bool
    ordering: str = "natural"
    candidates: list[Candidate] = field(default_factory=list)

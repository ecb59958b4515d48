"""Pass ``choose-formats``: the storage formats worth trying for this matrix.

DIA (banded PA1) when few diagonals hold the entries, with constant diagonals compressed to
byte masks when some are constant ("dia-c"; where matrices of this pattern came with several
values, a stream such as ``A * dt``, only the mirroring of a symmetric A, so that the kernel's
code, compiled once, serves every matrix of the stream); graph PA1 over CSR otherwise, when the
ordering is thin enough that k levels of ghost rows stay a small part of the matrix (on an
expander graph every closure is the whole matrix and PA1 cannot save traffic); its symmetric
(upper-triangle) storage when A is symmetric; graph PA1 over BCSR register blocks ("bcsr2",
"bcsr3", ...) when A is made of dense r x r blocks (several unknowns per node), whether or not
it is also banded; the naive k-SpMV baseline last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import asp_pass

from asp_mpk.dast import Candidate, MatrixPowersOp

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext


@asp_pass("choose-formats")
def choose_formats(op: MatrixPowersOp, ctx: SpecializationContext) -> tuple[MatrixPowersOp, bool]:
    """Candidate formats (block counts are filled in by ``size-blocks``)."""
    cands: list[Candidate] = []
    if op.k >= 1:
        m = op.matrix
        if m.offsets is not None and m.values_vary and m.symmetric:
            # constants compiled in would cost a compile for every matrix of the stream
            cands.append(Candidate("dia-c", note="the lower diagonals read from the upper "
                                                 "(values vary: no constants compiled in)"))
        elif m.offsets is not None and (m.dia_compressible or m.symmetric) and \
                not m.values_vary:
            mirrored = m.symmetric and m.dia_compressible < len(m.offsets)
            cands.append(Candidate("dia-c", note=f"{m.dia_compressible} of {len(m.offsets)} "
                                                 "diagonals constant (stored as masks)"
                                   + (", the lower ones read from the upper" if mirrored
                                      else "")))
        if op.matrix.offsets is not None:
            cands.append(Candidate("dia", note=f"{len(op.matrix.offsets)} diagonals, fill "
                                               f"{op.matrix.dia_fill:.2f}"))
        bw = op.matrix.bandwidth if op.ordering == "natural" else \
            (op.matrix.rcm_bandwidth or op.matrix.bandwidth)
        thin = 4 * op.k * bw < op.matrix.n   # ghost zones small next to the matrix
        if op.matrix.offsets is None and thin:  # banded matrices are served better by DIA
            cands.append(Candidate("csr", note=f"graph PA1, {op.ordering} order"))
            if op.matrix.symmetric:
                cands.append(Candidate("csr-sym", note="upper triangle of each local matrix"))
        if thin:
            for r in op.matrix.bcsr[:2]:
                cands.append(Candidate(f"bcsr{r}", note=f"graph PA1 over dense {r}x{r} blocks, "
                                                        f"{op.ordering} order"))
    cands.append(Candidate("naive", note="k threaded SpMVs (baseline)"))
    return op.replace(candidates=cands), cands != list(op.candidates)

"""Memory layout of the generated kernels: padding and register tiling chosen from (M, D).

The generated C code keeps every loop over features or components at a compile-time trip
count and works in whole vectors, so the sizes are padded: rows of the full-covariance
matrices to ``DP`` (a multiple of the vector width ``VW``), component vectors of the diagonal
kernels to ``MP`` (a multiple of ``VK``). This module is the single place that decides those
numbers; the packing code (:mod:`asp_gmm.packing`) and the templates read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_FEATURES_C", "Layout", "layout_for"]

#: largest D the C/OpenMP and CUDA platforms accept (stack tiles stay bounded); larger problems
#: are lowered to the NumPy platform.
MAX_FEATURES_C = 256
#: doubles of a CUDA block's static shared memory (48 KiB)
CUDA_SHARED_DOUBLES = 48 * 1024 // 8


def _round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


@dataclass(frozen=True)
class Layout:
    """Padding and register-tile sizes for one (M, D, covariance type)."""

    M: int
    D: int
    cov: str
    VW: int  # lanes of the vectors over features (full)
    VK: int  # lanes of the vectors over components (diag)
    DP: int  # D padded to VW (full) or D (diag)
    MP: int  # M (full) or M padded to VK (diag)
    unroll: int  # samples per register tile in the full E-step
    rows: int  # covariance rows per register tile in the full M-step
    qchunk: int  # component vectors per register tile in the diag kernels

    @property
    def NV(self) -> int:
        return self.DP // self.VW

    @property
    def NQ(self) -> int:
        return self.MP // self.VK

    @property
    def s1_size(self) -> int:
        return self.M * self.DP if self.cov == "full" else self.D * self.MP

    @property
    def s2_size(self) -> int:
        return self.M * self.DP * self.DP if self.cov == "full" else self.D * self.MP

    @property
    def n_stat(self) -> int:
        """Length of the statistics vector the kernel writes: S0 | S1 | S2 | sum log-sum-exp."""
        return self.MP + self.s1_size + self.s2_size + 1

    def cuda_samples_per_block(self, threads: int) -> int:
        """Samples a CUDA block of ``threads`` stages in shared memory for its statistics
        (``SB``: ``SB (D + MP) + threads`` doubles within 48 KiB of static shared memory);
        0 when not one fits (the CUDA unit would not compile)."""
        return max(0, min(threads, (CUDA_SHARED_DOUBLES - threads) // (self.MP + self.D)))

    def template_args(self) -> dict[str, int | str]:
        return {"M": self.M, "D": self.D, "DP": self.DP, "MP": self.MP, "VW": self.VW,
                "VK": self.VK, "cov": self.cov, "unroll": self.unroll, "rows": self.rows,
                "qchunk": self.qchunk}


def _lanes(count: int, widest: int = 8) -> int:
    """Smallest power of two >= count, capped at ``widest`` (8 doubles = one AVX-512 vector)."""
    lanes = 1
    while lanes < count and lanes < widest:
        lanes *= 2
    return max(lanes, 2)


def layout_for(M: int, D: int, cov: str, *, vector_doubles: int = 8,
               registers: int = 32) -> Layout:
    """The layout of the kernels for ``M`` components, ``D`` features and ``cov``.

    ``vector_doubles`` (doubles per SIMD register) and ``registers`` (SIMD registers) describe
    the target: AVX-512 has 32 registers of 8 doubles, AVX2 16 of 4.  The register tiles
    (``unroll`` rows of ``NV`` vectors in the log-density, ``rows`` in the covariance update)
    are sized to half the registers, so the loads beside them do not spill.
    """
    if cov not in ("full", "diag"):
        raise ValueError(f"no compiled layout for covariance_type={cov!r}")
    if M < 1 or D < 1:
        raise ValueError(f"need M >= 1 and D >= 1, got M={M}, D={D}")
    tile = max(1, registers // 2)
    if cov == "full":
        VW = _lanes(D, vector_doubles)
        DP = _round_up(D, VW)
        NV = DP // VW
        unroll = max(1, min(4, tile // NV))
        rows = max(1, min(VW, tile // NV, 4))
        rows = 1 << (rows.bit_length() - 1)   # a power of two: the tiles must divide VW
        return Layout(M=M, D=D, cov=cov, VW=VW, VK=2, DP=DP, MP=M, unroll=unroll, rows=rows,
                      qchunk=1)
    VK = _lanes(M, vector_doubles)
    MP = _round_up(M, VK)
    qchunk = max(1, min(4, MP // VK))
    return Layout(M=M, D=D, cov=cov, VW=2, VK=VK, DP=D, MP=MP, unroll=1, rows=1, qchunk=qchunk)

"""Temporally blocked multi-step stencils: ``iterate`` that reuses cached data across sweeps.

No Python stencil tool (numba, Devito, pystencils) blocks in time; Asp can because it sees the
whole kernel and the iteration together. :mod:`.analysis` decides whether a kernel qualifies,
:mod:`.rows` and :mod:`.codegen` generate the C, :mod:`.runner` compiles, autotunes and runs it.
"""

from .analysis import TemporalPlan, temporal_plan
from .codegen import temporal_source

__all__ = ["TemporalPlan", "temporal_plan", "temporal_source"]

"""Temporally blocked multi-step stencils: ``iterate`` that reuses cached data across sweeps.

No Python stencil tool (numba, Devito, pystencils) blocks in time; Asp can because it sees the
whole kernel and the iteration together. :mod:`.analysis` decides whether a kernel qualifies,
:mod:`.rows` and :mod:`.codegen` generate the C. The blocked code is a specialisation like any
other: phase 3 ``openmp-temporal`` (:mod:`.platform`), phase 4 ``temporal-params``
(:mod:`.variants`) and phase 5 ``c-temporal`` (:mod:`.backend`), registered in the stencil
plugin; :mod:`.runner` gets them through the kernel's dispatcher and :mod:`.iterate` times them
against plain sweeps.
"""

from .analysis import TemporalPlan, temporal_plan
from .codegen import temporal_source

__all__ = ["TemporalPlan", "temporal_plan", "temporal_source"]

"""Domain passes on the stencil DAST, one per module, each an ``asp_core`` named pass.

Order (see :mod:`asp_stencil.domain`): ``unroll-neighbors`` → ``constant-folding`` →
``output-forwarding`` → ``dead-locals`` → ``cse`` → ``linear-detection`` → ``type-check``. Each can be
disabled by name (``ASP_DISABLE_PASSES``, the kernel option ``disable_passes``) without changing
a result. ``unroll-neighbors`` and ``constant-folding`` are needed to compile kernels with neighbour
loops (respectively attributes or ``distance`` calls), and say so (``asp_pass(..., needed=)``):
disabled there, the kernel runs in Python with a warning naming the pass; with ``type-check``
disabled the C lowering still refuses what it would refuse.
"""

from .constant_folding import constant_folding
from .cse import cse
from .dead_locals import dead_locals
from .linear import linear_detection
from .output_forwarding import output_forwarding
from .type_check import type_check
from .unroll import unroll_neighbors

__all__ = ["unroll_neighbors", "constant_folding", "output_forwarding", "dead_locals", "cse",
           "linear_detection", "type_check"]

"""Domain passes on the stencil DAST, one per module, each an ``asp_core`` named pass.

Order (see :mod:`asp_stencil.domain`): ``unroll-neighbors`` → ``constant-folding`` →
``output-forwarding`` → ``dead-locals`` → ``cse`` → ``linear-detection`` → ``type-check``. Any can be disabled by name
(``ASP_DISABLE_PASSES``) except ``unroll-neighbors`` and ``constant-folding``, which lowering
needs (lowering checks and refuses un-unrolled / un-folded nodes).
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

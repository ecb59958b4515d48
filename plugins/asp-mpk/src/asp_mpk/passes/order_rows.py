"""Pass ``order-rows``: pick the row ordering the partitioner cuts into contiguous parts.

Natural order when A is already banded (stencil matrices), else reverse Cuthill-McKee when it
makes the bandwidth at least 2x smaller: thin orderings give small ghost zones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import asp_pass

from asp_mpk.dast import MatrixPowersOp

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext


@asp_pass("order-rows")
def order_rows(op: MatrixPowersOp, ctx: SpecializationContext) -> tuple[MatrixPowersOp, bool]:
    """Choose natural or RCM ordering from the bandwidths."""
    m = op.matrix
    if m.offsets is None and m.rcm_bandwidth is not None and 2 * m.rcm_bandwidth < m.bandwidth:
        return op.replace(ordering="rcm"), op.ordering != "rcm"
    return op, False

"""Domain passes of the matrix-powers specializer (one per module)."""

from asp_mpk.passes.choose_formats import choose_formats
from asp_mpk.passes.order_rows import order_rows
from asp_mpk.passes.size_blocks import size_blocks

__all__ = ["choose_formats", "order_rows", "size_blocks", "DEFAULT_PASSES"]

DEFAULT_PASSES = [order_rows, choose_formats, size_blocks]

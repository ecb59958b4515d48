"""``python -m asp_core.cli``: the ``asp`` command without its console script."""

from asp_core.cli import main

main()

"""The ``asp`` command line (click), one module per command; plugins add commands by hook."""

from __future__ import annotations

import click

from asp_core._version import __version__

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="asp")
def cli() -> None:
    """Asp is SEJITS for Python: specialise Python kernels to C/OpenMP and CUDA at run time."""


def _register() -> None:
    from asp_core.cli import bench, cache, doctor, explain, listing, new

    for module in (listing, explain, doctor, cache, bench, new):
        cli.add_command(module.command)
    from asp_core.plugins import _call_per_plugin

    _call_per_plugin("asp_register_commands", cli=cli)


_register()


def main() -> None:
    cli()

"""The ``asp`` command line (click), one module per command; plugins add commands by hook."""

from __future__ import annotations

import warnings

import click

from asp_core._version import __version__

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, help="""
    Asp is SEJITS for Python: specialise Python kernels to C/OpenMP and CUDA at run time.

    Messages (progress, tuning, warnings) go to stderr through the ``asp`` logger, at the level
    ASP_LOG_LEVEL names (default INFO) unless -q / -v say otherwise; results go to stdout.
    """)
@click.version_option(__version__, prog_name="asp")
@click.option("-q", "--quiet", "quiet", count=True,
              help="Fewer messages on stderr (-q: warnings and errors, -qq: errors only).")
@click.option("-v", "--verbose", "verbose", count=True,
              help="More messages on stderr (every compile, hook traces with ASP_TRACE_HOOKS).")
def cli(quiet: int, verbose: int) -> None:
    from asp_core.config import load_config

    try:   # a broken config file is one line naming it, not a traceback from deep inside
        if _SETTING_ERROR:
            raise _SETTING_ERROR[0]
        load_config()
    except ValueError as exc:
        # asp doctor shows it as a failed row among the others (ASP_TRACE_HOOKS=maybe ended
        # the doctor in this one line)
        if click.get_current_context().invoked_subcommand != "doctor":
            raise click.ClickException(str(exc)) from None
    loaded, _LOAD_WARNINGS[:] = list(_LOAD_WARNINGS), []   # shown once, by the first command
    seen = set()
    for w in loaded if quiet < 2 else ():   # -qq: errors only, not the plugins' warnings
        if (str(w.message), w.category, w.filename, w.lineno) not in seen:  # as "default" does
            seen.add((str(w.message), w.category, w.filename, w.lineno))
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if quiet or verbose:
        from asp_core.log import set_level

        set_level(("DEBUG", "INFO", "WARNING", "ERROR")[max(0, min(3, 1 + quiet - verbose))])


def _register() -> None:
    from asp_core.cli import bench, cache, doctor, explain, listing, new

    for module in (listing, explain, doctor, cache, bench, new):
        cli.add_command(module.command)
    own = dict(cli.commands)
    from asp_core.plugins import call_per_plugin

    # the plugins load here, at import, before -q is parsed: their warnings (a plugin that
    # cannot load, an ASP_LOAD_PLUGINS name no plugin has) are shown by the command, or not
    # with -qq
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call_per_plugin("asp_register_commands", cli=cli)
        except ValueError as exc:   # a bad setting (ASP_DISABLE_PLUGIN_AUTOLOAD=maybe) read
            _SETTING_ERROR.append(exc)  # while loading plugins: reported by the command
        _keep_builtins(own)
    _LOAD_WARNINGS.extend(caught)


def _keep_builtins(own: dict[str, click.Command]) -> None:
    """Put back a built-in command a plugin's ``asp_register_commands`` replaced (click keeps
    the last command added under a name: ``asp list`` printed a plugin's output and
    ``asp list --json`` was "No such option"), with a ``PluginWarning`` naming its module."""
    from asp_core.errors import PluginWarning

    for name, command in own.items():
        other = cli.commands.get(name)
        if other is not command:
            cli.add_command(command)
            where = getattr(getattr(other, "callback", None), "__module__", "a plugin")
            warnings.warn(f"asp: {where} registers a command {name!r}, the name of one of "
                          "asp's own: it is ignored", PluginWarning, stacklevel=2)


#: a setting found invalid while the plugins' commands were registered (at import)
_SETTING_ERROR: list[ValueError] = []
#: the warnings of loading the plugins (at import)
_LOAD_WARNINGS: list[warnings.WarningMessage] = []
_register()


def main() -> None:
    cli()

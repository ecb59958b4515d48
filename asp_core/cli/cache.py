"""``asp cache info|clear|verify``."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.group("cache")
def command() -> None:
    """Inspect or manage the compiled-code cache."""


@command.command("info")
def info() -> None:
    """Where the cache is, how big, and what is tuned."""
    from asp_core.autotune import PerfDB
    from asp_core.cache import get_cache

    cache = get_cache()
    entries = cache.entries()
    click.echo(f"cache directory: {cache.root}")
    click.echo(f"entries: {len(entries)}, size: {cache.size() / 2**20:.2f} MiB")
    winners = PerfDB().summary()
    click.echo(f"autotuned kernels: {len(winners)}")
    for key, label, variant in winners:
        click.echo(f"  {label or key[:12]}: {variant}")


@command.command("clear")
@click.option("--perf", is_flag=True, help="Also forget autotuning results.")
def clear(perf: bool) -> None:
    """Remove every compiled entry (and with --perf the tuning database)."""
    from asp_core.autotune import PerfDB
    from asp_core.cache import get_cache

    n = get_cache().clear()
    if perf:
        PerfDB().clear()
    click.echo(f"removed {n} entries" + (" and the tuning results" if perf else ""))


@command.command("verify")
def verify() -> None:
    """Check every entry's checksums; remove bad ones (they are rebuilt on next use)."""
    from asp_core.cache import get_cache
    from asp_core.errors import CacheError

    try:
        good, bad = get_cache().verify()
    except CacheError as exc:  # an unsafe directory: say so, no traceback
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(good)} entries OK, {len(bad)} bad entries removed")
    for path in bad:
        click.echo(f"  removed {path}")

"""``asp cache info|clear|verify``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import click

__all__ = ["command"]


@contextmanager
def _clear_errors(done: str = "") -> Iterator[None]:
    """An unusable cache (unsafe, a file, not Asp's) is one line of text, not a traceback;
    ``done``: what was already done, said first (a failure hid it)."""
    from asp_core.errors import CacheError

    try:
        yield
    except CacheError as exc:
        raise click.ClickException(f"{done}, but: {exc}" if done else str(exc)) from None


@click.group("cache", help="Inspect or manage the compiled-code cache.")
def command() -> None:
    pass


@command.command("info", help="Where the cache is, how big, and what is tuned.")
def info() -> None:
    from asp_core.autotune import DB_NAME, PerfDB
    from asp_core.cache import get_cache
    from asp_core.cli import maintenance

    cache = get_cache()
    with _clear_errors():
        maintenance.check_own(cache, "inspect")   # a user's folder: its files are not Asp's
        entries = maintenance.entries(cache)
        size = maintenance.size(cache)
    click.echo(f"cache directory: {cache.root}")
    click.echo(f"entries: {len(entries)}, size: {size / 2**20:.2f} MiB")
    # looking for the tuning database makes the cache: a missing one (a mistyped
    # ASP_CACHE_DIR) has none, and inspecting it must not create it
    db = PerfDB(cache.root / DB_NAME)   # this cache's, not a private fallback's
    winners = db.summary() if cache.root.exists() else []
    click.echo(f"autotuned kernels: {len(winners)}")
    for key, label, variant in winners:
        click.echo(f"  {label or key[:12]}: {variant}")
    damaged = db.set_aside() if cache.root.exists() else []
    if damaged:   # counted in the size above; `clear --perf` removes them
        click.echo(f"damaged tuning databases set aside: {len(damaged)} (newest: "
                   f"{damaged[0].name}; `asp cache clear --perf` removes them)")


@command.command("clear", help="Remove every compiled entry (and with --perf every tuning "
                 "result).")
@click.option("--perf", is_flag=True, help="Also forget autotuning results (and remove the "
              "damaged tuning databases set aside).")
def clear(perf: bool) -> None:
    from asp_core.autotune import DB_NAME, PerfDB
    from asp_core.cache import get_cache
    from asp_core.cli import maintenance

    cache = get_cache()
    with _clear_errors():
        n = maintenance.clear(cache)
    with _clear_errors(f"removed {n} entries"):
        if perf and cache.root.exists():  # a missing cache has no results, nor is made here
            # the cache's own database: PerfDB() falls back to this process's private cache
            # where kernels may not use this one (unsafe mode, another owner), and "removed
            # the tuning results" was reported while they stayed
            PerfDB(cache.root / DB_NAME).clear()
    click.echo(f"removed {n} entries" + (" and the tuning results" if perf else ""))


@command.command("verify", help="""
    Check every entry's checksums; remove bad ones (rebuilt on next use) and leftovers of
    killed compiles. Only Asp's marked entry folders (whole: a file put into one goes with it)
    and build leftovers are removed; other files in the cache directory are never touched.""")
def verify() -> None:
    from asp_core.cache import get_cache
    from asp_core.cli import maintenance

    with _clear_errors():
        good, bad = maintenance.verify(get_cache())
    click.echo(f"{len(good)} entries OK, {len(bad)} bad entries or build leftovers removed")
    for path in bad:
        click.echo(f"  removed {path}")

"""``asp bench [NAME...]``: run registered benchmark suites against their anchors."""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
from pathlib import Path

import click

__all__ = ["command"]


def _load_files(paths: tuple[str, ...]) -> list[str]:
    """Register ``bench_*.py`` files as plugins, so a checkout's benchmarks/ folder runs too;
    returns the paths that define no suite (no file with ``asp_register_benchmarks``)."""
    from asp_core.plugins import get_plugin_manager, register_plugin, unregister_plugin

    pm = get_plugin_manager()
    empty = []
    for base in paths:
        p = Path(base)
        files = sorted(p.glob("bench_*.py")) if p.is_dir() else [p]
        if not files:  # else every installed suite ran instead, silently
            raise click.BadParameter(f"no bench_*.py files in {base}", param_hint="--path")
        suites = 0   # files of this --path that define suites
        for f in files:
            name = f"benchfile:{f.resolve()}"
            if pm.has_plugin(name):
                suites += 1
                continue
            spec = importlib.util.spec_from_file_location(f"asp_bench_{f.stem}", f)
            if f.suffix != ".py" or spec is None or spec.loader is None:
                raise click.BadParameter(f"{f} is neither a folder of bench_*.py files nor a "
                                         "Python file", param_hint="--path")
            module = importlib.util.module_from_spec(spec)
            # in sys.modules while it runs, as an import would put it: @dataclass (with string
            # annotations) and pickle look the module up there and failed on a suite file
            sys.modules[spec.name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - the user's file: one line, not a traceback
                sys.modules.pop(spec.name, None)
                raise click.BadParameter(f"cannot load {f}: {type(exc).__name__}: {exc}",
                                         param_hint="--path") from None
            if hasattr(module, "asp_register_benchmarks"):
                register_plugin(module, name=name)
                if not any(impl.plugin_name == name for impl in
                           pm.hook.asp_register_benchmarks.get_hookimpls()):
                    # pluggy passes over a function without the mark: the file added
                    # nothing, and without NAMES every installed suite ran instead
                    unregister_plugin(name)
                    raise click.BadParameter(
                        f"{f}: asp_register_benchmarks is not marked @hookimpl (from asp_core "
                        "import hookimpl), so it registers nothing", param_hint="--path")
                suites += 1
        if not suites:
            empty.append(base)
    return empty


def _refuse_empty_paths(empty: list[str]) -> None:
    """A ``--path`` that defines no suite is a usage error: it added nothing, and without NAMES
    every installed suite ran instead (hours at full size), silently."""
    if empty:
        raise click.BadParameter(f"{', '.join(empty)}: no asp_register_benchmarks function "
                                 "(a bench_*.py file defines suites with it)",
                                 param_hint="--path")


def _output_dir(out: str) -> Path:
    """Create ``--out`` before any suite runs: a folder that cannot be made would otherwise fail
    only after all the suites ran, losing their results."""
    outdir = Path(out)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {out!r}: {exc.strerror or exc}",
                                 param_hint="--out") from None
    return outdir


@click.command("bench", help="Run benchmark suites (all, or NAMES) with their anchors in the "
                              "same run.")
@click.argument("names", nargs=-1)
@click.option("--quick", is_flag=True, help="Small problem sizes (CI smoke run).")
@click.option("--path", "paths", multiple=True, type=click.Path(exists=True),
              help="Also load bench_*.py files from this folder or file.")
@click.option("--out", "out", default="bench-results", type=click.Path(file_okay=False),
              help="Where to write results.json, roofline.png and ratios.png.")
# no default here: a suite's own count (``compare(..., repeats=3)``) applies only when the
# option is not given; with a default of 5 the suite's count won over an explicit --repeats
@click.option("--repeats", default=None, type=click.IntRange(min=1),
              help="Interleaved repetitions of every case  [default: each suite's own, else 5]")
@click.option("--list", "list_only", is_flag=True, help="Only list the available suites.")
def command(names: tuple[str, ...], quick: bool, paths: tuple[str, ...], out: str,
            repeats: int | None, list_only: bool) -> None:
    try:
        from asp_bench import (BenchContext, Note, collect_benchmarks, measure_peak_gflops,
                               write_ratio_chart, write_results, write_roofline)
    except ImportError:
        raise click.ClickException("`asp bench` needs the asp-bench distribution: pip install "
                                   "asp-bench (plugins/asp-bench in a checkout)") from None

    empty_paths = _load_files(paths)
    reg = collect_benchmarks()
    # before the "no suites" early return: `asp bench NAME` with nothing installed exited 0
    unknown = [n for n in names if n not in reg.benchmarks]
    if unknown and not list_only:
        raise click.BadParameter(f"unknown suite(s) {', '.join(unknown)}; available: "
                                 f"{', '.join(reg.benchmarks) or 'none'}", param_hint="NAMES")
    _refuse_empty_paths(empty_paths)
    if list_only or not reg.benchmarks:
        if not reg.benchmarks:
            click.echo("no benchmark suites installed")
        for b in reg.benchmarks.values():
            click.echo(f"{b.name:<16} [{b.plugin}] {b.description}")
        return
    # a name given twice runs once (its rows were in results.json twice)
    selected = [reg.benchmarks[n] for n in dict.fromkeys(names or reg.benchmarks)]
    outdir = _output_dir(out)
    results = []
    notes = []
    stream = None
    failed: list[str] = []
    for b in selected:
        click.secho(f"== {b.name}: {b.description}", bold=True)
        ctx = BenchContext(b.name, quick=quick, repeats=repeats, echo=click.echo)
        t0 = time.perf_counter()
        try:
            b.func(ctx)
        except Exception as exc:  # noqa: BLE001 - a broken suite must not lose the others
            failed.append(b.name)
            click.echo(traceback.format_exc().rstrip(), err=True)
            click.secho(f"  suite {b.name!r} failed; continuing", fg="red", err=True)
            # saved too: its rows so far were in results.json as if the suite had completed
            ctx.note_rows.append(Note(b.name, f"{type(exc).__name__}: {exc}",
                                      ctx.results[-1].case if ctx.results else None, "failed"))
        click.echo(f"  ({time.perf_counter() - t0:.1f} s)")
        results.extend(ctx.results)
        notes.extend(ctx.note_rows)
        stream = ctx._stream or stream
    write_results(results, outdir / "results.json", notes)
    from asp_core.cli.doctor import stream_copy_gbs
    from asp_core.hardware import query

    if stream is None:
        stream = stream_copy_gbs(query())
    peak = measure_peak_gflops()  # the compute roof, measured now like the suites
    plots = []
    try:
        plots = [p for p in (write_roofline(results, stream, outdir / "roofline.png", peak),
                             write_ratio_chart(results, outdir / "ratios.png")) if p]
    except RuntimeError as exc:  # matplotlib missing: the numbers are still written
        click.echo(f"no plots: {exc}", err=True)
    click.echo(f"results: {outdir / 'results.json'}"
               + (f", plots: {', '.join(map(str, plots))}" if plots else ""))
    if failed:
        raise click.ClickException(f"benchmark suite(s) failed: {', '.join(failed)}")

"""``asp doctor``: is this machine ready to specialise, and if not, what to do."""

from __future__ import annotations

import importlib.util
import warnings
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from asp_core.autotune import PerfDB
    from asp_core.hardware import HardwareInfo
    from asp_core.toolchain import Toolchain

__all__ = ["command", "checks", "available_toolchains", "perf_db_problem", "stream_copy_gbs",
           "stored_stream_copy", "caches_note"]


def checks(measure_stream: bool = True, refresh: bool = False) -> list[tuple[str, bool, str]]:
    """``(name, ok, detail)`` for compilers, OpenMP, CUDA, GPU, MPI, cache, plugins, STREAM."""
    from asp_core.autotune import PerfDB
    from asp_core.cache import get_cache
    from asp_core.cli import maintenance
    from asp_core.errors import CacheError, CacheWarning
    from asp_core.hardware import query
    from asp_core.toolchain import Toolchain

    out: list[tuple[str, bool, str]] = [_settings_check()]
    with warnings.catch_warnings():   # an unusable cache is reported below, once
        warnings.simplefilter("ignore", CacheWarning)
        tcs = available_toolchains()
    for lang, tc in tcs.items():
        if isinstance(tc, Toolchain):
            out.append((f"{lang} compiler", True, f"{tc.executable} ({tc.version})"))
        else:
            out.append((f"{lang} compiler", lang != "c" and lang != "c++", tc))
    c = tcs.get("c")
    if isinstance(c, Toolchain):
        out.append(("OpenMP", c.has_openmp, "-fopenmp works" if c.has_openmp else
                    "the C compiler cannot build OpenMP code: kernels run on one thread "
                    "(install libgomp / libomp)"))
        if c.extra_flags:  # the compiler probes leave them out: "ok" while every compile failed
            why = c.flags_rejected()
            out.append(("ASP_CFLAGS", not why, f"{' '.join(c.extra_flags)}: " +
                        (f"{c.family} rejects them: {why}" if why else "accepted")))
    hw = query()
    out.append(("GPU", True, ", ".join(g.name for g in hw.gpus) if hw.gpus else
                "none found (CUDA kernels are compile-checked only)"))
    out.append(("pycuda", True, "installed" if importlib.util.find_spec("pycuda") else
                "not installed (optional: pip install 'asp-core[cuda]' on a GPU machine)"))
    from asp_core.mpi import find_mpiexec

    mpiexec = find_mpiexec()  # where the MPI runners look: next to this Python, then PATH
    has_mpi4py = importlib.util.find_spec("mpi4py") is not None
    out.append(("MPI", True, f"mpi4py + {mpiexec}" if has_mpi4py and mpiexec else
                "not available: " + ("no mpiexec next to this Python or on PATH" if has_mpi4py
                                     else "mpi4py not installed")
                + " (optional: pip install 'asp-core[mpi]')"))
    cache = get_cache()
    problems = maintenance.problems(cache)
    if problems:
        out.append(("cache", False, "; ".join(problems)))
        out.append(("tuning data", False, "not kept across processes: the cache is not usable"))
    else:
        try:
            good, bad = maintenance.verify(cache)
            out.append(("cache", True, f"{cache.root}: {len(good)} entries OK, {len(bad)} bad "
                        "entries or build leftovers removed"))
        except CacheError as exc:
            out.append(("cache", False, str(exc)))
        perf = perf_db_problem(PerfDB())
        out.append(("tuning data", perf is None, perf or "perf.sqlite usable"))
    try:
        out.extend(_plugin_checks())
    except ValueError as exc:   # a setting loading reads (ASP_TRACE_HOOKS=maybe): a row, not
        out.append(("plugins", False, f"not loaded: {exc}"))   # "Error:" ending the doctor
    if measure_stream:
        out.append(_stream_check(hw, refresh))
    return out


def _plugin_checks() -> list[tuple[str, bool, str]]:
    """The plugins' rows and their own ``asp_doctor_checks``."""
    from asp_core.plugins import broken_plugins, get_plugin_manager

    pm = get_plugin_manager()
    _load_components()
    broken = broken_plugins()
    names = [n for n, _ in pm.list_name_plugin() if n]
    out = [("plugins", not broken, f"{len(names)} loaded ({', '.join(sorted(names))})" +
            "".join(f"; BROKEN {b.name} ({b.distribution}): {b.error}" for b in broken))]
    orphans = _unused_components()
    if orphans:
        out.append(("unused components", True, "; ".join(orphans)))
    for impl in reversed(pm.hook.asp_doctor_checks.get_hookimpls()):
        try:  # one plugin at a time: a check that raises is itself a failed check
            out.extend(_plugin_rows(impl.function()))
        except Exception as exc:  # noqa: BLE001
            out.append((f"plugin {impl.plugin_name}", False,
                        f"its asp_doctor_checks raised {type(exc).__name__}: {exc}"))
    return out


def _plugin_rows(result: Any) -> list[tuple[str, bool, str]]:
    """A plugin's ``asp_doctor_checks`` answer as rows; ``TypeError`` (a failed row then)
    for anything but a list of ``(name, ok, detail)``: a string or a pair ended the whole
    doctor in a traceback."""
    rows = [] if result is None else result
    if not isinstance(rows, list) or not all(
            isinstance(row, (tuple, list)) and len(row) == 3 and isinstance(row[0], str)
            for row in rows):
        raise TypeError(f"returned {result!r:.200}, not a list of (name, ok, detail)")
    return [(name, bool(ok), str(detail)) for name, ok, detail in rows]


def _load_components() -> None:
    """Import every registered component now, and read the platforms of those of phases 4
    and 5: one registered by name that does not import was found only by the kernel that
    chose it, and doctor called every plugin fine (reported with the broken plugins)."""
    from asp_core.errors import PluginError
    from asp_core.plugins import get_registry, report_broken_component

    from asp_core.passes import check_added

    for comp in get_registry().components:
        try:
            comp.obj
        except PluginError as exc:
            report_broken_component(comp, exc, "load")
        else:
            comp.readable_platforms()
    check_added()


def _settings_check() -> tuple[str, bool, str]:
    """The ``ASP_*`` variables and the config file, read as a kernel's first call reads them: an
    invalid value (``ASP_MODE=strickt``) passed every check before and failed only there."""
    from asp_core import config
    from asp_core.passes import check_disabled

    flags = [lambda var=var: config.flag(var) for var in
             ("ASP_DISABLE_PLUGIN_AUTOLOAD", "ASP_TRACE_HOOKS", "ASP_MPI_ABORT_ON_ERROR")]
    problems = config.problems(config.load_config, config.mode, config.autotune_mode,
                               config.compile_timeout, config.phase_variables,
                               lambda: check_disabled(config.disabled_passes(), []),
                               _named_specializers, *flags)
    if problems:
        return ("settings", False, "; ".join(problems))
    path = config.config_path()
    return ("settings", True, "ASP_* variables valid; config file "
            + (f"{path} valid" if path.exists() else f"{path}: none"))


def _named_specializers() -> None:
    """``ValueError`` for a setting that names a specializer no plugin registers (kernels
    ignore it with a warning at their first call, which doctor did not report)."""
    from asp_core.phases import PHASES
    from asp_core.plugins import get_registry

    registry = get_registry()
    for phase in PHASES:
        for name, setting in registry.unknown_specializers(phase):
            raise ValueError(f"{setting} names specializer {name!r}, which no installed "
                             f"plugin registers (installed: "
                             f"{', '.join(sorted(registry.specializers)) or 'none'}): it is "
                             "ignored")


def _unused_components() -> list[str]:
    """Components that are never used: those of a specializer no installed plugin defines
    (asp-stencil-numpy's after ``pip uninstall asp-stencil``), and those that serve only
    platforms no installed plugin of their specializer provides (a misspelt platform in
    ``platforms``, or one an add-on not installed here brings). Nothing else says so."""
    from asp_core.phases import PLATFORM_SELECTION
    from asp_core.plugins import get_registry

    reg = get_registry()
    provided: dict[str, set[str]] = {}
    for c in reg.components:
        if c.phase == PLATFORM_SELECTION:
            provided.setdefault(c.specializer, set()).add(c.name)
    out = []
    undefined: dict[str, set[str]] = {}
    for c in reg.components:
        if c.specializer not in reg.specializers:
            undefined.setdefault(c.specializer, set()).add(c.distribution.strip("()")
                                                             or "in-process")
            continue
        try:
            serves = c.platforms
        except Exception:  # noqa: BLE001 - one that cannot load is a broken plugin, above
            continue
        if serves and not set(serves) & provided.get(c.specializer, set()):
            dist = c.distribution.strip("()") or "in-process"
            out.append(f"{c.specializer}/{c.phase}/{c.name} ({dist}) serves "
                       f"{', '.join(serves)}, which no installed {c.specializer} platform is: "
                       "never used")
    for name, dists in sorted(undefined.items()):
        out.append(f"components of specializer {name!r} ({', '.join(sorted(dists))}), which "
                   "no installed plugin defines: never used (install the plugin that does)")
    return out


def available_toolchains() -> dict[str, Toolchain | str]:
    """Each language mapped to its toolchain, or to the reason none is available."""
    from asp_core.errors import CompilerNotFound
    from asp_core.toolchain import find_toolchain

    found: dict[str, Toolchain | str] = {}
    for lang in ("c", "c++", "cuda"):
        try:
            found[lang] = find_toolchain(lang)
        except CompilerNotFound as exc:
            found[lang] = str(exc)
    return found


def perf_db_problem(db: PerfDB) -> str | None:
    """Why the tuning database cannot be used, or None."""
    import os
    import sqlite3
    from contextlib import closing

    path = db.path
    try:
        if path.exists():
            with closing(db._connect()) as con:
                con.execute("SELECT key, variant, params, seconds, label, recorded FROM "
                            "timings LIMIT 1").fetchall()
                con.execute("SELECT key, variant, label, decided FROM winners LIMIT 1")
        elif not os.access(path.parent if path.parent.exists() else path.parent.parent,
                           os.W_OK):
            return f"{path.parent} is not writable: tuning results cannot be stored"
    except (sqlite3.Error, OSError) as exc:
        return f"{path} cannot be used ({type(exc).__name__}: {exc}); kernels run untuned"
    return None


#: more last-level cache per CPU than any real processor has (3D V-Cache: 12 MiB per core);
#: a figure above it is a hypervisor passing on its host's cache
_MAX_REAL_LLC_PER_CPU = 16 << 20


def _install_command(distribution: str) -> str:
    """The pip command that installs ``distribution``, one released with asp-core from the same
    sources rather than found on every package index (``pip install asp-bench``, the hint given
    before, failed with "No matching distribution found"): its copy in the Asp checkout this
    asp-core runs from, where there is one."""
    import shlex
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "plugins" / distribution
    if (source / "pyproject.toml").is_file():
        return f"pip install -e {shlex.quote(str(source))}"
    return f"pip install {distribution}"


def caches_note(caches: dict[str, int], sharing: dict[str, int], hypervisor: bool,
                 usable: int) -> str:
    """Why ``caches`` are not this process's to use, or ``""``."""
    if not caches:
        return ""
    name = max(caches, key=lambda k: caches[k])
    size, shared = caches[name], sharing.get(name, 0)
    notes = []
    if hypervisor and size > _MAX_REAL_LLC_PER_CPU * max(1, shared or usable):
        notes.append(f"the {name} of {size >> 20} MiB is the VM host's (more than "
                     f"{_MAX_REAL_LLC_PER_CPU >> 20} MiB per CPU of this guest), shared with "
                     "other guests")
    if shared > usable:
        notes.append(f"the {name} is shared by {shared} CPUs and this process may use {usable}")
    return "; ".join(notes)


def stream_copy_gbs(hw: HardwareInfo, refresh: bool = False) -> float:
    """STREAM copy bandwidth in GB/s (counting read + write), measured once per CPU model and
    thread count and kept in ``<cache>/hardware.json`` (``asp doctor``, ``asp bench``); the
    kernel is asp-bench's."""
    from asp_bench import stream

    stored = None if refresh else stored_stream_copy(hw)
    if stored is not None:
        return stored[0]
    gbs = stream.measure_stream_copy(max(4 * hw.last_level_cache, 64 << 20))
    _store_stream_copy(hw, gbs)
    return gbs


def _store_stream_copy(hw: HardwareInfo, gbs: float) -> None:
    """Keep ``gbs`` in ``<cache>/hardware.json`` where the cache can be written: the memo only
    saves the next measurement, and a read-only cache, a full disk or a ``hardware.json`` that is
    not a file made the measurement just taken fail (``asp doctor``: "could not measure";
    ``asp bench``: a traceback after the whole run, without its plots)."""
    import contextlib
    import json
    import os
    import time

    from asp_core.cache import cache_file

    path = cache_file("hardware.json")
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"ident": _stream_ident(hw), "stream_copy_gbs": gbs,
                                   "measured": time.time()}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # a partial one (full disk); read-only: none
            tmp.unlink(missing_ok=True)


def stored_stream_copy(hw: HardwareInfo) -> tuple[float, float] | None:
    """``(GB/s, Unix time measured)`` stored for this CPU and thread count, or None."""
    import json

    from asp_core.cache import cache_file

    try:
        data = json.loads(cache_file("hardware.json").read_text(encoding="utf-8"))
        if data.get("ident") == _stream_ident(hw):
            return float(data["stream_copy_gbs"]), float(data.get("measured", 0.0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _stream_ident(hw: HardwareInfo) -> str:
    from asp_core.hardware import default_threads

    return f"{hw.cpu_model}|{default_threads()}"


def _stream_check(hw: HardwareInfo, refresh: bool = False) -> tuple[str, bool, str]:
    """The STREAM copy figure, labelled as measured now or as the cached one (with its date)."""
    import time

    stored = None if refresh else stored_stream_copy(hw)
    if stored is not None:
        gbs, when = stored
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(when)) if when else "earlier"
        return ("STREAM copy", True, f"{gbs:.1f} GB/s (cached measurement from {date}; "
                "asp doctor --refresh re-measures)")
    if importlib.util.find_spec("asp_bench") is None:
        return ("STREAM copy", True, "not measured: the STREAM kernel comes with asp-bench "
                f"({_install_command('asp-bench')})")
    from asp_core.log import Progress

    progress = Progress("measuring STREAM copy bandwidth (once, then cached)", 1)
    try:
        gbs = stream_copy_gbs(hw, refresh=True)
    except Exception as exc:  # noqa: BLE001
        return ("STREAM copy", False, f"could not measure: {exc}")
    finally:
        progress.close()
    return ("STREAM copy", True, f"{gbs:.1f} GB/s (measured now)")


@click.command("doctor", help="Check compilers, OpenMP, CUDA, GPU, MPI, the cache, plugins and "
                               "memory bandwidth.")
@click.option("--refresh", is_flag=True, help="Re-measure the STREAM bandwidth.")
@click.option("--no-stream", is_flag=True, help="Skip the bandwidth measurement.")
def command(refresh: bool, no_stream: bool) -> None:
    from asp_core.hardware import available_cpus, query

    hw = query()
    click.echo(f"machine: {hw.cpu_model}, {hw.physical_cores} cores / {hw.logical_cpus} threads, "
               f"{hw.memory_bytes / 2**30:.1f} GiB, caches "
               + ", ".join(f"{k} {v >> 10} KiB" for k, v in hw.caches.items())
               + f", ISA {' '.join(hw.isa)}")
    note = caches_note(hw.caches, hw.cache_sharing, hw.hypervisor, available_cpus())
    if note:
        click.echo(f"  note: cache sizes are not this process's to count on: {note}")
    results = checks(measure_stream=not no_stream, refresh=refresh)
    width = max(len(name) for name, _, _ in results)
    failed = 0
    for name, ok, detail in results:
        failed += not ok
        click.echo(f"  [{click.style('ok', fg='green') if ok else click.style('FAIL', fg='red')}] "
                   f"{name:<{width}} {detail}")
    if failed:
        raise SystemExit(1)



"""``asp explain SCRIPT``: run a script and show what Asp did with each kernel."""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import sys
import threading
import time
import traceback
from typing import Any, Iterator, NoReturn

import click

from asp_core import recording
from asp_core.context import SpecializationContext
from asp_core.decisions import VARIANT
from asp_core.errors import AspError
from asp_core.passes import known_passes
from asp_core.phases import PHASES, PLATFORM_SELECTION
from asp_core.plugins import get_registry, hookimpl, register_plugin, unregister_plugin

__all__ = ["command", "render"]


def _record_dict(rec: recording.KernelRecord) -> dict[str, Any]:
    def clean(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k != "time"}

    phases = [clean(d) for d in rec.of("phase")]
    compiles = [clean(d) for d in rec.of("compile")]
    return {
        "kernel": rec.kernel, "specializer": rec.specializer, "key": rec.key,
        "file": rec.filename, "line": rec.lineno, "source": rec.source,
        "fallback": rec.fallback,
        "dast": [clean(d) for d in rec.of("dast")],
        "passes": [clean(d) for d in rec.of("pass")],
        "phases": phases,
        "program": [clean(d) for d in rec.of("program")],
        "variants": [clean(d) for d in rec.of("variants")],
        "builds": [clean(d) for d in rec.of("build")],
        "compiles": [{k: v for k, v in c.items() if k != "source"} | {"source": c.get("source")}
                     for c in compiles],
        "autotune": [clean(d) for d in rec.of("autotune")],
        # every typed decision (the phases' and the tuner's are shown above in the text), and
        # the candidates dropped with their reason (a tuner's exclusions, variants that
        # could not be built): without them a pruned candidate (iterate's plain sweeps) or a
        # plugin's own decision (asp-mpk's plan-fallback) was shown nowhere
        "decisions": [clean(d) for d in rec.of("decision")],
        "dropped": [clean(d) for e, d in rec.events
                    if e in ("autotune-excluded", "variant-skipped")],
        # what a component noted with ctx.record under a kind of its own (the writer's guide
        # says record is for what asp explain shows: such events were dropped)
        "events": [{"event": e} | clean(d) for e, d in rec.events if e not in _SHOWN],
    }


#: the event kinds a report shows in sections of their own
_SHOWN = ("dast", "pass", "phase", "program", "variants", "build", "compile", "autotune",
          "decision", "autotune-excluded", "variant-skipped")


def _heading(rec: dict[str, Any]) -> str:
    """A report's first line; where the kernel was defined when it was (a run over a matrix
    met the first time, or a fit in NumPy, has no kernel source: it read "at :0")."""
    where = f" at {rec['file']}:{rec['line']}" if rec["file"] else ""
    return f"=== kernel {rec['kernel']} ({rec['specializer']}){where}"


def _pass_state(p: dict[str, Any]) -> str:
    """What one pass did: left out (a plugin's that could not be placed), skipped, raised
    (it refused the kernel or failed), or changed."""
    if p.get("left_out"):
        return f"left out: {p['left_out']}"
    if p["skipped"]:
        return "skipped (disabled)"
    if p.get("error"):
        return f"raised: {p['error']}"
    return "changed the IR" if p["changed"] else "no change"


def _fallback_lines(rec: dict[str, Any]) -> list[str]:
    return ["--- FALLBACK to pure Python", f"  {rec['fallback']}"] if rec["fallback"] else []


def render_after(rec: dict[str, Any], name: str) -> str:
    """The IR of one kernel after every run of the pass called ``name``, and the kernel's
    fallback: without it, a kernel a pass refused (or one refused before the pass) read as if
    the pass had simply not been needed."""
    out = [_heading(rec)]
    runs = [p for p in rec["passes"] if p["name"] == name]
    if not runs:
        ran = ", ".join(dict.fromkeys(p["name"] for p in rec["passes"])) or "none"
        out.append(f"--- pass {name!r} did not run for this kernel (passes: {ran})")
    for p in runs:
        if p.get("left_out") or (p.get("error") and not p["skipped"]):
            out.append(f"--- no IR after {p['manager']}:{name} ({_pass_state(p)})")
        else:
            out += [f"--- IR after {p['manager']}:{name} ({_pass_state(p)})", p.get("ir") or ""]
    return "\n".join(out + _fallback_lines(rec))


def render(rec: dict[str, Any]) -> str:
    """Human-readable text for one kernel record."""
    return "\n".join(text for _, text in _sections(rec))


def _sections(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """``(lexer, text)`` pieces of the report: ``""`` for plain text, else the language of
    generated code (highlighted on a terminal)."""
    out = [_heading(rec),
           f"specialised on: {rec['key']}"]
    if rec["source"]:
        out += ["--- Python source", rec["source"].rstrip()]
    for d in rec["dast"]:
        out += [f"--- DAST after {d['phase']}", d["ir"]]
    if rec["passes"]:
        out.append("--- domain/platform passes")
        for p in rec["passes"]:
            out.append(f"  {p['manager']}:{p['name']}: {_pass_state(p)}")
    if rec["phases"]:
        out.append("--- components chosen")
        for p in rec["phases"]:
            line = f"  {p['phase']}: {p.get('component')} — {p.get('reason')}"
            if p.get("rejected"):
                line += "; not usable: " + "; ".join(f"{n} ({r})" for n, r in p["rejected"])
            out.append(line)
    pieces: list[tuple[str, str]] = []
    for prog in rec["program"]:
        out.append(f"--- platform program ({prog['platform']})")
        pieces += [("", "\n".join(out)), ("cuda" if "cuda" in prog["platform"] else "c",
                                          prog["text"].rstrip())]
        out = []
    for v in rec["variants"]:
        out.append("--- variants: " + ", ".join(v["names"]))
    for c in rec["compiles"]:
        state = "cache hit" if c["cached"] else f"compiled in {c['seconds']:.3f} s"
        variant = f" for variant {c['variant']}" if c.get("variant") else ""
        out += [f"--- compile {c['name']}{variant} ({state})", "  " + " ".join(c["command"]),
                f"  cache entry: {c['path']}"]
    for a in rec["autotune"]:
        out.append(f"--- autotuning: winner {a['winner']} ({a['source']})")
        for name, best, n in a.get("timings", []):
            out.append(f"  {name:<32} {best * 1e3:10.3f} ms  ({n} timing{'s' if n > 1 else ''})")
    if rec.get("dropped"):
        out.append("--- candidates dropped")
        out += [f"  {d.get('variant')}: {d.get('reason') or 'no reason given'}"
                for d in rec["dropped"]]
    other = [d for d in rec.get("decisions", ()) if d["what"] not in (*PHASES, VARIANT)]
    if other:
        out.append("--- other decisions")
        out += [f"  {d['what']}: {_decision_text(d)}" for d in other]
    if rec.get("events"):
        out.append("--- other events")
        out += ["  " + e["event"] + ": " + ", ".join(f"{k}={v!r:.100}" for k, v in e.items()
                                                     if k != "event") for e in rec["events"]]
    out += _fallback_lines(rec)
    if out:
        pieces.append(("", "\n".join(out)))
    return pieces


def _decision_text(d: dict[str, Any]) -> str:
    """``choice — reason (source; key=value ...)`` of one decision event."""
    text = str(d["choice"]) + (f" — {d['reason']}" if d.get("reason") else "")
    extra = [d["source"]] if d.get("source") else []
    extra += [f"{k}={v}" for k, v in (d.get("params") or {}).items()]
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _show(rec: dict[str, Any]) -> None:
    """Print one report: plain text, or with highlighted C/CUDA on a terminal."""
    if not sys.stdout.isatty():
        click.echo(render(rec))
        return
    from rich.console import Console
    from rich.syntax import Syntax

    console = Console(highlight=False, soft_wrap=True)
    for lexer, text in _sections(rec):
        if lexer:
            console.print(Syntax(text, lexer, background_color="default"))
        else:
            console.print(text, markup=False)


class _LowerFor:
    """The plugin ``asp explain --platform NAME`` registers while the script runs: each
    finished specialisation is also taken through phases 1-4 for the named platform (its
    run-time check skipped: code generation only, e.g. CUDA on a machine without a GPU) and
    recorded as a report of its own, named ``KERNEL [lowered for NAME]``."""

    def __init__(self, platform: str) -> None:
        self.platform = platform

    @hookimpl
    def asp_specialization_done(self, ctx: SpecializationContext, result: Any) -> None:
        from asp_core.pipeline import Pipeline

        named = SpecializationContext(ctx.specializer, ctx.func, ctx.args, ctx.kwargs,
                                      ctx.instance, ctx.options, ctx.key, ctx.kernel_name)
        try:
            Pipeline(get_registry(), ctx.specializer).variants(named, platform=self.platform)
        except AspError as exc:
            named.record("phase", phase=PLATFORM_SELECTION, component=None,
                         reason=f"cannot lower for {self.platform!r}: {exc}")
        recording.add_context(named, f"{ctx.kernel_name} [lowered for {self.platform}]")


@contextlib.contextmanager
def _lowering_for(platform: str | None) -> Iterator[None]:
    if platform is None:
        yield
        return
    name = register_plugin(_LowerFor(platform), name="asp-explain-platform")
    try:
        yield
    finally:
        unregister_plugin(name)


#: seconds ``asp explain`` waits at most for the script's background work
WAIT_LIMIT_S = 300.0


#: the name prefix of Asp's own background threads (``asp-mpk-specialise``,
#: ``asp-gmm-prepare-...``): daemon threads explain waits for, unlike the script's own
ASP_THREAD_PREFIX = "asp-"


def _awaited(thread: threading.Thread) -> bool:
    """Whether the report waits for ``thread``: a non-daemon thread (Python waits for it at
    exit too) or one of Asp's background threads (daemon threads named
    :data:`ASP_THREAD_PREFIX`...: a specialisation the report should show).  A daemon thread of
    the script's own (a monitor, a server loop) is not waited for, as ``python SCRIPT`` does
    not wait for it: explain waited its whole limit, 300 s, for one that never ends."""
    return not thread.daemon or thread.name.startswith(ASP_THREAD_PREFIX)


def _wait_for_background(before: set[threading.Thread]) -> None:
    """Let the script's background specialisations finish before the report: asp-mpk, for
    one, specialises a matrix on its own thread while SciPy serves the first calls, and a short
    script ends before that thread does.  Waits (at most :data:`WAIT_LIMIT_S` in all) for the
    threads the script started (see :func:`_awaited`), apart from the core's long-lived
    workers (the compile pool, the worker of interruptible calls), and then for the work queued
    on those."""
    from asp_core import background, interrupt

    limit = WAIT_LIMIT_S
    deadline = time.monotonic() + limit
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()
                and t is not threading.current_thread() and _awaited(t)
                and not background.is_worker(t) and not interrupt.is_worker(t)]
        if not left and not background.busy(low_priority=True) and interrupt.wait_idle(0):
            return
        if time.monotonic() > deadline:
            click.echo(f"asp explain: stopped waiting for {len(left)} background thread(s) "
                       f"after {limit:.0f} s; their kernels are not shown", err=True)
            return
        for thread in left:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not left:
            time.sleep(0.05)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """The script's output (Python prints and C-level writes to fd 1) goes to stderr, so that
    stdout carries only the JSON report."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests, notebooks)
        fd = None
    saved = os.dup(fd) if fd is not None else None
    if fd is not None:
        sys.stderr.flush()
        os.dup2(sys.stderr.fileno(), fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None and fd is not None:
            with contextlib.suppress(ValueError):   # the script closed it (as its stdout)
                sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)


@contextlib.contextmanager
def _streams_kept() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` as they were before the script, for what follows it: a
    script may replace or close them (the reports then raised "I/O operation on closed file"
    and were lost). One the script closed is opened again on its file descriptor."""
    saved = sys.stdout, sys.stderr
    fds = []
    for stream in saved:
        try:
            fds.append(stream.fileno())
        except (AttributeError, OSError, ValueError):  # not a real file (tests, notebooks)
            fds.append(None)
    try:
        yield
    finally:
        kept = []
        for stream, fd in zip(saved, fds):
            if stream.closed and fd is not None:
                stream = open(fd, "w", buffering=1, closefd=False,  # noqa: SIM115
                              encoding=getattr(stream, "encoding", None),
                              errors="backslashreplace")
            kept.append(stream)
        sys.stdout, sys.stderr = kept


def _script_traceback(exc: BaseException, script: str) -> str:
    """The script's exception as ``python SCRIPT`` prints it: the traceback from the script's
    own first frame on, without explain's and runpy's frames above it; for a script that does
    not compile (a SyntaxError: no frame of the script ran), Python's report of the error."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:  # runpy's name for it
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()


# everything after SCRIPT is the script's, verbatim (its own --json, -h, --): `python SCRIPT
# ARGS` semantics; asp explain's options go before SCRIPT
@click.command("explain", context_settings={"allow_interspersed_args": False},
               help="""
    Run SCRIPT and explain every kernel it specialised or that fell back.

    Options go before SCRIPT: every argument after it is passed to the script unchanged, as
    ``python SCRIPT ARGS`` would (``asp explain --json run.py --n 3``).  With --json each pass
    entry carries the IR after it (key "ir").  Exits with the script's status when it exits
    with one, 1 when it raises, 130 when it is interrupted (Ctrl-C), as Python does.""")
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--kernel", "kernel", default=None, help="Only kernels whose name contains this.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--after", "after", default=None, metavar="PASS",
              help="Print only the IR after the named pass (e.g. constant-folding, or "
                   "stencil:cse for one specializer's kernels); with --json, only that pass's "
                   "entries.")
@click.option("--platform", "platform", default=None, metavar="NAME",
              help="Also lower each kernel for this platform (e.g. cuda), without asking "
                   "whether it can run here, and show that code as a report of its own.")
def command(script: str, script_args: tuple[str, ...], kernel: str | None, as_json: bool,
            after: str | None, platform: str | None) -> None:
    # PASS, SPEC:PASS (as ASP_DISABLE_PASSES names them) or MANAGER:PASS (as the reports name
    # a pass run: "stencil-domain:cse"); a prefix that is no specializer's name is a pass
    # manager's. A pass or specializer the script defines itself exists once it has run: a
    # name no plugin defines is refused before the run (a typo must not cost it) unless the
    # script's text holds it, and after the run if still undefined.
    prefix, _, after = after.rpartition(":") if after is not None else ("", "", None)
    if after is not None and after not in known_passes():
        if after not in _text(script):
            _no_such_pass(after)
        click.echo(f"asp explain: no installed plugin defines a pass {after!r}; running "
                   f"{script}, which names it", err=True)
    recording.start()
    argv, path = sys.argv, list(sys.path)
    sys.argv = [script, *script_args]
    # the directory of the script first on sys.path, as `python SCRIPT` does: that of the file
    # a symbolic link points to (modules beside the real file import, those beside the link
    # do not)
    sys.path.insert(0, os.path.dirname(os.path.realpath(script)))
    status = 0
    raised: type[BaseException] | None = None
    ours = os.getpid()   # a child the script forks leaves it too, and must not report
    quiet_stdout = _stdout_to_stderr() if as_json else contextlib.nullcontext()
    before = set(threading.enumerate())
    try:
        with _streams_kept(), quiet_stdout, _lowering_for(platform):
            try:
                runpy.run_path(script, run_name="__main__")
            finally:
                _wait_for_background(before)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            status = exc.code if isinstance(exc.code, int) else 1   # sys.exit("msg") is 1
            if os.getpid() == ours:
                click.echo(f"asp explain: {script} exited with {exc.code}", err=True)
    except BaseException as exc:  # noqa: BLE001 - the script's own error: show it, then the
        # kernels (Ctrl-C too: click's "Aborted!" dropped every report; a BaseException
        # subclass of the script's gave asp's own traceback and no report)
        status, raised = (130 if isinstance(exc, KeyboardInterrupt) else 1), type(exc)
        click.echo(_script_traceback(exc, script), err=True)
        if os.getpid() == ours:
            click.echo(f"asp explain: {script} raised an exception; kernels recorded before "
                       "it follow", err=True)
    finally:
        sys.argv = argv
        sys.path[:] = path
        recs = recording.stop()
    if os.getpid() != ours:   # a forked child ends as `python SCRIPT`'s would: reports are
        raise SystemExit(status)   # its parent's (--json: stdout held two documents)
    if after is not None and after not in known_passes():
        _no_such_pass(after)
    by_manager = bool(prefix) and prefix not in get_registry().specializers and \
        all(r.specializer != prefix for r in recs)
    data = [_record_dict(r) for r in recs if (kernel is None or kernel in r.kernel)
            and (by_manager or prefix in ("", r.specializer))]
    if by_manager:   # the kernels whose pass manager of that name ran the pass
        data = [{**rec, "passes": [p for p in rec["passes"] if p["manager"] == prefix]}
                for rec in data]
        data = [rec for rec in data if any(p["name"] == after for p in rec["passes"])]
    if after is not None and as_json:   # each kernel's runs of that pass only (the IR after it)
        data = [{**rec, "passes": [p for p in rec["passes"] if p["name"] == after]}
                for rec in data]
    comm = _world_of_several_ranks()
    if comm is not None and raised is not None:
        # the other ranks may wait for this one in a collective of the script (the gather of
        # the reports would hang): end every rank as `python SCRIPT` does, after this rank's
        # reports on stderr (asp_core.mpi.abort_on_uncaught; returns when that is off)
        from asp_core.mpi import abort_caught

        abort_caught(raised, _ranked(comm.Get_rank(), comm.Get_size(), _reports(data, after)))
    if comm is not None:   # rank 0 prints every rank's reports, one rank after the other
        _show_ranks(comm, data, as_json, after)
    elif as_json:
        click.echo(json.dumps({"kernels": data}, indent=1, default=repr))
    else:
        if not data:   # say which filter left none
            filters = [f"matching {kernel!r}"] * bool(kernel) + \
                [f"running {prefix}:{after}"] * bool(prefix)
            click.echo("asp explain: no kernel was specialised" + (
                f" {' and '.join(filters)} (of {len(recs)} specialised)" if filters else ""))
        for rec in data:
            if after is None:
                _show(rec)
            else:
                click.echo(render_after(rec, after))
            click.echo()
    if status:
        raise SystemExit(status)


def _text(script: str) -> str:
    """The script's source text ("" where it cannot be read: running it says why)."""
    try:
        with open(script, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _no_such_pass(name: str) -> NoReturn:
    raise click.BadParameter(f"no pass is called {name!r}; known passes: "
                             f"{', '.join(sorted(known_passes())) or 'none'}",
                             param_hint="--after")


def _world_of_several_ranks() -> Any:
    """MPI's world communicator when the script ran under MPI with more than one rank (each
    rank runs ``asp explain``), else None."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return None
    return mpi.COMM_WORLD if mpi.COMM_WORLD.Get_size() > 1 else None


def _show_ranks(comm: Any, data: list[dict[str, Any]], as_json: bool, after: str | None) -> None:
    """Every rank's reports gathered on rank 0 and printed there, labelled with their rank:
    each rank printing its own interleaved them (broken JSON, reports with no rank)."""
    if as_json:
        mine = json.dumps([{**rec, "rank": comm.Get_rank()} for rec in data], default=repr)
    else:
        mine = _reports(data, after) or "asp explain: no kernel was specialised"
    gathered = comm.gather(mine, root=0)
    if comm.Get_rank() != 0:
        return
    if as_json:
        click.echo(json.dumps({"kernels": [rec for text in gathered for rec in json.loads(text)]},
                              indent=1))
        return
    for rank, text in enumerate(gathered):
        click.echo(_ranked(rank, len(gathered), text))


def _reports(data: list[dict[str, Any]], after: str | None) -> str:
    """One rank's reports as text (each after pass ``after`` when given)."""
    return "\n\n".join(render(rec) if after is None else render_after(rec, after)
                       for rec in data)


def _ranked(rank: int, size: int, text: str) -> str:
    return f"##### rank {rank} of {size}\n{text}\n"

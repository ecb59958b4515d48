"""``asp explain SCRIPT``: run a script and show what Asp did with each kernel."""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback
from typing import Any

import click

from asp_core import recording
from asp_core.passes import known_passes

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
    }


def render_after(rec: dict[str, Any], name: str) -> str:
    """The IR of one kernel after every run of the pass called ``name``."""
    out = [f"=== kernel {rec['kernel']} ({rec['specializer']}) at {rec['file']}:{rec['line']}"]
    runs = [p for p in rec["passes"] if p["name"] == name]
    if not runs:
        ran = ", ".join(dict.fromkeys(p["name"] for p in rec["passes"])) or "none"
        return "\n".join(out + [f"--- pass {name!r} did not run for this kernel (passes: {ran})"])
    for p in runs:
        state = "skipped (disabled)" if p["skipped"] else (
            "changed the IR" if p["changed"] else "no change")
        out += [f"--- IR after {p['manager']}:{name} ({state})", p.get("ir") or ""]
    return "\n".join(out)


def render(rec: dict[str, Any]) -> str:
    """Human-readable text for one kernel record."""
    out = [f"=== kernel {rec['kernel']} ({rec['specializer']}) at {rec['file']}:{rec['line']}",
           f"specialised on: {rec['key']}"]
    if rec["source"]:
        out += ["--- Python source", rec["source"].rstrip()]
    for d in rec["dast"]:
        out += [f"--- DAST after {d['phase']}", d["ir"]]
    if rec["passes"]:
        out.append("--- domain/platform passes")
        for p in rec["passes"]:
            state = "skipped (disabled)" if p["skipped"] else (
                "changed the IR" if p["changed"] else "no change")
            out.append(f"  {p['manager']}:{p['name']}: {state}")
    if rec["phases"]:
        out.append("--- components chosen")
        for p in rec["phases"]:
            line = f"  {p['phase']}: {p.get('component')} — {p.get('reason')}"
            if p.get("rejected"):
                line += "; not usable: " + "; ".join(f"{n} ({r})" for n, r in p["rejected"])
            out.append(line)
    for prog in rec["program"]:
        out += [f"--- platform program ({prog['platform']})", prog["text"].rstrip()]
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
    if rec["fallback"]:
        out += ["--- FALLBACK to pure Python", f"  {rec['fallback']}"]
    return "\n".join(out)


@click.command("explain")
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.argument("script_args", nargs=-1)
@click.option("--kernel", "kernel", default=None, help="Only kernels whose name contains this.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--after", "after", default=None, metavar="PASS",
              help="Print only the IR after the named pass (e.g. constant-folding).")
def command(script: str, script_args: tuple[str, ...], kernel: str | None, as_json: bool,
            after: str | None) -> None:
    """Run SCRIPT and explain every kernel it specialised or that fell back.

    With --json each pass entry carries the IR after it (key "ir")."""
    recording.start()
    argv, path = sys.argv, list(sys.path)
    sys.argv = [script, *script_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python SCRIPT` does
    failed = False
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            click.echo(f"asp explain: {script} exited with {exc.code}", err=True)
    except Exception:  # noqa: BLE001 - the script's own error: show it, then what was recorded
        failed = True
        click.echo(traceback.format_exc().rstrip(), err=True)
        click.echo(f"asp explain: {script} raised an exception; kernels recorded before it "
                   "follow", err=True)
    finally:
        sys.argv = argv
        sys.path[:] = path
        recs = recording.stop()
    data = [_record_dict(r) for r in recs if kernel is None or kernel in r.kernel]
    if after is not None and after not in known_passes():
        raise click.BadParameter(f"no pass is called {after!r}; known passes: "
                                 f"{', '.join(sorted(known_passes())) or 'none'}",
                                 param_hint="--after")
    if as_json:
        click.echo(json.dumps({"kernels": data}, indent=1, default=repr))
    else:
        if not data:
            click.echo("asp explain: no kernel was specialised"
                       + (f" matching {kernel!r}" if kernel else ""))
        for rec in data:
            click.echo(render(rec) if after is None else render_after(rec, after))
            click.echo()
    if failed:
        raise SystemExit(1)

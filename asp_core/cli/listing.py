"""``asp list``: installed specializers, their phases' components, and broken plugins."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from asp_core.phases import BACKEND, PHASES, PLATFORM_OPTIMIZATION, PLATFORM_SELECTION
from asp_core.errors import PluginError
from asp_core.registry import Component

__all__ = ["command", "listing"]


def _unavailable(comp: Component) -> str | None:
    """A platform's reason to be skipped on this machine, whatever the kernel."""
    try:
        probe = getattr(comp.obj, "unavailable_reason", None)
        return probe() if callable(probe) else None
    except Exception as exc:  # noqa: BLE001 - a plugin that cannot even load is not usable
        return f"cannot load: {type(exc).__name__}: {exc}"


def _defaults(spec: str, comps_by_phase: dict[str, list[Component]],
              unavailable: dict[str, str | None], unmet: list[dict[str, str]]
              ) -> dict[str, str | None]:
    """Per phase, the component a kernel gets here unless the kernel itself is refused:
    the user's setting (``ASP_<PHASE>``, the config file), else the highest-priority one;
    a platform unavailable on this machine is passed over, and the platform-optimisation and
    backend components are those accepting the chosen platform.  A setting that names none of
    them is added to ``unmet`` and its phase has no default: kernels then run in Python (the
    highest-priority component was shown as the default)."""
    from asp_core import config

    out: dict[str, str | None] = {}
    platform = None
    for phase in PHASES:
        comps = comps_by_phase[phase]
        if phase in (PLATFORM_OPTIMIZATION, BACKEND) and platform is not None:
            comps = [c for c in comps if c.accepts(platform)]
        requested, source = config.phase_choice(spec, phase, None)
        names = [c.name for c in comps]
        if requested in names:
            pick: str | None = requested
        elif requested:
            pick = None
            unmet.append({"phase": phase, "setting": source, "component": requested})
        elif phase == PLATFORM_SELECTION:
            pick = next((c.name for c in comps if not unavailable.get(c.name)), None)
        else:
            pick = names[0] if names else None
        out[phase] = pick
        if phase == PLATFORM_SELECTION:
            platform = pick
    return out


def _added_passes(reg: Any, spec: str) -> list[dict[str, Any]]:
    """Passes plugins added to ``spec``'s pass managers (``register.add_pass``)."""
    out = []
    for added in reg.added_passes:
        if added.specializer != spec:
            continue
        try:
            name: str | None = added.obj.name
        except PluginError:  # reported under broken plugins (check_added)
            name = None
        out.append({"manager": added.manager, "name": name, "after": added.after,
                    "before": added.before, "distribution": added.distribution,
                    "version": added.version})
    return out


def listing() -> dict[str, Any]:
    """The data behind ``asp list --json`` (a stable, documented format)."""
    from asp_core.passes import check_added
    from asp_core.plugins import broken_plugins, get_registry

    reg = get_registry()
    check_added(anchors=False)   # the anchors would need every component imported
    names = sorted(set(reg.specializers) | {c.specializer for c in reg.components}
                   | {p.specializer for p in reg.added_passes})
    specs = []
    for name in names:
        spec = reg.specializers.get(name)
        by_phase = {phase: reg.for_phase(name, phase) for phase in PHASES}
        unavailable = {c.name: _unavailable(c) for c in by_phase[PLATFORM_SELECTION]}
        unmet: list[dict[str, str]] = []
        # components for a specializer no plugin defines (a misspelt name): no kernel gets
        # them, so none is a default ("default" was shown for one)
        chosen = _defaults(name, by_phase, unavailable, unmet) if spec is not None else \
            dict.fromkeys(PHASES)
        phases = {}
        for phase, comps in by_phase.items():
            phases[phase] = [{"name": c.name, "distribution": c.distribution,
                              "version": c.version, "priority": c.priority,
                              "platforms": list(c.readable_platforms() or ()),
                              "default": c.name == chosen[phase],
                              "unavailable": unavailable.get(c.name)
                              if phase == PLATFORM_SELECTION else None}
                             for c in comps]
        specs.append({"name": name,
                      "description": spec.description if spec else "",
                      "distribution": spec.distribution if spec else "",
                      "version": spec.version if spec else "",
                      "defined": spec is not None,
                      "phases": phases, "unmet": unmet,
                      "added_passes": _added_passes(reg, name)})
    return {"specializers": specs, "broken": [dataclasses.asdict(b) for b in broken_plugins()]}


def _here(comp: dict[str, Any]) -> str:
    """The "here" cell: default, unavailable (why), or both: a setting that picks a platform
    this machine cannot run (``ASP_PLATFORM_SELECTION=cuda`` without a GPU) makes it the
    default, and the kernel then falls back to Python; "default" alone hid the reason."""
    from rich.markup import escape

    why = comp["unavailable"]
    if comp["default"]:
        return (f"[yellow]default, but unavailable: {escape(str(why))}[/yellow]" if why
                else "[green]default[/green]")
    return f"[dim]unavailable: {escape(str(why))}[/dim]" if why else ""


@click.command("list", help="List installed specializers and the components of each phase.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool) -> None:
    try:
        data = listing()
    except ValueError as exc:   # an ASP_<PHASE> setting that names no one component
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # piped or captured: no terminal width to fit, keep rows whole
        console.width = 160
    if not data["specializers"]:
        console.print("No specializers installed (pip install asp-stencil asp-gmm asp-mpk).")
    for spec in data["specializers"]:
        origin = f"{spec['distribution']} {spec['version']}".strip() or "not defined by any plugin"
        # the plugins' text is escaped, not read as Rich markup: a description "out[i] = f(a[i])"
        # lost its brackets, and one with a stray "[/x]" made `asp list` a traceback
        table = Table(title=f"[bold]{escape(str(spec['name']))}[/bold]  ({escape(origin)})  "
                            f"{escape(str(spec['description']))}",
                      title_justify="left", show_lines=False)
        for col in ("phase", "component", "priority", "platforms", "distribution", "here"):
            table.add_column(col, no_wrap=col != "here", overflow="fold")
        for phase, comps in spec["phases"].items():
            if not comps:
                table.add_row(phase, "-", "", "", "", "")
            for i, c in enumerate(comps):
                here = _here(c)
                table.add_row(phase if i == 0 else "", escape(str(c["name"])), str(c["priority"]),
                              escape(", ".join(map(str, c["platforms"])) or "any"),
                              escape(str(c["distribution"])), here)
        console.print(table)
        for p in spec["added_passes"]:
            where = (f"after {p['after']!r}" if p["after"] is not None else
                     f"before {p['before']!r}" if p["before"] is not None else "at the end")
            console.print(f"pass {p['name'] or '(cannot be loaded)'!r} added to "
                          f"{p['manager']!r} {where} by {p['distribution'] or '(in-process)'}",
                          markup=False)
        for u in spec["unmet"]:
            console.print(f"[yellow]{escape(u['setting'])} asks for {escape(u['component'])!r} "
                          f"in {u['phase']}, which no installed {escape(str(spec['name']))} "
                          "component for the platform answers to: its kernels run in "
                          "Python[/yellow]")
    if data["broken"]:
        console.print("[bold red]Broken plugins (skipped):[/bold red]")
        for b in data["broken"]:
            console.print(f"  {b['name']} ({b['distribution']}): {b['error']}", markup=False)
    elif data["specializers"]:
        console.print("default: what a kernel gets on this machine unless a setting picks another "
                      "or the kernel is outside what it supports")

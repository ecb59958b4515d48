"""``asp list``: installed specializers, their phases' components, and broken plugins."""

from __future__ import annotations

import json
from typing import Any

import click

from asp_core.phases import PHASES
from asp_core.registry import Component

__all__ = ["command", "listing"]


def _is_default(comp: Component, before: list[Component]) -> bool:
    """Used unless a user setting picks another: no earlier candidate serves its platforms.

    Platform-optimisation and backend components only compete with those accepting the same
    platform (an empty ``platforms`` accepts any), so each platform has its own default.
    """
    mine = set(comp.platforms)
    return not any(not mine or not b.platforms or mine & set(b.platforms) for b in before)


def listing() -> dict[str, Any]:
    """The data behind ``asp list --json`` (a stable, documented format)."""
    from asp_core.plugins import broken_plugins, get_registry

    reg = get_registry()
    names = sorted(set(reg.specializers) | {c.specializer for c in reg.components})
    specs = []
    for name in names:
        spec = reg.specializers.get(name)
        phases = {}
        for phase in PHASES:
            comps = reg.for_phase(name, phase)
            phases[phase] = [{"name": c.name, "distribution": c.distribution,
                              "version": c.version, "priority": c.priority,
                              "platforms": list(c.platforms),
                              "default": _is_default(c, comps[:i])}
                             for i, c in enumerate(comps)]
        specs.append({"name": name,
                      "description": spec.description if spec else "",
                      "distribution": spec.distribution if spec else "",
                      "version": spec.version if spec else "",
                      "defined": spec is not None,
                      "phases": phases})
    return {"specializers": specs, "broken": [b.as_dict() for b in broken_plugins()]}


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool) -> None:
    """List installed specializers and the components of each phase."""
    data = listing()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data["specializers"]:
        click.echo("No specializers installed (pip install asp-stencil asp-gmm asp-mpk).")
    for spec in data["specializers"]:
        origin = f"{spec['distribution']} {spec['version']}".strip() or "not defined by any plugin"
        click.secho(f"{spec['name']}", bold=True, nl=False)
        click.echo(f"  ({origin})  {spec['description']}")
        for phase, comps in spec["phases"].items():
            text = ", ".join(f"{c['name']}{'*' if c['default'] else ''} [{c['distribution']}]"
                             for c in comps) or "-"
            click.echo(f"  {phase:<22} {text}")
    if data["broken"]:
        click.secho("Broken plugins (skipped):", fg="red", bold=True)
        for b in data["broken"]:
            click.echo(f"  {b['name']} ({b['distribution']}): {b['error']}")
    elif data["specializers"]:
        click.echo("(* = used unless a user setting picks another)")

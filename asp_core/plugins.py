"""Plugin discovery and loading (entry-point group ``asp``), modelled on pytest and llm.

A plugin that fails to import or register is reported (:class:`PluginWarning`, ``asp list``,
``asp doctor``) and skipped; the host keeps working. ``ASP_DISABLE_PLUGIN_AUTOLOAD=1`` loads no
entry points, ``ASP_BLOCK_PLUGINS=a,b`` skips entry-point or distribution names,
``ASP_LOAD_PLUGINS=a,b`` loads only these, ``ASP_TRACE_HOOKS=1`` logs every hook call.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Mapping, Sequence

import pluggy

from asp_core import config, hookspecs
from asp_core.errors import PluginError, PluginWarning, warn
from asp_core.log import get_logger
from asp_core.registry import Registry
from asp_core.spawn import hold_across_fork

__all__ = ["hookimpl", "get_plugin_manager", "get_registry", "register_plugin",
           "unregister_plugin", "broken_plugins", "reset", "BrokenPlugin", "ENTRY_POINT_GROUP",
           "report_broken_component", "report_broken_pass", "call_per_plugin",
           "BUILTIN_DISTRIBUTIONS"]

ENTRY_POINT_GROUP = "asp"
#: Distributions shipped with Asp: they register first, so a third party reusing a built-in
#: component name is the one refused.
BUILTIN_DISTRIBUTIONS = frozenset({"asp-core", "asp-stencil", "asp-stencil-numpy", "asp-gmm",
                                   "asp-mpk"})
hookimpl = pluggy.HookimplMarker("asp")
_log = get_logger("plugins")  # ASP_TRACE_HOOKS output

_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None
_broken: list[BrokenPlugin] = []
_dists: dict[str, tuple[str, str]] = {}
#: installed plugins a setting kept out: "NAME (DIST): SETTING"
_kept_out: list[str] = []


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that was skipped, and why."""

    name: str
    distribution: str
    error: str


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {x.strip() for x in raw.split(",") if x.strip()}


def _mark_broken(name: str, dist: str, exc: BaseException, what: str, prefix: str = "",
                 then: str = " and is skipped") -> None:
    error = f"{prefix}{type(exc).__name__}: {exc}"
    if BrokenPlugin(name, dist, error) in _broken:  # e.g. an observer failing on every kernel
        return
    _broken.append(BrokenPlugin(name, dist, error))
    warn(f"asp: plugin {name!r} ({dist.strip('()')}) failed to {what}{then}: {error}",
         PluginWarning)


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    _kept_out.clear()
    if config.flag("ASP_DISABLE_PLUGIN_AUTOLOAD"):
        _kept_out.append("every installed plugin: ASP_DISABLE_PLUGIN_AUTOLOAD is set")
        return
    blocked = _env_list("ASP_BLOCK_PLUGINS") or set()
    allowed = _env_list("ASP_LOAD_PLUGINS")

    # each distribution's metadata read once: ``ep.dist.name`` parses its file at every use
    # (30 parses, 10 ms of every process's first call)
    eps = sorted(((ep, *_distribution(ep)) for ep in
                  metadata.entry_points(group=ENTRY_POINT_GROUP)),
                 key=lambda e: (e[1] not in BUILTIN_DISTRIBUTIONS, e[0].name, e[1]))
    _warn_unmatched(eps, blocked, allowed)
    for ep, dist, version in eps:
        if _names(ep, dist, blocked):
            _kept_out.append(f"{ep.name} ({dist}): ASP_BLOCK_PLUGINS")
            continue
        if allowed is not None and not _names(ep, dist, allowed):
            _kept_out.append(f"{ep.name} ({dist}): not in ASP_LOAD_PLUGINS")
            continue
        # Entry-point names are not unique across distributions: an add-on naming its entry
        # point after the specializer it extends (``my_spec = "my_spec_gpu.plugin"``) was
        # skipped without a word, or made the specializer itself vanish, by sys.path order.
        # The later one is registered under a name that says whose it is.
        name = ep.name if not pm.has_plugin(ep.name) else f"{ep.name} ({dist})"
        module: Any = None
        try:
            module = ep.load()
            if pm.is_registered(module):   # one module named twice: it registers once
                continue
            pm.register(module, name=name)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin must not end the host
            _forget(pm, module)
            _mark_broken(name, dist, exc, "load")
            continue
        _dists[name] = (dist, version)


def _distribution(ep: Any) -> tuple[str, str]:
    """The name and version of the distribution that installed ``ep`` (``"?"`` if unknown)."""
    if ep.dist is None:
        return "?", "?"
    found = ep.dist.metadata
    return found.get("Name") or "?", found.get("Version") or "?"


def _names(ep: Any, dist: str, names: set[str]) -> bool:
    """Whether ``names`` names the entry point ``ep`` of the distribution ``dist``: by its
    name, or by the distribution's name in any of the spellings pip takes for one
    (``hunt_backend`` for ``hunt-backend``, any case: it was "no installed plugin has" and
    blocked nothing)."""
    if ep.name in names:
        return True
    if dist == "?":
        return False
    dist = _normalized(dist)
    return any(_normalized(n) == dist for n in names)


def _normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _forget(pm: pluggy.PluginManager, plugin: Any) -> None:
    """Unregister ``plugin`` if ``pm.register`` left it half-registered: pluggy checks a hook
    implementation's arguments only after adding the plugin, so one with a misspelt argument
    stayed registered, the hooks it listed before the bad one active (its ``asp_doctor_checks``
    ran, ``asp doctor`` counted it as loaded) though it was reported as skipped."""
    if plugin is not None and pm.is_registered(plugin):
        pm.unregister(plugin)


def _warn_unmatched(eps: list[tuple[Any, str, str]], blocked: set[str],
                    allowed: set[str] | None) -> None:
    """A ``PluginWarning`` for names in ``ASP_LOAD_PLUGINS`` / ``ASP_BLOCK_PLUGINS`` that no
    installed plugin has (entry-point or distribution name): a misspelt one loaded nothing
    ("No specializers installed"), or blocked nothing, without a word. ``eps``: each entry
    point with its distribution's name and version."""
    known = {ep.name for ep, _, _ in eps} | {dist for _, dist, _ in eps if dist != "?"}
    for var, names in (("ASP_LOAD_PLUGINS", allowed or set()), ("ASP_BLOCK_PLUGINS", blocked)):
        unknown = sorted(n for n in names if not any(_names(ep, dist, {n})
                                                       for ep, dist, _ in eps))
        if unknown:
            warn(f"asp: {var} names {', '.join(map(repr, unknown))}, which no "
                 f"installed plugin has (installed: {', '.join(sorted(known)) or 'none'}"
                 ")", PluginWarning)


def plugin_packages() -> frozenset[str]:
    """The top-level packages of the core, pluggy and the installed plugins loaded so far
    (loading none: a plugin's warning while it loads asks too). Plugins registered in-process
    are not among them: their code is the user's (a script, a notebook, a test suite)."""
    names = {"asp_core", "pluggy"}
    pm = _pm
    if pm is not None:
        for name in list(_dists):
            plugin = pm.get_plugin(name)
            module = getattr(plugin, "__name__", None) or type(plugin).__module__
            names.add(str(module).partition(".")[0])
    return frozenset(names)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with entry points loaded (once)."""
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager("asp")
            pm.add_hookspecs(hookspecs)
            _load_entry_points(pm)
            while True:  # a misspelt hook is a broken plugin, not a broken host
                try:
                    pm.check_pending()
                    break
                except pluggy.PluginValidationError as exc:
                    bad_name = pm.get_name(exc.plugin) or "?"
                    pm.unregister(exc.plugin)
                    _mark_broken(bad_name, _dists.pop(bad_name, ("?", "?"))[0], exc, "validate")
            if config.flag("ASP_TRACE_HOOKS"):
                _enable_tracing(pm)
            _pm = pm
        return _pm


def _enable_tracing(pm: pluggy.PluginManager) -> None:
    def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
               ) -> None:
        _log.info("hook %s(%s) -> %s", hook_name, ", ".join(kwargs),
                  [i.plugin_name for i in impls])

    def after(outcome: pluggy.Result[Any], hook_name: str, impls: Sequence[pluggy.HookImpl],
              kwargs: Mapping[str, Any]) -> None:
        _log.info("hook %s returned %r", hook_name, outcome.get_result())

    pm.add_hookcall_monitoring(before, after)


def call_per_plugin(hook_name: str, **kwargs: Any) -> None:
    """Call a hook one plugin at a time, so a failure is reported as that plugin's (never
    raised); a ``register`` argument learns which plugin is registering."""
    pm = get_plugin_manager()
    hook = getattr(pm.hook, hook_name)
    trace = config.flag("ASP_TRACE_HOOKS")
    failed: set[str] = set()   # plugins one of whose implementations raised
    for impl in hook.get_hookimpls():  # registration order: entry points sorted by name
        if impl.plugin_name in failed:
            continue
        registry: Any = kwargs.get("register")
        dist, version = _dists.get(impl.plugin_name, ("(in-process)", ""))
        if isinstance(registry, Registry):
            registry._plugin, registry._distribution, registry._version = (
                impl.plugin_name, dist, version)
        elif hasattr(registry, "plugin"):  # other registries (benchmarks) remember it too
            registry.plugin = impl.plugin_name
        if trace:  # these calls bypass pluggy's hook monitoring, so trace them here
            _log.info("hook %s -> %s (%s)", hook_name, impl.plugin_name, dist)
        accepted = {k: v for k, v in kwargs.items() if k in impl.argnames}
        mark = registry.mark() if isinstance(registry, Registry) else None
        try:
            impl.function(**accepted)
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            if mark is not None:  # all or nothing: a plugin is never left half-registered,
                registry.rollback(mark)   # its other implementations' registrations included
                registry.forget_plugin(impl.plugin_name)
            failed.add(impl.plugin_name)
            _mark_broken(impl.plugin_name, dist, exc, f"run {hook_name}")


def report_broken_component(comp: Any, exc: BaseException, what: str) -> None:
    """Report a component that raised or answered out of protocol instead of answering
    (``asp list``, ``asp doctor``).  It stays registered: a platform is passed over, another
    phase's fault is the kernel's fallback reason ("and is skipped" was not so)."""
    where = f"{comp.specializer}/{comp.phase}/{comp.name}"
    # a PluginError of the pipeline names the component and what it did already
    prefix = "" if isinstance(exc, PluginError) else f"{where}: {what} raised "
    _mark_broken(comp.plugin or "(in-process)", comp.distribution or "(in-process)", exc,
                 f"run {what} of {where}", prefix=prefix, then="")


def report_broken_pass(added: Any, exc: BaseException) -> None:
    """Report a pass a plugin added that could not be loaded or placed; the kernel runs the
    manager's other passes."""
    _mark_broken(added.plugin or "(in-process)", added.distribution or "(in-process)", exc,
                 f"add {added.where}", then=" and is left out")


def get_registry() -> Registry:
    """The component registry built from every loaded plugin (cached until :func:`reset`)."""
    global _registry
    with _lock:
        if _registry is None:
            registry = Registry()
            call_per_plugin("asp_register_specializers", register=registry)
            registry._plugin = registry._distribution = registry._version = ""
            _registry = registry
        return _registry


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object in-process (tests, notebooks); invalidates the registry."""
    global _registry
    with _lock:
        pm = get_plugin_manager()
        registered = pm.is_registered(plugin)
        try:
            plugin_name = pm.register(plugin, name=name)
            pm.check_pending()
        except Exception:
            # a plugin refused (a misspelt hook or argument) is not left registered: it stayed,
            # and every later register_plugin raised its error again
            if not registered:
                _forget(pm, plugin)
            raise
        _registry = None
        return plugin_name or ""


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin`."""
    global _registry
    with _lock:
        pm = get_plugin_manager()
        if pm.has_plugin(name):
            pm.unregister(name=name)
        # a plugin that broke while registered is no longer there to be broken
        _broken[:] = [b for b in _broken if b.name != name or b.distribution != "(in-process)"]
        _registry = None


def broken_plugins() -> list[BrokenPlugin]:
    """Plugins skipped because they failed to load, validate or register."""
    get_registry()
    return list(_broken)


def install_hint(specializer: str) -> str:
    """How to get ``specializer``, which no loaded plugin registers: the settings that kept
    installed plugins out (it said "pip install asp-stencil" of a blocked asp-stencil), else
    ``pip install``."""
    get_plugin_manager()
    hint = f"pip install asp-{specializer}"
    if _kept_out:
        hint += (", unless it is one of the installed plugins a setting kept out: "
                 + "; ".join(_kept_out))
    return hint


def reset() -> None:
    """Forget loaded plugins; the next call re-reads entry points and the environment."""
    global _pm, _registry
    with _lock:
        _pm = None
        _registry = None
        _broken.clear()
        _dists.clear()


if hasattr(os, "register_at_fork"):
    # a fork waits while another thread loads the plugins: the lock it holds would never be
    # released in the child, nor the import lock of a plugin module it was importing, and the
    # child's first kernel call waited for them forever (see also
    # asp_core.spawn.wait_for_imports); re-entrant: the thread that loads the plugins may fork
    hold_across_fork(_lock)

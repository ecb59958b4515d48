"""The component registry: specializers and components per ``(specializer, phase, name)``;
it answers "which component runs this phase" with the reason ``asp explain`` shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator

from asp_core import config
from asp_core.errors import PluginError, PluginWarning, warn
from asp_core.passes import Pass
from asp_core.phases import BACKEND, PHASES, PLATFORM_OPTIMIZATION

__all__ = ["Specializer", "Component", "AddedPass", "Registry", "Choice"]

SignatureFn = Callable[[tuple, dict, Any], Hashable]
#: A signature function, or ``"package.module:function"`` naming one (imported on first use).
SignatureLike = SignatureFn | str
#: ``respecialize(ctx, error) -> bool`` (see :class:`Specializer`)
RespecializeFn = Callable[[Any, BaseException], bool]


@dataclass
class Specializer:
    """A domain (stencil, gmm, ...) whose kernels go through the five phases.

    ``signature(args, kwargs, instance)`` returns a call's specialisation key (everything the
    generated code depends on) and validates the arguments (``TypeError``/``ValueError``).
    ``tuning_key`` is the coarser key tuning winners are stored under (default: the same).
    ``tuning_repeats`` timed calls per variant: 3 for cheap kernels on a noisy machine, 1 where
    a call is a whole EM iteration. ``respecialize(ctx, error)`` is asked when the key of
    ``ctx`` could not be specialised (``error``): True when the specializer's ``signature``
    now gives these arguments another key, which the dispatcher then specialises instead of
    falling back (a key asking for more general code than the kernel allows: asp-stencil's
    attributes read at each call go back to being constants of the code).
    ``shared_lowering``: phases 1-4 of a key depend on the kernel's class, its options and the
    key alone, never on anything else of the object, so the objects of one class share what
    they made of a key and only phase 5 binds each (a new kernel object per call, as the Asp
    paper writes ``ExampleKernel().kernel(a, b)``, ran the frontend, the passes and the
    lowering at every call: 12 ms a call for a kernel running in microseconds).
    """

    name: str
    description: str = ""
    signature: SignatureLike | None = None
    tuning_key: SignatureLike | None = None
    plugin: str = ""
    distribution: str = ""
    version: str = ""
    tuning_repeats: int = 3
    respecialize: RespecializeFn | str | None = None
    shared_lowering: bool = False

    def hook(self, attr: str) -> Any:
        """``signature``, ``tuning_key`` or ``respecialize`` as a function (imported now if
        registered by name)."""
        value = getattr(self, attr)
        if isinstance(value, str):
            value = _import_attr(value, f"specializer {self.name!r} {attr}", self.plugin,
                                 self.distribution)
            setattr(self, attr, value)
        return value


@dataclass
class Component:
    """One implementation of one phase of one specializer. ``target`` is the object or a
    ``"package.module:attribute"`` imported on first use, so ``asp list`` imports none of a
    plugin's implementation (llm's lesson: heavy registration made ``llm --help`` 8x slower)."""

    specializer: str
    phase: str
    name: str
    target: Any
    priority: int = 0
    plugin: str = ""
    distribution: str = ""
    version: str = ""
    order: int = 0
    declared_platforms: tuple[str, ...] | None = None

    @property
    def obj(self) -> Any:
        """The component object (imported now if it was registered by name; a class named so is
        instantiated)."""
        if isinstance(self.target, str):
            where = f"component {self.specializer}/{self.phase}/{self.name}"
            obj = _import_attr(self.target, where, self.plugin, self.distribution)
            self.target = obj() if isinstance(obj, type) else obj
        return self.target

    @property
    def platforms(self) -> tuple[str, ...]:
        """Platforms a platform-optimisation or backend component accepts (empty: any);
        :class:`PluginError` where its object cannot be loaded or says something else."""
        if self.declared_platforms is not None:
            return self.declared_platforms
        if self.phase not in (PLATFORM_OPTIMIZATION, BACKEND):
            return ()  # only these two phases are filtered by platform
        return _platform_names(getattr(self.obj, "platforms", ()) or (),
                               f"component {self.specializer}/{self.phase}/{self.name} of "
                               f"plugin {self.plugin!r} ({self.distribution})")

    def readable_platforms(self) -> tuple[str, ...] | None:
        """:attr:`platforms`, or None where they cannot be read: the component is then
        reported as a broken plugin (``PluginWarning``, ``asp list``, ``asp doctor``) and
        serves no platform. Before, a third-party backend that did not import, never to be
        chosen, sent every kernel of its specializer to Python, and ``asp list`` ended in a
        traceback."""
        try:
            return self.platforms
        except PluginError as exc:
            from asp_core.plugins import report_broken_component

            report_broken_component(self, exc, "platforms")
            return None

    def accepts(self, platform: str) -> bool:
        """Whether this component serves ``platform`` (:meth:`readable_platforms`)."""
        platforms = self.readable_platforms()
        return platforms is not None and (not platforms or platform in platforms)


@dataclass
class AddedPass:
    """A pass a plugin adds to another plugin's pass manager, named as ``asp explain`` shows it
    (``stencil-domain``), right after or before one of its passes, or at its end: a rewrite
    for a specializer it does not own, composable with other plugins' (replacing the whole
    phase-2 component to run an extended copy of the pipeline let one such plugin win)."""

    specializer: str
    manager: str
    target: Any
    after: str | None = None
    before: str | None = None
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    @property
    def where(self) -> str:
        return f"pass for {self.specializer}/{self.manager}"

    @property
    def obj(self) -> Pass:
        """The :class:`~asp_core.Pass` (imported now if it was registered by name)."""
        if isinstance(self.target, str):
            self.target = _import_attr(self.target, self.where, self.plugin, self.distribution)
        if not isinstance(self.target, Pass):
            raise PluginError(f"{self.where} of plugin {self.plugin!r} ({self.distribution}) is "
                              f"{type(self.target).__name__}, not an asp_core.Pass (decorate "
                              "the function with asp_core.asp_pass)")
        return self.target

    @property
    def anchor(self) -> str | None:
        """The pass this one runs after or before (None: at the end)."""
        return self.after if self.after is not None else self.before

    def place(self, passes: list[Pass]) -> bool:
        """Put the pass in ``passes`` (the manager's list, with the passes placed so far);
        False where its :attr:`anchor` is not there (yet: another plugin may add it), and
        :class:`PluginError` where it cannot be loaded or its name is taken."""
        p, names = self.obj, [q.name for q in passes]
        if p.name in names:
            raise PluginError(f"{self.where}: {self.manager!r} already has a pass {p.name!r}")
        if self.anchor is None:
            passes.append(p)
        elif self.anchor not in names:
            return False
        else:
            passes.insert(names.index(self.anchor) + (self.after is not None), p)
        return True

    def unplaced(self, passes: list[Pass]) -> PluginError:
        """Why the pass has no place in ``passes`` (every pass the others could place)."""
        return PluginError(f"{self.where}: pass {self.obj.name!r} is to run "
                           f"{'after' if self.after is not None else 'before'} "
                           f"{self.anchor!r}, which {self.manager!r} does not have (its "
                           f"passes: {', '.join(q.name for q in passes) or 'none'})")

    @property
    def origin(self) -> str:
        """Who added the pass, for messages about it."""
        where = (self.distribution or "in-process").strip("()")
        return f"added by plugin {self.plugin or 'in-process'!r} ({where})"


def _platform_names(value: Any, what: str) -> tuple[str, ...]:
    """``value`` (a component's ``platforms``) as a tuple of names, or :class:`PluginError`:
    a single string is refused (``tuple("openmp")`` would be its letters)."""
    try:
        names = tuple(value) if not isinstance(value, str) else None
    except TypeError:
        names = None
    if names is None or not all(isinstance(n, str) and n for n in names):
        raise PluginError(f"{what}: platforms must be a list of platform names, got {value!r}")
    return names


def _import_attr(spec: str, what: str, plugin: str, distribution: str) -> Any:
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"{what} of plugin {plugin!r} names {spec!r}; expected "
                          "'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{what} of plugin {plugin!r} ({distribution}) cannot be loaded from "
                          f"{spec!r}: {type(exc).__name__}: {exc}") from exc
    return obj


#: (specializer, setting) pairs already warned about by Registry._warn_unknown_specializers
_WARNED: set[tuple[str, str]] = set()


@dataclass
class Choice:
    """The ordered candidates for a phase and why they are in that order."""

    candidates: list[Component]
    reason: str
    requested: str | None = None


@dataclass
class Registry:
    """Holds specializers and components; passed to ``asp_register_specializers`` as ``register``."""

    specializers: dict[str, Specializer] = field(default_factory=dict)
    components: list[Component] = field(default_factory=list)
    added_passes: list[AddedPass] = field(default_factory=list)
    _plugin: str = ""
    _distribution: str = ""
    _version: str = ""

    # -- registration API (what plugins call) -------------------------------------------------
    def specializer(self, name: str, description: str = "", signature: SignatureLike | None = None,
                    tuning_key: SignatureLike | None = None, tuning_repeats: int = 3,
                    respecialize: RespecializeFn | str | None = None,
                    shared_lowering: bool = False) -> Specializer:
        """Declare a specializer. Raises :class:`PluginError` if the name is taken."""
        if not name or not isinstance(name, str):
            raise PluginError("a specializer needs a non-empty string name")
        if name in self.specializers:
            other = self.specializers[name]
            raise PluginError(f"specializer {name!r} is already registered by plugin "
                              f"{other.plugin!r} ({other.distribution})")
        if int(tuning_repeats) < 1:
            raise PluginError(f"specializer {name!r}: tuning_repeats must be at least 1")
        spec = Specializer(name, description, signature, tuning_key, self._plugin,
                           self._distribution, self._version, int(tuning_repeats),
                           respecialize, bool(shared_lowering))
        self.specializers[name] = spec
        return spec

    def component(self, specializer: str, phase: str, name: str, obj: Any,
                  priority: int = 0, platforms: tuple[str, ...] | list[str] | None = None
                  ) -> Component:
        """Add a component; ``(specializer, phase, name)`` must be new. ``obj`` may be
        ``"package.module:attribute"`` (imported lazily; a class is instantiated), and
        ``platforms`` declares what a phase 4/5 component accepts without importing it."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
        for what, value in (("specializer", specializer), ("name", name)):
            if not isinstance(value, str) or not value:
                raise PluginError(f"a {phase} component needs a non-empty string {what}, "
                                  f"got {value!r}")
        where = f"component {specializer}/{phase}/{name}"
        for comp in self.components:
            if (comp.specializer, comp.phase, comp.name) == (specializer, phase, name):
                raise PluginError(
                    f"component {specializer}/{phase}/{name} is already registered by plugin "
                    f"{comp.plugin!r} ({comp.distribution}); choose another name")
        comp = Component(specializer, phase, name, obj, int(priority), self._plugin,
                         self._distribution, self._version, len(self.components),
                         _platform_names(platforms, where) if platforms is not None else None)
        self.components.append(comp)
        return comp

    def add_pass(self, specializer: str, manager: str, obj: Any, *, after: str | None = None,
                 before: str | None = None) -> AddedPass:
        """Add a pass (an :func:`~asp_core.asp_pass`, or ``"package.module:attribute"`` naming
        one, imported at the first specialisation) to ``specializer``'s pass manager called
        ``manager``, right ``after`` or ``before`` the pass of that name, else at its end.
        Each kernel's pipeline then runs it like the manager's own passes (reported, disabled
        by name, ``asp explain --after``); where the manager has no such anchor the pass is
        left out and its plugin reported broken (a ``PluginWarning``), the kernel unchanged."""
        for what, value in (("specializer", specializer), ("manager", manager)):
            if not isinstance(value, str) or not value:
                raise PluginError(f"an added pass needs a non-empty string {what}, got {value!r}")
        if after is not None and before is not None:
            raise PluginError(f"a pass for {specializer}/{manager} runs after one pass or before "
                              f"one, not both (after={after!r}, before={before!r})")
        added = AddedPass(specializer, manager, obj, after, before, self._plugin,
                          self._distribution, self._version)
        self.added_passes.append(added)
        return added

    def mark(self) -> tuple[int, int, frozenset[str]]:
        """A point :meth:`rollback` can return to (taken before each plugin registers)."""
        return len(self.components), len(self.added_passes), frozenset(self.specializers)

    def rollback(self, mark: tuple[int, int, frozenset[str]]) -> None:
        """Forget everything registered since ``mark`` (a plugin whose registration failed)."""
        n, n_passes, names = mark
        del self.components[n:]
        del self.added_passes[n_passes:]
        for name in set(self.specializers) - names:
            del self.specializers[name]

    def forget_plugin(self, plugin: str) -> None:
        """Forget everything ``plugin`` registered (one of its hook implementations raised,
        after another had registered components that were then chosen by default)."""
        self.components[:] = [c for c in self.components if c.plugin != plugin]
        self.added_passes[:] = [p for p in self.added_passes if p.plugin != plugin]
        for name in [n for n, spec in self.specializers.items() if spec.plugin == plugin]:
            del self.specializers[name]

    # -- queries (what the core calls) ----------------------------------------------------------
    def for_phase(self, specializer: str, phase: str) -> list[Component]:
        """Components of a phase, by priority (high first) then registration order."""
        found = [c for c in self.components if c.specializer == specializer and c.phase == phase]
        return sorted(found, key=lambda c: (-c.priority, c.order))

    def passes_for(self, specializer: str, manager: str) -> list[AddedPass]:
        """Passes plugins added to ``specializer``'s ``manager``, in registration order."""
        return [p for p in self.added_passes
                if p.specializer == specializer and p.manager == manager]

    def phases(self, specializer: str) -> dict[str, list[Component]]:
        return {phase: self.for_phase(specializer, phase) for phase in PHASES}

    def choose(self, specializer: str, phase: str, options: dict[str, Any] | None = None,
               platform: str | None = None) -> Choice:
        """Order the candidates (accepting ``platform`` if given): user setting > priority >
        registration order. A user choice naming no installed component is an error."""
        self._warn_unknown_specializers(phase)
        installed = self.for_phase(specializer, phase)
        cands = installed if platform is None else [c for c in installed if c.accepts(platform)]
        requested, source = config.phase_choice(specializer, phase, options)
        if requested:
            picked = [c for c in cands if c.name == requested]
            if not picked:
                names = ", ".join(c.name for c in cands) or "none"
                other = next((c for c in installed if c.name == requested), None)
                if other is not None:   # installed, for another platform than the chosen one
                    why = (f"it serves platforms {', '.join(other.platforms)}, not {platform!r} "
                           f"(the platform phase's choice: set platform_selection to one of "
                           f"them too); the ones serving {platform!r} are: {names}")
                elif platform is None:
                    why = f"the installed ones are: {names}"
                else:
                    why = f"the installed ones serving {platform!r} are: {names}"
                raise PluginError(
                    f"{source} asks for {phase} component {requested!r} of specializer "
                    f"{specializer!r}, but {why}")
            rest = [c for c in cands if c.name != requested]
            return Choice(picked + rest, f"{requested!r} requested by {source}", requested)
        if not cands:
            return Choice([], "no component installed" if not installed else
                          f"none of those installed ({', '.join(c.name for c in installed)}) "
                          f"serves platform {platform!r}")
        head = cands[0]
        why = (f"highest priority ({head.priority})" if len(cands) > 1 and
               cands[1].priority < head.priority else
               "first registered" if len(cands) > 1 else "only component")
        return Choice(cands, why)

    def unknown_specializers(self, phase: str) -> list[tuple[str, str]]:
        """``(specializer, setting)`` for each setting of ``phase`` (``ASP_<PHASE>``'s
        ``spec:`` parts, ``[phases.<spec>]`` tables) that names a specializer no plugin
        registers: kernels ignore it."""
        return [(name, setting) for name, setting in config.named_specializers(phase)
                if name not in self.specializers]

    def _warn_unknown_specializers(self, phase: str) -> None:
        """Warn once per setting that names a specializer no plugin registered: a misspelt
        ``ASP_BACKEND=stencl:c`` would otherwise be ignored without a word.  A warning, not an
        error: one environment's settings may name a plugin another environment lacks."""
        for name, setting in self.unknown_specializers(phase):
            if (name, setting) not in _WARNED:
                _WARNED.add((name, setting))
                warn(f"asp: {setting} names specializer {name!r}, which no installed "
                     f"plugin registers (installed: "
                     f"{', '.join(sorted(self.specializers)) or 'none'}); that "
                     "setting is ignored", PluginWarning)

    def __iter__(self) -> Iterator[Component]:
        return iter(self.components)

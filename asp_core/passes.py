"""Named passes ``(ir, ctx) -> (new_ir, changed)`` and a small pass manager (numba's, with
Devito's switch by name: ``ASP_DISABLE_PASSES``, option ``disable_passes``) that reports each
pass on the context (a typed :class:`PassReport` in ``ctx.passes``; for ``asp explain --after``
also the IR after it) and names the pass that fails (in the error, and in the ``asp explain``
log with its ``error``: a pass that refuses the kernel is not a pass that "did not run"). A
pass may declare when what follows needs it (``asp_pass(name, needed=...)``): disabled there,
the kernel falls back with :class:`PassNeeded` naming it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from asp_core import config, recording
from asp_core.errors import AspError, PluginError, PluginWarning, warn
from asp_core.ir import dump

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["Pass", "PassManager", "PassError", "PassNeeded", "PassReport", "PassResult",
           "asp_pass", "check_added", "check_disabled", "disabled_for", "known_passes"]


class PassResult(NamedTuple):
    """What a pass returns: the new IR and whether the pass changed anything."""

    ir: Any
    changed: bool


@dataclass(frozen=True)
class PassReport:
    """One pass run by a :class:`PassManager` (``ctx.passes``): ``skipped`` when disabled by
    name (then ``changed`` is False and ``seconds`` 0)."""

    manager: str
    name: str
    changed: bool
    skipped: bool = False
    seconds: float = 0.0


PassFn = Callable[[Any, "SpecializationContext"], "PassResult | tuple[Any, bool]"]
#: ``needed(ir)``: why what follows a pass cannot do without it on ``ir``, or ``None``
NeededFn = Callable[[Any], "str | None"]

#: per specializer, the pass managers its kernels have run in this process
_RAN: dict[str, set[str]] = {}
#: added passes already warned about by PassManager._warn_unrun
_UNRUN_WARNED: set[int] = set()

#: every pass name defined in this process so far (a pass is defined when its module is
#: imported), with the top-level packages that define a pass of that name
_KNOWN: dict[str, set[str]] = {}


def _package(obj: Any) -> str:
    """The top-level package of ``obj`` (a ``"module:attr"`` string names its module)."""
    module = (obj.partition(":")[0] if isinstance(obj, str)
              else getattr(obj, "__module__", None) or type(obj).__module__)
    return str(module).split(".")[0]


def known_passes() -> frozenset[str]:
    """Names of every pass the installed plugins define (importing every lazily registered
    component first, since a pass exists once its module is imported)."""
    from asp_core.plugins import get_registry

    registry = get_registry()
    for comp in [*registry, *registry.added_passes]:
        try:
            comp.obj
        except Exception:  # noqa: BLE001 - a broken plugin must not hide the others' passes
            pass
    return frozenset(_KNOWN)


def check_added(anchors: bool = True) -> None:
    """Report as broken (``PluginWarning``, ``asp list``, ``asp doctor``) the passes plugins
    added that cannot be loaded, are added to a specializer no plugin registers, or
    (``anchors``: imports every component) are to run next to a pass no plugin defines: such
    a pass never runs, and only a kernel's run said so, or nothing did (a misspelt
    specializer). A misspelt manager name is warned about when kernels run
    (:meth:`PassManager.run`): it cannot be told here from one that has not run yet."""
    from asp_core.plugins import get_registry, report_broken_pass

    registry = get_registry()
    names = known_passes() if anchors else frozenset()
    for added in registry.added_passes:
        try:
            added.obj
            if added.specializer not in registry.specializers:
                raise PluginError(f"{added.where}: no installed plugin registers specializer "
                                  f"{added.specializer!r} (installed: "
                                  f"{', '.join(sorted(registry.specializers)) or 'none'})")
            if anchors and added.anchor is not None and added.anchor not in names:
                raise PluginError(f"{added.where}: pass {added.obj.name!r} is to run next to "
                                  f"{added.anchor!r}, which no installed plugin defines")
        except PluginError as exc:
            report_broken_pass(added, exc)


class PassError(AspError):
    """A pass raised or broke the pass protocol (a specializer bug), named in the message."""


class PassNeeded(AspError):
    """A disabled pass that this kernel needs (its ``needed`` gave the reason): the kernel
    runs in Python with a warning naming the pass, rather than a later pass failing on what it
    should have rewritten (read as that pass's bug) or every platform declining the program
    (a silent fallback)."""


def _result(p: Pass, out: Any, where: str) -> PassResult:
    if (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], bool)
            and out[0] is not None):
        return PassResult(out[0], out[1])
    if isinstance(out, tuple) and len(out) == 2 and out[0] is not None:
        raise PassError(f"pass {p.name!r}{where} returned (ir, changed) with changed a "
                        f"{type(out[1]).__name__}, not a bool")
    got = "None" if out is None else type(out).__name__
    raise PassError(f"pass {p.name!r}{where} returned {got} instead of (ir, changed)")


@dataclass(frozen=True)
class Pass:
    """A named step ``fn(ir, ctx) -> (ir, changed)``; calling it returns only the new IR,
    :meth:`apply` the :class:`PassResult`."""

    name: str
    fn: PassFn
    description: str = ""
    needed: NeededFn | None = None

    def __post_init__(self) -> None:
        _KNOWN.setdefault(self.name, set()).add(_package(self.fn))

    def apply(self, ir: Any, ctx: SpecializationContext) -> PassResult:
        return _result(self, self.fn(ir, ctx), "")

    def __call__(self, ir: Any, ctx: SpecializationContext) -> Any:
        return self.apply(ir, ctx).ir


def asp_pass(name: str, description: str = "", *, needed: NeededFn | None = None
             ) -> Callable[[PassFn], Pass]:
    """Decorator turning ``fn(ir, ctx) -> (ir, changed)`` into a :class:`Pass` called ``name``.

    ``needed(ir)`` declares a pass the later phases cannot do without on some programs: it
    says why (or ``None``), and disabling the pass then raises :class:`PassNeeded`."""

    def wrap(fn: PassFn) -> Pass:
        return Pass(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0], needed)

    return wrap


def _parts(entry: str) -> tuple[str | None, str]:
    """``"spec:name"`` → ``("spec", "name")``; a plain ``"name"`` → ``(None, "name")``."""
    spec, sep, name = entry.partition(":")
    return (spec.strip(), name.strip()) if sep else (None, entry)


def disabled_for(disabled: frozenset[str], specializer: str | None) -> frozenset[str]:
    """The pass names ``disabled`` switches off for ``specializer``: a plain ``name`` every
    specializer's pass of that name, ``spec:name`` that specializer's only (pass names are
    not unique across plugins: a new specializer's ``constant-folding`` and asp-stencil's,
    whose kernels then ran in Python)."""
    names = set()
    for entry in disabled:
        spec, name = _parts(entry)
        if spec is None or spec == specializer:
            names.add(name)
    return frozenset(names)


def check_disabled(disabled: frozenset[str], own: list[str], specializer: str | None = None
                   ) -> None:
    """``ValueError`` for disabled names no pass has, qualified by a specializer that is not
    installed, or ``spec:name`` naming a pass ``spec`` does not have (in ``own`` when ``spec``
    is the ``specializer`` running them, or defined by a package that registers one of its
    components): a typo must not pass silently. Given a ``specializer``, only its own
    ``spec:name`` entries are checked (another's pass list is not at hand); without one
    (``asp doctor``), every entry."""
    entries = [_parts(e) for e in disabled]
    names = {name for _, name in entries}
    specs = {spec for spec, _ in entries if spec is not None}
    if not names - set(_KNOWN) - set(own) and not specs:
        return
    every = known_passes() | set(own)
    unknown = names - every
    if unknown:
        known = ", ".join(sorted(every)) or "none"
        listed = ", ".join(repr(n) for n in sorted(unknown))
        raise ValueError(f"unknown pass name{'s' if len(unknown) > 1 else ''} {listed} in "
                         f"ASP_DISABLE_PASSES or the kernel option disable_passes; known "
                         f"passes: {known}")
    from asp_core.plugins import get_registry

    installed = get_registry().specializers
    strangers = specs - set(installed)
    if strangers:
        listed = ", ".join(repr(s) for s in sorted(strangers))
        raise ValueError(f"ASP_DISABLE_PASSES or the kernel option disable_passes names "
                         f"{listed}, which no installed plugin registers as a specializer "
                         f"(write spec:pass with one of: {', '.join(sorted(installed))})")
    for spec in sorted(specs) if specializer is None else [specializer]:
        packages = {_package(c.target) for c in get_registry() if c.specializer == spec}
        its = set(own) | {name for name, defined in _KNOWN.items() if defined & packages}
        its |= {added.obj.name for added in get_registry().added_passes
                if added.specializer == spec and isinstance(added.target, Pass)}
        foreign = sorted(name for s, name in entries if s == spec and name not in its)
        if foreign:
            listed = ", ".join(f"'{spec}:{n}'" for n in foreign)
            raise ValueError(f"ASP_DISABLE_PASSES or the kernel option disable_passes names "
                             f"{listed}, but {spec!r} has no pass of that name (its passes: "
                             f"{', '.join(sorted(its)) or 'none'}; the name belongs to "
                             f"another specializer)")


class PassManager:
    """Runs a list of passes; see the module docstring."""

    def __init__(self, name: str, passes: list[Pass] | None = None) -> None:
        self.name = name
        self.passes: list[Pass] = list(passes or [])

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.passes]

    def add(self, p: Pass) -> None:
        if p.name in self.names:
            raise ValueError(f"pass {p.name!r} is already in pass manager {self.name!r}")
        self.passes.append(p)

    def add_after(self, after: str, p: Pass) -> None:
        """Insert ``p`` right after the pass named ``after``."""
        if after not in self.names:
            raise ValueError(f"no pass {after!r} in {self.name!r}; passes: {self.names}")
        self.passes.insert(self.names.index(after) + 1, p)

    def _with_added(self, ctx: SpecializationContext) -> tuple[list[Pass], dict[str, Any]]:
        """The passes a kernel of ``ctx.specializer`` runs: this manager's, with those plugins
        added to it (``register.add_pass``; by name, the :class:`~asp_core.registry.AddedPass`
        of each). A pass may follow one another plugin adds, whichever plugin loaded first;
        one that cannot be placed is left out, its plugin reported broken and the kernel's
        log saying why (``asp explain``)."""
        from asp_core.plugins import get_registry, report_broken_pass

        def leave_out(added: Any, exc: PluginError) -> None:
            report_broken_pass(added, exc)
            name = added.obj.name if isinstance(added.target, Pass) else str(added.target)
            ctx.record("pass", manager=self.name, name=name, skipped=True, changed=False,
                       seconds=0.0, ir=None, error=None, left_out=f"{added.origin}; {exc}")

        passes, origins = list(self.passes), {}
        spec = ctx.specializer
        pending = get_registry().passes_for(spec, self.name) if spec is not None else []
        while pending:
            waiting = []
            for added in pending:
                try:
                    if added.place(passes):
                        origins[added.obj.name] = added
                    else:
                        waiting.append(added)
                except PluginError as exc:
                    leave_out(added, exc)
            if len(waiting) == len(pending):   # no anchor of theirs will come
                for added in waiting:
                    leave_out(added, added.unplaced(passes))
                break
            pending = waiting
        return passes, origins

    def _warn_unrun(self, specializer: str) -> None:
        """Warn once about each pass added to a manager of ``specializer`` that its kernels
        have not run while they ran this one: a misspelt manager name, whose pass never ran
        without a word (a specializer with several managers may still run it later)."""
        from asp_core.plugins import get_registry

        ran = _RAN.setdefault(specializer, set())
        ran.add(self.name)
        for added in get_registry().added_passes:
            if (added.specializer == specializer and added.manager not in ran
                    and id(added) not in _UNRUN_WARNED):
                _UNRUN_WARNED.add(id(added))
                warn(f"asp: {added.where} ({added.origin}): {specializer!r} kernels have run "
                     f"the pass managers {', '.join(sorted(ran))} but none called "
                     f"{added.manager!r}, so the pass has not run (a misspelt manager name? "
                     "asp explain names the managers)", PluginWarning)

    def run(self, ir: Any, ctx: SpecializationContext) -> Any:
        if ctx.specializer is not None:
            self._warn_unrun(ctx.specializer)
        passes, origins = self._with_added(ctx)
        disabled = config.disabled_passes(ctx.options)
        if disabled:
            check_disabled(disabled, [p.name for p in passes], ctx.specializer)
            disabled = disabled_for(disabled, ctx.specializer)
        keep_ir = recording.is_recording()  # dumps cost time: only for `asp explain`
        skipped: list[str] = []
        for p in passes:
            if p.name in disabled:
                self._refuse_if_needed(p, ir, ctx, keep_ir)
                skipped.append(p.name)
                report = PassReport(self.name, p.name, changed=False, skipped=True)
            else:
                start = time.perf_counter()
                try:
                    ir, changed = self._apply(p, ir, ctx, skipped, origins.get(p.name))
                except AspError as exc:
                    # the pass ran and ended the specialisation: the explain log says so
                    # (``--after`` of it said the pass "did not run", and the list of passes
                    # stopped at the one before it)
                    ctx.record("pass", manager=self.name, name=p.name, skipped=False,
                               changed=False, seconds=time.perf_counter() - start, ir=None,
                               error=str(exc))
                    raise
                report = PassReport(self.name, p.name, changed,
                                    seconds=time.perf_counter() - start)
            ctx.passes.append(report)
            ctx.record("pass", manager=self.name, name=p.name, skipped=report.skipped,
                       changed=report.changed, seconds=report.seconds,
                       ir=dump(ir) if keep_ir else None, error=None)
        return ir

    def _refuse_if_needed(self, p: Pass, ir: Any, ctx: SpecializationContext, keep_ir: bool
                          ) -> None:
        """:class:`PassNeeded` when the disabled pass ``p`` is needed on ``ir`` (recorded as
        skipped, with the reason, for ``asp explain``)."""
        why = p.needed(ir) if p.needed is not None else None
        if why is None:
            return
        message = (f"pass {p.name!r} of {self.name!r} is disabled (ASP_DISABLE_PASSES or the "
                   f"kernel option disable_passes), and this kernel needs it: {why}")
        ctx.passes.append(PassReport(self.name, p.name, changed=False, skipped=True))
        ctx.record("pass", manager=self.name, name=p.name, skipped=True, changed=False,
                   seconds=0.0, ir=dump(ir) if keep_ir else None, error=message)
        raise PassNeeded(message)

    def _apply(self, p: Pass, ir: Any, ctx: SpecializationContext, skipped: list[str],
               added: Any = None) -> PassResult:
        """``p`` on ``ir``; an error of its own becomes a :class:`PassError` naming it (and the
        plugin that added it to this manager) and the passes disabled before it (a pass
        failing on what a disabled one should have removed is not itself at fault: "pass
        'type-check' failed: NotLowered: Attr node" read as its bug). A pass returning
        another type of IR than it was given is its error, not the next pass's
        ("'output-forwarding' failed: AttributeError: 'str' object has no attribute ...")."""
        where = f" of {self.name!r}" + (f" ({added.origin})" if added is not None else "")
        try:
            out = p.fn(ir, ctx)
        except (AspError, Warning):  # Unspecializable among them: the pass's own clear
            raise                      # answer; a warning is the user's error to see
        except Exception as exc:
            before = f" (disabled before it: {', '.join(skipped)})" if skipped else ""
            raise PassError(f"pass {p.name!r}{where} failed: "
                            f"{type(exc).__name__}: {exc}{before}") from exc
        result = _result(p, out, where)
        if not isinstance(result.ir, type(ir)):
            raise PassError(f"pass {p.name!r}{where} returned a {type(result.ir).__name__} "
                            f"as its IR, not the {type(ir).__name__} it was given")
        return result

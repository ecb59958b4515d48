"""Running the five phases of one specialisation (Asp paper, Figure 3), one component per
phase chosen through the registry, every choice and its reason recorded in the context (a
typed :class:`~asp_core.decisions.Decision` per phase, ``what`` the phase's name)."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import weakref
from types import MappingProxyType
from typing import Any, Callable, Hashable, Iterator, Mapping

from asp_core import config, interrupt
from asp_core.autotune import Autotuner
from asp_core.cache import cache_key
from asp_core.components import PlatformProgram, Variant
from asp_core.context import SpecializationContext
from asp_core.decisions import VARIANT
from asp_core.errors import AspError, PluginError
from asp_core.ir import Node, dump
from asp_core.phases import (BACKEND, DOMAIN_OPTIMIZATION, FRONTEND, PLATFORM_OPTIMIZATION,
                             PLATFORM_SELECTION)
from asp_core.registry import Choice, Component, Registry

__all__ = ["Pipeline", "NoPlatform", "TuningCallable", "Variants", "render_program"]


class NoPlatform(AspError):
    """No platform can run this kernel here (each platform's reason is in the message)."""


def render_program(program: PlatformProgram) -> str:
    """Readable text of a platform program (C source for a PAST module)."""
    from asp_core.cast import Module, print_c, print_cuda

    ir = program.ir
    if isinstance(ir, Module):
        return print_cuda(ir) if program.platform.startswith("cuda") else print_c(ir)
    if isinstance(ir, Node):
        return dump(ir)
    return str(ir)


class TuningCallable:
    """Stands in for a kernel while its variants are timed on real calls; once the winner is
    known, ``on_decided(callable)`` lets the dispatcher bind it directly. Timed calls from
    several threads run one at a time: a timing taken while another thread's call shared the
    cores measured both (the variant timed beside a busy one lost, and was stored as slower
    for every later process), and two threads could decide, and store, the same tuning twice.
    """

    def __init__(self, tuner: Autotuner, variants: Variants,
                 on_decided: Callable[[Callable[..., Any]], None]) -> None:
        self.tuner = tuner
        self._get = variants.__getitem__
        self.variant = variants.variant
        self._built = variants._built
        self._on_decided = on_decided
        # re-entrant: a variant may call back into user code that calls this kernel again
        # (a solver's callback), which a plain lock would deadlock
        self._timing = threading.RLock()
        _TUNING.add(self)

    @property
    def built(self) -> Mapping[str, Callable[..., Any]]:
        """The variants built so far, name → callable (read-only)."""
        return MappingProxyType(self._built)

    def _next(self) -> tuple[str, Callable[..., Any]]:
        """The variant to run now; one that fails to build leaves the tuning (the default
        is already built)."""
        while True:
            name = self.tuner.next()
            try:
                return name, self._get(name)
            except AspError as exc:
                if not self._built:
                    raise
                self.tuner.exclude(name, f"failed to build: {exc}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._timing:
            name, fn = self._next()
            if not self.tuner.done:
                return self._timed(name, fn, args, kwargs)
        self._on_decided(fn)
        return fn(*args, **kwargs)

    def _timed(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]
               ) -> Any:
        """One call of variant ``name``, timed (the caller holds ``_timing``)."""
        # a call Ctrl-C interrupted may still run on the worker (asp_core.interrupt), and this
        # one would wait for it inside its timing: the variant lost by the rest of that call,
        # and the wrong winner was stored for every later process
        interrupt.wait_idle()
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.tuner.report(name, time.perf_counter() - start)
        if self.tuner.done:
            self._on_decided(self._get(self.tuner.winner or name))
        return result


#: every tuning under way, for the reset of their locks in a forked child
_TUNING: weakref.WeakSet[TuningCallable] = weakref.WeakSet()


def _after_fork() -> None:
    """A forked child has none of the parent's threads: the timing lock of a call under way
    in one of them would never be released, and the child's calls would wait forever."""
    for tuning in list(_TUNING):
        tuning._timing = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class Variants(Mapping[str, Callable[..., Any]]):
    """The variants of one call, name → callable (default first), each built on first access;
    ``context`` records the phase decisions and builds."""

    def __init__(self, ctx: SpecializationContext, variants: list[Variant], backend: Component,
                 optimizer: Component | None = None, program: Any = None) -> None:
        self.context = ctx
        self.key = ctx.key
        self._program = program   # the domain IR the variants were lowered from
        self._by_name = {v.name: v for v in variants}
        self._backend = backend
        self._optimizer = optimizer
        self._materialise = getattr(optimizer.obj, "materialise", None) if optimizer else None
        self._ready: dict[str, Variant] = {}
        self._built: dict[str, Callable[..., Any]] = {}

    @functools.cached_property
    def tuning_key(self) -> Hashable:
        """What stored timings of these variants are keyed by: the call's key says what the
        arguments are, not which kernel runs on them, so the domain IR (as printed, its
        compared fields only) goes with it; without it every stencil kernel on the same grids
        shared one stored winner (a one-multiply kernel's single-thread variant chosen,
        untimed, for a heavy kernel), alone and across MPI ranks. Printed when first asked
        (a specializer with its own ``tuning_key`` never asks)."""
        return (self.key, dump(self._program, compared=True))

    def variant(self, name: str) -> Variant:
        """The variant called ``name`` as phase 4 finished it, not built; its optimiser's
        ``materialise`` runs on first access, so only variants built or inspected pay for it."""
        ready = self._ready.get(name)
        if ready is None:
            ready = self._by_name[name]
            if self._materialise is not None:
                self.context.variant = name
                materialise, todo = self._materialise, ready
                assert self._optimizer is not None
                ready = _guarded(self._optimizer, "materialise",
                                 lambda: materialise(todo, self.context))
            self._ready[name] = ready
        return ready

    def __getitem__(self, name: str) -> Callable[..., Any]:
        fn = self._built.get(name)
        if fn is None:
            variant = self.variant(name)
            start = time.perf_counter()
            self.context.variant = name
            backend = self._backend
            fn = _guarded(backend, "build", lambda: backend.obj.build(variant, self.context))
            if not callable(fn):
                raise _misbehaved(backend, "build", f"returned {type(fn).__name__}, not the "
                                  "bound callable")
            self._built[name] = fn
            self.context.record("build", variant=name, seconds=time.perf_counter() - start)
        return fn

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


class Pipeline:
    """The five phases of one specializer over the registry's components."""

    def __init__(self, registry: Registry, specializer: str) -> None:
        if specializer not in registry.specializers:
            known = ", ".join(sorted(registry.specializers)) or "none"
            from asp_core.plugins import install_hint

            raise NoPlatform(f"specializer {specializer!r} is not installed (installed: {known}); "
                             f"{install_hint(specializer)}")
        self.registry = registry
        self.spec = registry.specializers[specializer]

    def _one(self, ctx: SpecializationContext, phase: str, platform: str | None = None
             ) -> Component | None:
        choice = self.registry.choose(self.spec.name, phase, ctx.options, platform)
        if not choice.candidates:
            ctx.record("phase", phase=phase, component=None, reason=choice.reason)
            return None
        comp = choice.candidates[0]
        _chosen(ctx, phase, comp, choice.candidates, choice.reason, _source(choice, comp))
        return comp

    def analyse(self, ctx: SpecializationContext) -> Any:
        """Phases 1-2: the optimised domain IR."""
        front = self._one(ctx, FRONTEND)
        if front is None:
            raise NoPlatform(f"specializer {self.spec.name!r} has no frontend installed")
        dast = _guarded(front, "parse", lambda: front.obj.parse(ctx))
        if dast is None:
            raise _misbehaved(front, "parse", "returned None, not the domain IR")
        parsed = dump(dast)
        ctx.record("dast", phase=FRONTEND, ir=parsed)
        opt = self._one(ctx, DOMAIN_OPTIMIZATION)
        if opt is not None:
            before = dast
            dast = _guarded(opt, "optimize", lambda: opt.obj.optimize(before, ctx))
            if type(dast) is not type(before):
                # else the platforms' checks failed on it and were reported as the broken ones
                raise _misbehaved(opt, "optimize", f"returned {type(dast).__name__}, not the "
                                  f"domain IR it was given ({type(before).__name__})")
            # compared as printed: ``!=`` of two trees holding NumPy arrays raised "the truth
            # value of an array is ambiguous"
            if (optimised := dump(dast)) != parsed:
                ctx.record("dast", phase=DOMAIN_OPTIMIZATION, ir=optimised)
        return dast

    def variants(self, ctx: SpecializationContext, platform: str | None = None) -> Variants:
        """Phases 1-4 as a :class:`Variants` mapping, each variant built on first access.
        ``platform`` names a platform-selection component (``"cuda"``...) that phase 3 lowers
        for without asking its ``check`` (code generation only, such as compile-checking CUDA
        where there is no GPU, or a platform only its caller knows when to use); the other
        phases are still the registry's choice."""
        dast = self.analyse(ctx)
        return Variants(ctx, *self._lower(ctx, platform, dast), program=dast)

    def _lower(self, ctx: SpecializationContext, platform: str | None, dast: Any
               ) -> tuple[list[Variant], Component, Component | None]:
        program = (self._select_platform(ctx, dast) if platform is None else
                   self._named_platform(ctx, dast, platform))
        popt = self._one(ctx, PLATFORM_OPTIMIZATION, program.platform)
        variants = (_guarded(popt, "variants", lambda: popt.obj.variants(program, ctx)) if popt
                    else [Variant("default", program)])
        if not variants:
            assert popt is not None  # the default variant list is never empty
            raise NoPlatform(f"platform optimiser {popt.name!r} produced no variants")
        if popt is not None and not all(isinstance(v, Variant) for v in variants):
            kinds = ", ".join(sorted({type(v).__name__ for v in variants}))
            raise _misbehaved(popt, "variants", f"returned {type(variants).__name__} of "
                              f"{kinds}, not Variants")
        if len({v.name for v in variants}) < len(variants):
            assert popt is not None
            raise _misbehaved(popt, "variants", "returned variants of one name (one would "
                              "be lost)")
        ctx.record("variants", names=[v.name for v in variants],
                   params={v.name: v.params for v in variants})
        backend = self._one(ctx, BACKEND, program.platform)
        if backend is None:
            raise NoPlatform(f"no backend installed for platform {program.platform!r} of "
                             f"specializer {self.spec.name!r}")
        return variants, backend, popt

    def _named_platform(self, ctx: SpecializationContext, dast: Any, name: str
                        ) -> PlatformProgram:
        """Phase 3 for the platform the caller named, its run-time ``check`` skipped."""
        installed = self.registry.for_phase(self.spec.name, PLATFORM_SELECTION)
        comp = next((c for c in installed if c.name == name), None)
        if comp is None:
            known = ", ".join(c.name for c in installed) or "none"
            raise NoPlatform(f"specializer {self.spec.name!r} has no platform {name!r} "
                             f"(installed: {known})")
        program = _guarded(comp, "lower", lambda: comp.obj.lower(dast, ctx))
        if not isinstance(program, PlatformProgram):
            raise _misbehaved(comp, "lower", f"returned {type(program).__name__}, not a "
                              "PlatformProgram")
        _chosen(ctx, PLATFORM_SELECTION, comp, installed, "named by the caller; its run-time "
                "check was not run", "named", program, [])
        return program

    def _select_platform(self, ctx: SpecializationContext, dast: Any) -> PlatformProgram:
        choice = self.registry.choose(self.spec.name, PLATFORM_SELECTION, ctx.options)
        rejected: list[tuple[str, str]] = []
        for comp in choice.candidates:
            program, reason = _try_platform(comp, dast, ctx)
            if program is not None:
                _chosen(ctx, PLATFORM_SELECTION, comp, choice.candidates,
                        _platform_reason(choice, comp, [n for n, _ in rejected]),
                        _source(choice, comp), program, rejected)
                return program
            rejected.append((comp.name, reason))
            if choice.requested == comp.name:
                raise NoPlatform(f"platform {comp.name!r} was requested but cannot run here: "
                                 f"{reason}")
        detail = "; ".join(f"{n}: {r}" for n, r in rejected) or "no platform installed"
        raise NoPlatform(f"no usable platform for specializer {self.spec.name!r} ({detail})")

    def run(self, ctx: SpecializationContext,
            rebind: Callable[[Callable[..., Any]], None]) -> Callable[..., Any]:
        """All five phases: the bound callable (or a :class:`TuningCallable` while tuning)."""
        dast, variants, backend, popt = self._lowered(ctx)
        by_name = {v.name: v for v in variants}
        built = Variants(ctx, variants, backend, popt, program=dast)

        tuning_fn = self.spec.hook("tuning_key")   # what a specializer's winners depend on
        tuning = tuning_fn(ctx.args, ctx.kwargs, ctx.instance) if tuning_fn else built.tuning_key
        tkey = cache_key(specializer=self.spec.name, tuning=repr(tuning),
                         variants=sorted(by_name), backend=backend.name,
                         platform=variants[0].program.platform)

        tuner = Autotuner(tkey, list(by_name), params={v.name: v.params for v in variants},
                          label=f"{self.spec.name}:{ctx.kernel_name}",
                          on_event=ctx.tuning_events(VARIANT),
                          repeats=self.spec.tuning_repeats)
        if tuner.done:
            return built[tuner.winner or variants[0].name]
        # built now, inside the dispatcher's error handling: no compiler means a fallback now,
        # not an error on a later call
        built[variants[0].name]
        return TuningCallable(tuner, built, rebind)

    def _lowered(self, ctx: SpecializationContext
                 ) -> tuple[Any, list[Variant], Component, Component | None]:
        """Phases 1-4 of ``ctx``: the domain IR, the variants, the backend and the platform
        optimiser. For a specializer with ``shared_lowering``, made once per kernel class, key,
        options and settings, and given to every object of the class with what the phases
        recorded (``asp explain`` shows the same phases)."""
        memo, at = _shared(self, ctx)
        hit = memo.get(at) if memo is not None else None
        # the registry is compared, not only its id (kept alive by the entry, which holds it)
        if hit is not None and hit[0] is self.registry:
            _, made, events, decisions, passes = hit
            ctx.events.extend(events)
            ctx.decisions.extend(decisions)
            ctx.passes.extend(passes)
            return made
        marks = len(ctx.events), len(ctx.decisions), len(ctx.passes)
        dast = self.analyse(ctx)
        made = (dast, *self._lower(ctx, None, dast))
        if memo is not None:
            if len(memo) >= LOWERED_PER_CLASS:   # the oldest goes
                with contextlib.suppress(RuntimeError, StopIteration, KeyError):  # a thread's
                    del memo[next(iter(memo))]
            memo[at] = (self.registry, made, ctx.events[marks[0]:], ctx.decisions[marks[1]:],
                        ctx.passes[marks[2]:])
        return made


#: kernel class -> what phases 1-4 made of each call (:meth:`Pipeline._lowered`)
_LOWERED: weakref.WeakKeyDictionary[type, dict[Hashable, tuple]] = weakref.WeakKeyDictionary()
#: the most keys of one kernel class kept (a class called on many shapes keeps its latest;
#: a 3-D kernel's phases hold about 0.45 MB)
LOWERED_PER_CLASS = 16
#: variables besides ``ASP_*``/``OMP_*`` that platform checks read (the compiler on ``PATH``,
#: the GPUs a process sees): a platform refused without them was refused for good
_READ_BY_PHASES = frozenset({"PATH", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"})


def _shared(pipeline: Pipeline, ctx: SpecializationContext
            ) -> tuple[dict[Hashable, tuple] | None, Hashable]:
    """Where :meth:`Pipeline._lowered` keeps the phases of ``ctx`` (None: not shared) and under
    what: the kernel function, the key, the options, the registry, the config file and the
    environment a phase may read (``ASP_*``, ``OMP_*`` and :data:`_READ_BY_PHASES`)."""
    if not pipeline.spec.shared_lowering or ctx.instance is None or ctx.func is None:
        return None, None
    try:
        memo = _LOWERED.setdefault(type(ctx.instance), {})
        at = (pipeline.spec.name, getattr(ctx.func, "__func__", ctx.func), ctx.key,
              repr(sorted(ctx.options.items())), id(pipeline.registry),
              len(pipeline.registry.components),
              tuple(sorted((k, v) for k, v in os.environ.items()
                           if k.startswith(("ASP_", "OMP_")) or k in _READ_BY_PHASES)),
              repr(config.load_config()))
        hash(at)
    except (TypeError, ValueError):   # a class that cannot be weakly referenced or hashed
        return None, None
    return memo, at


def _try_platform(comp: Component, dast: Any, ctx: SpecializationContext
                  ) -> tuple[PlatformProgram | None, str]:
    """Phase 3 of one platform: its program, or None and why not.  A platform that cannot be
    loaded, raises, or answers out of protocol is reported as broken and passed over for the
    next (one that could not be imported sent every kernel to Python, while ``asp list``
    showed the next platform as the default)."""
    from asp_core.plugins import report_broken_component

    try:
        platform = comp.obj
        reason = platform.check(dast, ctx)
        if reason is not None and not isinstance(reason, str):
            raise PluginError(f"check returned {reason!r}: expected None or a reason string")
        if reason is not None:
            return None, reason
        program = platform.lower(dast, ctx)
        if not isinstance(program, PlatformProgram):
            raise PluginError(f"lower returned {type(program).__name__}, not a PlatformProgram")
        return program, ""
    except PluginError as exc:   # cannot be loaded, or out of protocol
        report_broken_component(comp, exc, "load/check/lower")
        return None, f"broken: {exc}"
    except AspError:
        raise  # the platform's own clear answer (e.g. Unspecializable)
    except Warning as exc:
        # a warning the user made an error (a CacheWarning under simplefilter("error")): that
        # platform was reported broken and the kernel ran on another, the error never raised
        exc.add_note(f"(raised in check/lower of {_where(comp)})")
        raise
    except Exception as exc:  # noqa: BLE001 - a faulty platform must not stop the rest
        report_broken_component(comp, exc, "check/lower")
        return None, f"broken: {type(exc).__name__}: {exc}"


def _misbehaved(comp: Component, what: str, answer: str) -> PluginError:
    """A component whose method answered out of the phase protocol (a wrong type), reported
    as broken and named in the :class:`PluginError` the kernel falls back with (it ended
    in an ``AttributeError`` or ``TypeError`` naming no plugin, at the user's call)."""
    from asp_core.plugins import report_broken_component

    exc = PluginError(f"{what} of {_where(comp)} {answer}")
    report_broken_component(comp, exc, what)
    return exc


def _where(comp: Component) -> str:
    dist = comp.distribution or "(in-process)"
    return (f"component {comp.specializer}/{comp.phase}/{comp.name} of plugin "
            f"{comp.plugin or '(in-process)'!r} {dist if dist.startswith('(') else f'({dist})'}")


def _guarded(comp: Component, what: str, call: Callable[[], Any]) -> Any:
    """``call()``, a kernel's call of one component method (``what``). An exception raised by
    the call itself, before the method's body ran (a method with the wrong signature, an object
    lacking it), is a broken plugin: reported with a ``PluginWarning`` naming it and turned into
    a :class:`PluginError`, so the kernel falls back to Python (``strict`` mode raises it);
    before, a bare ``TypeError: build() takes 2 positional arguments`` ended every kernel call,
    naming no plugin. An exception from inside the method passes unchanged (components raise
    ``TypeError``/``ValueError`` for the user's mistakes: wrong grids, a malformed variable),
    with a note naming the component and its plugin."""
    try:
        return call()
    except AspError:
        raise
    except Exception as exc:
        where = _where(comp)
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None and tb.tb_frame.f_code is getattr(call, "__code__", None):
            from asp_core.plugins import report_broken_component

            report_broken_component(comp, exc, what)
            raise PluginError(f"{what} of {where} cannot be called: "
                              f"{type(exc).__name__}: {exc}") from exc
        exc.add_note(f"(raised in {what} of {where})")
        raise


def _chosen(ctx: SpecializationContext, phase: str, comp: Component, candidates: list[Component],
            reason: str, source: str, program: PlatformProgram | None = None,
            rejected: list[tuple[str, str]] | None = None) -> None:
    """A phase's choice on the context: the event ``asp explain`` shows and the typed decision
    (for phase 3 also the platforms that declined and the program's text)."""
    names = [c.name for c in candidates]
    extra = {} if rejected is None else {"rejected": rejected}
    ctx.record("phase", phase=phase, component=comp.name, distribution=comp.distribution,
               reason=reason, candidates=names, **extra)
    ctx.decide(phase, comp.name, reason=reason, source=source, candidates=names,
               distribution=comp.distribution, **{k: tuple(v) for k, v in extra.items()})
    if program is not None:
        ctx.record("program", platform=program.platform, text=render_program(program))


def _source(choice: Choice, comp: Component) -> str:
    """Where a phase's choice came from: the user's request or the components' priorities."""
    return "requested" if choice.requested == comp.name else "priority"


def _platform_reason(choice: Choice, comp: Component, declined: list[str]) -> str:
    """Why ``comp`` is the platform, naming the higher-priority platforms that declined."""
    if not declined or choice.requested == comp.name:
        return choice.reason
    return (f"priority {comp.priority}, the highest among the platforms that accept this kernel "
            f"({', '.join(declined)} declined it)")

"""Kernel interception: a call's key comes from the specializer's ``signature`` (which also
validates the arguments); a known key goes straight to its bound callable, a new one runs the
pipeline. An unspecialisable kernel falls back to Python with one warning (``ASP_MODE``).
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Hashable

from asp_core import config, recording
from asp_core.context import SpecializationContext
from asp_core.decisions import PLATFORM
from asp_core.errors import (AspError, CompileError, CompilerNotFound, PluginWarning,
                             SpecializationWarning, Unspecializable, warn)

if TYPE_CHECKING:
    from asp_core.autotune import Tuning
    from asp_core.pipeline import Pipeline, TuningCallable, Variants

__all__ = ["Dispatcher", "specialize"]


#: every dispatcher alive, for the reset of their locks in a forked child
_DISPATCHERS: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


#: the key of a call whose specializer is not installed
_UNINSTALLED = ("<no specializer>",)


class Dispatcher:
    """Specialising stand-in for the kernel ``func`` (``fallback`` runs when it cannot be
    specialised; ``instance`` is a class-based kernel's object; ``options`` per-kernel settings
    such as ``{"backend": "numpy"}``)."""

    def __init__(self, specializer: str, func: Callable[..., Any] | None, *,
                 fallback: Callable[..., Any] | None = None, instance: Any = None,
                 options: dict[str, Any] | None = None, name: str | None = None) -> None:
        if fallback is None and func is None:
            raise TypeError("Dispatcher needs a kernel function or a fallback")
        self.specializer = specializer
        self.func = func
        self.fallback = fallback if fallback is not None else func
        self.instance = instance
        self.options = dict(options or {})
        self.name = name or getattr(func, "__qualname__", None) or specializer
        self._table: dict[Hashable, Callable[..., Any]] = {}
        self._signature: Callable[[tuple, dict, Any], Hashable] | None = None
        self._warned = False
        self._lock = threading.Lock()
        self.last_context: SpecializationContext | None = None
        _DISPATCHERS.add(self)

    # -- the hot path -------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        signature = self._signature
        if signature is not None:
            fn = self._table.get(signature(args, kwargs, self.instance))
            # ASP_MODE=python set after a kernel specialised runs it in Python too (the table
            # served the compiled code), and ASP_MODE=strict set after it fell back raises:
            # the variable alone, a dict lookup, where reading the whole configuration
            # (config.mode) would cost more than small kernels
            mode = os.environ.get("ASP_MODE", "").strip().lower()
            if fn is not None and mode != "python" and not (mode == "strict"
                                                            and fn is self.fallback):
                return fn(*args, **kwargs)
        return self._slow_call(args, kwargs)

    def _slow_call(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        mode = config.mode()
        if mode == "python":
            if self._signature is None:
                # the arguments are checked as in the other modes (the hot path checks them
                # once a signature is known: an aliased output ran in Python on a kernel's
                # first calls and raised after it had specialised once)
                self._key(args, kwargs)
            return self.fallback(*args, **kwargs)  # type: ignore[misc]
        with self._lock:
            key, ctx = self._prepare(args, kwargs)
            fn = self._table.get(key)
            if fn is None or (fn is self.fallback and mode == "strict"):   # raises the reason
                # read before any component runs: an invalid ASP_COMPILE_TIMEOUT, first read
                # in a platform's compiler probe, passed that platform over as broken
                config.compile_timeout()
                fn = self._specialize(key, ctx, mode)
        return fn(*args, **kwargs)

    def _key(self, args: tuple, kwargs: dict[str, Any]) -> Hashable:
        """The specializer's ``signature`` of these arguments (it raises for arguments no
        kernel of it can take; kept for the hot path), or :data:`_UNINSTALLED`."""
        from asp_core.plugins import get_registry

        spec = get_registry().specializers.get(self.specializer)
        if spec is None or spec.signature is None:
            return _UNINSTALLED
        signature = spec.hook("signature")
        assert signature is not None  # spec.signature was checked above
        self._signature = signature
        return signature(args, kwargs, self.instance)

    def _prepare(self, args: tuple, kwargs: dict[str, Any]
                 ) -> tuple[Hashable, SpecializationContext | None]:
        key = self._key(args, kwargs)
        if key is _UNINSTALLED:
            return key, None
        ctx = SpecializationContext(self.specializer, self.func, args, kwargs, self.instance,
                                    self.options, key, self.name)
        return key, ctx

    def _pipeline(self, ctx: SpecializationContext | None
                  ) -> tuple[SpecializationContext, Pipeline]:
        from asp_core.pipeline import Pipeline
        from asp_core.plugins import get_registry, install_hint

        if ctx is None:
            raise AspError(f"specializer {self.specializer!r} is not installed; "
                           f"{install_hint(self.specializer)}")
        return ctx, Pipeline(get_registry(), self.specializer)

    def _fresh(self, args: tuple, kwargs: dict[str, Any]
               ) -> tuple[SpecializationContext, Pipeline]:
        """A new context for these arguments and the pipeline that runs it (the entry points
        for plugins that drive the phases themselves)."""
        return self._pipeline(self._prepare(args, kwargs)[1])

    def _specialize(self, key: Hashable, ctx: SpecializationContext | None, mode: str,
                    retried: bool = False) -> Callable[..., Any]:
        reason: str | None = None
        error: BaseException | None = None
        fn: Callable[..., Any] | None = None
        try:
            ctx, pipeline = self._pipeline(ctx)
            fn = pipeline.run(ctx, rebind=lambda winner: self._table.__setitem__(key, winner))
        except Unspecializable as exc:
            reason, error = f"unsupported construct `{exc.construct}` at {exc.where}" + \
                            (f" ({exc.reason})" if exc.reason else ""), exc
        except CompilerNotFound as exc:
            reason, error = f"no compiler: {exc}", exc
        except CompileError as exc:
            flags = os.environ.get("ASP_CFLAGS", "").strip()
            cause = (f"ASP_CFLAGS={flags!r} is set: check those flags, else a bug; please report "
                     "it" if flags else "a bug; please report it")
            reason, error = f"generated code failed to compile ({cause}): {exc}", exc
        except AspError as exc:
            reason, error = str(exc), exc
        if ctx is not None and fn is None and error is not None and not retried:
            again = self._respecialized(ctx, key, error)
            if again is not None:
                return self._specialize(*again, mode, retried=True)
        if ctx is not None and fn is None:
            # the kernel runs in Python: the context says so (its platform decision named the
            # platform that failed, and code reading it believed that platform ran)
            chosen = ctx.decision(PLATFORM)
            ctx.decide(PLATFORM, "python", reason=str(reason), source="fallback",
                       failed=chosen.choice if chosen is not None else None)
        if ctx is not None:
            self._finish(ctx, key, fn if fn is not None else reason)
            ctx.drop_arguments()
        if fn is not None:
            self._table[key] = fn
            return fn
        if mode == "strict":
            raise error  # type: ignore[misc]
        if not self._warned:
            self._warned = True
            warn(f"asp: kernel {self.name!r} runs in pure Python: {reason}",
                 SpecializationWarning)
        if self.fallback is None:
            raise error  # type: ignore[misc]
        self._table[key] = self.fallback
        return self.fallback

    def _respecialized(self, ctx: SpecializationContext, key: Hashable, error: BaseException
                       ) -> tuple[Hashable, SpecializationContext | None] | None:
        """The other key (and its context) the specializer's ``respecialize`` gives the
        arguments of ``ctx`` after ``error``, or None (see :class:`~asp_core.registry.
        Specializer`)."""
        from asp_core.plugins import get_registry

        spec = get_registry().specializers.get(self.specializer)
        hook = spec.hook("respecialize") if spec is not None else None
        if spec is None or hook is None:
            return None
        try:
            if not hook(ctx, error):
                return None
            again, new_ctx = self._prepare(ctx.args, ctx.kwargs)
        except Exception as exc:  # noqa: BLE001 - the first failure's fallback stands
            warn(f"asp: respecialize of specializer {self.specializer!r} (plugin "
                 f"{spec.plugin!r}) raised {type(exc).__name__}: {exc}", PluginWarning)
            return None
        return None if again == key else (again, new_ctx)

    def _finish(self, ctx: SpecializationContext, key: Hashable, result: Any) -> None:
        self.last_context = ctx
        recording.add_context(ctx, self.name, result if isinstance(result, str) else None)
        from asp_core.plugins import call_per_plugin

        # one plugin at a time: an observer that raises is reported, not fatal to the kernel
        call_per_plugin("asp_specialization_done", ctx=ctx, result=result)

    # -- introspection ------------------------------------------------------------------------
    @property
    def specializations(self) -> dict[Hashable, Callable[..., Any]]:
        """Key → bound callable (or the fallback) for every key seen so far; while a key is
        tuned its entry is the core's stand-in: plugins ask :meth:`tuned` and :meth:`tuning`."""
        return dict(self._table)

    def keys(self) -> list[Hashable]:
        """The keys seen so far, in the order they were first called."""
        return list(self._table)

    def tuned(self, key: Hashable) -> Callable[..., Any] | None:
        """The tuned callable for ``key``; None while unseen, tuning, or fallen back."""
        fn = self._table.get(key)
        if fn is None or fn is self.fallback or isinstance(fn, _tuning_types()[0]):
            return None
        return fn

    def tuning(self, key: Hashable) -> Tuning | None:
        """The tuning of ``key`` while its variants are timed on real calls (its candidates,
        timings, built variants; a plugin may exclude candidates), else None: unseen, tuned
        (see :meth:`tuned`) or fallen back. ``done`` may already be true: the winner is
        bound on the key's next call."""
        fn = self._table.get(key)
        stand_in, handle = _tuning_types()
        return handle(fn.tuner, fn.built, fn.variant) if isinstance(fn, stand_in) else None

    def variants(self, *args: Any, **kwargs: Any) -> Variants:
        """Phases 1-4 for these arguments: the proposed variants, each compiled on first access,
        for runners that time or choose them themselves (e.g. collectively over MPI)."""
        ctx, pipeline = self._fresh(args, kwargs)
        try:
            return pipeline.variants(ctx)
        finally:
            ctx.drop_arguments()

    def variants_for(self, platform: str, /, *args: Any, **kwargs: Any) -> Variants:
        """:meth:`variants` for the named platform (e.g. ``"cuda"``), lowered without its
        run-time check: code generation only, such as compile-checking CUDA with nvcc where
        there is no GPU, or a platform only its caller knows when to run (the stencil's
        ``openmp-temporal`` for ``iterate``). The other phases are the registry's choice, as
        for a call."""
        ctx, pipeline = self._fresh(args, kwargs)
        try:
            return pipeline.variants(ctx, platform=platform)
        finally:
            ctx.drop_arguments()

    def analyse(self, *args: Any, **kwargs: Any) -> tuple[SpecializationContext, Any]:
        """Phases 1-2 for these arguments: a fresh context and the optimised domain IR."""
        ctx, pipeline = self._fresh(args, kwargs)
        return ctx, pipeline.analyse(ctx)

    def build_variants(self, *args: Any, **kwargs: Any) -> dict[str, Callable[..., Any]]:
        """Every proposed variant for these arguments, built (name → callable), none bound;
        recorded for ``asp explain`` like a call (its compiles were otherwise shown nowhere,
        and a later call of the kernel reported them as cache hits)."""
        from asp_core.plugins import call_per_plugin

        ctx, pipeline = self._fresh(args, kwargs)
        recording.add_context(ctx, f"{self.name} (every variant built)")
        built = dict(pipeline.variants(ctx))
        # observers see it as a specialisation (``asp explain --platform`` lowered none of a
        # cold GMM fit's kernels: its library is built this way)
        call_per_plugin("asp_specialization_done", ctx=ctx, result=built)
        return built

    def clear(self) -> None:
        """Forget every specialisation (the code cache keeps the compiled code)."""
        with self._lock:
            self._table.clear()
            self._warned = False


@functools.cache
def _tuning_types() -> tuple[type[TuningCallable], type[Tuning]]:
    """The pipeline's stand-in for a key being tuned and the handle plugins get for it,
    imported on first use (the pipeline costs ~10 ms to import) and then at no cost."""
    from asp_core.autotune import Tuning
    from asp_core.pipeline import TuningCallable

    return TuningCallable, Tuning


def specialize(specializer: str, **options: Any) -> Callable[[Callable[..., Any]], Dispatcher]:
    """Decorator: ``@specialize("elementwise")`` turns a function into a :class:`Dispatcher`."""
    return functools.partial(Dispatcher, specializer, options=options)


def _after_fork() -> None:
    """A forked child has none of the parent's threads: a dispatcher lock one of them held (a
    specialisation under way in the background) would never be released, and the child's first
    call would wait forever.  The child specialises afresh what the parent had not finished."""
    for dispatcher in list(_DISPATCHERS):
        dispatcher._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

"""The temporally blocked variants of a kernel instance, one set per grid signature.

:func:`get_iterator` asks the kernel's dispatcher for the variants of the ``openmp-temporal``
platform (``Dispatcher.variants_for``, the core's public way to a named platform): phases 1-2
as for a call (the same frontend, domain passes and kernel options), phase 3 lowers the
blocked C (:mod:`.platform`), phase 4 proposes the tuning points (:mod:`.variants`) and phase 5
binds each as a callable running ``steps`` sweeps (:mod:`.backend`), every phase the registry's
choice. It builds them all at once (one library: the tuning point is a run-time argument) and
records the specialisation for ``asp explain``; :mod:`.iterate` times them against plain
sweeps on real calls.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

from asp_core import recording
from asp_core.cache import cache_key
from asp_core.context import SpecializationContext
from asp_core.errors import AspError, CompileError, SpecializationWarning, warn
from asp_core.hardware import default_threads
from asp_core.phases import PLATFORM_SELECTION
from asp_core.pipeline import render_program

from ..kernel import STATE_PREFIX, object_memo
from ..signature import stencil_signature
from .backend import library_cached
from .platform import PLATFORM

if TYPE_CHECKING:
    from asp_core.pipeline import Variants

__all__ = ["Blocked", "build_is_cached", "built_iterator", "get_iterator", "iterators"]

#: where a kernel object keeps its blocked variants, per grid signature (:func:`object_memo`)
_ITERATORS = f"{STATE_PREFIX}iterators"
#: where it keeps the lowered (not yet built) blocked variants, per grid signature
_LOWERED = f"{STATE_PREFIX}blocked_lowered"
#: where it keeps whether the code cache held their library (:func:`build_is_cached`)
_CACHED = f"{STATE_PREFIX}blocked_cached"
#: per kernel, held while its blocked variants are built: concurrent first iterations each
#: generated, compiled and recorded their own set, and each tuned its own against plain sweeps
#: (kept here, not on the object: a child forked while one was held resets them all; kernels
#: that compare equal share one, which only orders their builds)
_BUILDING: "weakref.WeakKeyDictionary[Any, threading.Lock]" = weakref.WeakKeyDictionary()


@dataclass
class Blocked:
    """The built blocked variants of one specialisation: ``runs`` maps each variant's name to
    its callable ``fn(*grids, steps=n)``, in phase 4's order, ``params`` to its tuning
    parameters; ``key`` names the specialisation in the perf database (the generated program,
    the signature, the variants and the thread count). ``choices`` holds the plain-vs-blocked tuners of
    :mod:`.iterate` (one per chunk length and mode); they record their events and typed
    decisions in :attr:`ctx`, the context of this specialisation."""

    variants: Variants
    runs: dict[str, Callable[..., Any]]
    params: dict[str, dict[str, Any]]
    key: str
    choices: dict = field(default_factory=dict)

    @property
    def ctx(self) -> SpecializationContext:
        return self.variants.context


def iterators(kernel: Any) -> list[Blocked]:
    """The blocked variants built for ``kernel`` in this process (one set per grid signature)."""
    built: dict[Any, Union[Blocked, str]] = object_memo(kernel, _ITERATORS, dict)
    return [it for it in built.values() if not isinstance(it, str)]


def _build(kernel: Any, variants: Variants) -> Union[Blocked, str]:
    """Every variant built (one compile; a variant the library cannot run is left out, its
    reason recorded), or why none can run."""
    runs, failed = {}, []
    for name in variants:
        try:
            runs[name] = variants[name]
        except CompileError as exc:
            warn(f"asp: temporal blocking of {type(kernel).__name__} failed to compile "
                 f"(a bug; please report it), plain sweeps are used: {exc}",
                 SpecializationWarning)
            return f"the blocked code failed to compile: {exc}"
        except AspError as exc:
            variants.context.record("variant-skipped", variant=name, reason=str(exc))
            failed.append(str(exc))
    if not runs:
        return "no blocked variant could be built: " + "; ".join(failed)
    program = variants.variant(next(iter(runs))).program
    params = {name: dict(variants.variant(name).params) for name in runs}
    key = cache_key(specializer="stencil", platform=program.platform, tuning=repr(variants.key),
                    program=render_program(program), variants=params, threads=default_threads())
    return Blocked(variants, runs, params, key)


def _declined(kernel: Any, key: Any, reason: str) -> SpecializationContext:
    """A context saying why the blocked iteration does not apply, for ``asp explain``."""
    d = kernel.kernel
    ctx = SpecializationContext("stencil", d.func, (), {}, d.instance, d.options, key, d.name)
    ctx.record("phase", phase=PLATFORM_SELECTION, component=None,
               reason=f"cannot lower for {PLATFORM!r}: {reason}")
    return ctx


def built_iterator(kernel: Any, key: Any) -> Union[Blocked, str, None]:
    """What :func:`get_iterator` gave for ``kernel`` and the grid signature ``key`` in this
    process, or None where it has not run (nothing is built)."""
    return object_memo(kernel, _ITERATORS, dict).get(key)


def get_iterator(kernel: Any, grids: tuple) -> Union[Blocked, str]:
    """The (cached) blocked variants of ``kernel`` for ``grids``, or why there are none."""
    key = stencil_signature(tuple(grids), {}, kernel)
    per_kernel: dict[Any, Union[Blocked, str]] = object_memo(kernel, _ITERATORS, dict)
    hit = per_kernel.get(key)
    if hit is None:
        with _building(kernel):
            hit = per_kernel.get(key)
            if hit is None:
                hit = per_kernel[key] = _get_built(kernel, grids, key)
    return hit


def _building(kernel: Any) -> threading.Lock:
    """The lock held while ``kernel``'s blocked variants are built: one lock for all the kernels
    that cannot be weakly referenced or hashed (a ``dataclass(eq=True)``), whose variants are
    kept on the object too (a fresh lock each time let two threads build them at once)."""
    try:
        return _BUILDING.setdefault(kernel, threading.Lock())
    except TypeError:
        return _UNKEYED[0]


def _lowered(kernel: Any, grids: tuple, key: Any) -> Union[Variants, str]:
    """Phases 1-4 of the blocked iteration of ``kernel`` for ``grids`` (kept until it is
    built), or why it cannot be lowered."""
    lowered: dict[Any, Union[Variants, str]] = object_memo(kernel, _LOWERED, dict)
    hit = lowered.get(key)
    if hit is None:
        try:
            hit = kernel.kernel.variants_for(PLATFORM, *grids)
        except AspError as exc:
            hit = str(exc)
        lowered[key] = hit
    return hit


def build_is_cached(kernel: Any, grids: tuple) -> bool:
    """Whether building the blocked variants of ``kernel`` for ``grids`` costs no compile: they
    are built, cannot be, or the code cache holds their library. Phases 1-4 run for this,
    once per grid signature (the answer is kept); their variants are kept for the build that
    follows where it costs no compile, and dropped where not (their IR, a C program per
    variant, lived as long as the kernel)."""
    key = stencil_signature(tuple(grids), {}, kernel)
    if built_iterator(kernel, key) is not None:
        return True
    answers: dict[Any, bool] = object_memo(kernel, _CACHED, dict)
    if key not in answers:
        variants = _lowered(kernel, grids, key)
        try:
            answer = isinstance(variants, str) or \
                library_cached(variants.variant(next(iter(variants))).program)
        except AspError:   # its build will say why
            answer = True
        if not answer:
            lowered: dict[Any, Any] = object_memo(kernel, _LOWERED, dict)
            lowered.pop(key, None)
        answers[key] = answer
    return answers[key]


def _get_built(kernel: Any, grids: tuple, key: Any) -> Union[Blocked, str]:
    """The blocked variants of ``kernel`` for ``grids`` built now, or why there are none."""
    variants = _lowered(kernel, grids, key)
    object_memo(kernel, _LOWERED, dict).pop(key, None)   # the Blocked holds them now
    if isinstance(variants, str):
        hit: Union[Blocked, str] = variants
        ctx = _declined(kernel, key, variants)
    else:
        hit = _build(kernel, variants)
        ctx = variants.context
    # ``asp explain`` shows the blocked iteration like any specialisation (its tuning too)
    recording.add_context(ctx, f"{kernel.kernel.name} (iterate, temporal blocking)",
                          hit if isinstance(hit, str) else None)
    return hit


#: the build lock of kernels :data:`_BUILDING` cannot key
_UNKEYED = [threading.Lock()]


def _after_fork() -> None:
    """A forked child has none of the parent's threads: a build lock one of them held would
    never be released (the child builds what the parent had not finished)."""
    _BUILDING.clear()
    _UNKEYED[0] = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

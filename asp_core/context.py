"""The specialisation context: what every phase of one specialisation can see and report."""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable

from asp_core.decisions import Decision
from asp_core.errors import Unspecializable
from asp_core.pyast import KernelSource, kernel_source, location

if TYPE_CHECKING:
    from asp_core.build import CompiledLibrary
    from asp_core.hardware import HardwareInfo
    from asp_core.passes import PassReport

__all__ = ["SpecializationContext", "Compiled"]


@dataclass(frozen=True)
class Compiled:
    """One :meth:`SpecializationContext.compile` (``ctx.compiles``): the library
    (``library.cached``: whether it came from the code cache) and what it was built for."""

    name: str
    variant: str
    library: CompiledLibrary

    @property
    def cached(self) -> bool:
        return self.library.cached


@dataclass
class SpecializationContext:
    """Built by the core for each new specialisation key and passed to every component.

    ``events`` is the human-readable log ``asp explain`` prints; code that acts on what
    happened reads the typed records instead: ``decisions`` (one per phase, the tuner's
    winner, plugins' own), ``passes`` (:class:`~asp_core.passes.PassReport`) and
    ``compiles`` (:class:`Compiled`)."""

    specializer: str
    func: Callable[..., Any] | None
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    instance: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    key: Hashable = None
    kernel_name: str = ""
    variant: str = ""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    passes: list[PassReport] = field(default_factory=list)
    compiles: list[Compiled] = field(default_factory=list)
    #: what the variants built in this context share (:meth:`shared`)
    built_state: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- the kernel's Python source (lazy: not every specializer has a Python function) -------
    @property
    def _source(self) -> KernelSource:
        """Parsed once per context.  Not ``functools.cached_property``: on Python 3.11 that
        holds one lock for every instance while it computes, so a child forked while another
        thread parsed a kernel waited for that lock forever at its first specialisation."""
        found: KernelSource | None = self.__dict__.get("_kernel_source")
        if found is None:
            if self.func is None:
                raise Unspecializable("specializer without a Python kernel function")
            found = self.__dict__["_kernel_source"] = kernel_source(self.func)
        return found

    @property
    def source(self) -> str:
        return self._source.source

    @property
    def tree(self) -> ast.Module:
        return self._source.tree

    @property
    def filename(self) -> str:
        return self._source.filename

    @property
    def firstlineno(self) -> int:
        return self._source.firstlineno

    # -- reporting ----------------------------------------------------------------------------
    def unsupported(self, node: ast.AST | None, construct: str, reason: str = ""
                    ) -> Unspecializable:
        """An :class:`Unspecializable` pointing at ``node`` in the user's file (raise it)."""
        line, col = (self.firstlineno, 0) if node is None else location(self._source, node)
        return Unspecializable(construct, filename=self.filename, lineno=line, col=col,
                               reason=reason)

    def record(self, event: str, **data: Any) -> None:
        """Note something for ``asp explain`` (cheap; kept with the context)."""
        data.setdefault("time", time.time())
        self.events.append((event, data))

    def decide(self, what: str, choice: str, *, reason: str = "", source: str = "",
               candidates: tuple[str, ...] | list[str] = (), **params: Any) -> Decision:
        """Record a typed :class:`~asp_core.decisions.Decision` (and an ``asp explain`` event)."""
        d = Decision(what, choice, reason, source, tuple(candidates), params)
        self.decisions.append(d)
        self.record("decision", what=what, choice=choice, reason=reason, source=source,
                    params=dict(params))
        return d

    def decision(self, what: str, **params: Any) -> Decision | None:
        """The latest decision of kind ``what`` whose params include ``params``, or None."""
        return next((d for d in reversed(self.decisions) if d.what == what
                     and all(d.params.get(k) == v for k, v in params.items())), None)

    def tuning_events(self, what: str, **params: Any) -> Callable[..., None]:
        """An :class:`~asp_core.autotune.Autotuner` ``on_event``: records every event and,
        when the tuner fixes its winner, the decision ``what`` (with ``params``)."""

        def on_event(event: str, **data: Any) -> None:
            self.record(event, **data)
            if event == "autotune" and data.get("winner"):
                self.decide(what, str(data["winner"]), source=str(data.get("source", "")),
                            candidates=[str(t[0]) for t in data.get("timings") or ()
                                        if isinstance(t, (tuple, list)) and t], **params)

        return on_event

    # -- services -----------------------------------------------------------------------------
    def drop_arguments(self) -> None:
        """Forget the call's arguments, once phases 1-4 and the observers of the finished
        specialisation have read them: the context lives as long as its kernel (the
        dispatcher's ``last_context``, the variants a tuning or a runner keeps), and kept the
        first call's arrays alive with it (grids, a training set, a basis the caller deleted)."""
        self.args, self.kwargs = (), {}

    def shared(self, name: str, factory: Callable[[], Any]) -> Any:
        """The ``name`` state the variants built in this context share (a pool of device
        buffers), made by ``factory`` for the first build asking. Run-time state belongs here,
        not in a platform program's ``meta``: the objects of a class with ``shared_lowering``
        share their phases 1-4, and so what those put in ``meta``."""
        if name not in self.built_state:
            self.built_state[name] = factory()
        return self.built_state[name]

    def compile(self, source: str, *, lang: str = "c", openmp: bool = True,
                flags: tuple[str, ...] = (), name: str = "kernel",
                specialised_on: dict[str, Any] | None = None,
                variant: str | None = None) -> CompiledLibrary:
        """Compile (or fetch from the cache) and load ``source``; recorded for ``asp explain``
        under ``variant`` (default: the variant being built)."""
        from asp_core.build import compile_library

        lib = compile_library(source, lang=lang, openmp=openmp, flags=flags, name=name,
                              specialised_on=specialised_on)
        variant = variant or self.variant
        self.compiles.append(Compiled(name, variant, lib))
        self.record("compile", name=name, variant=variant, lang=lang, command=lib.command,
                    seconds=lib.seconds, cached=lib.cached, path=str(lib.path), source=source)
        return lib

    def compile_many(self, sources: list[dict[str, Any]]) -> list[CompiledLibrary]:
        """Compile independent sources (dicts of :meth:`compile`'s arguments) in parallel on the
        :mod:`asp_core.background` pool, so sibling variants cost one compile per core; results
        in input order, the first error raises."""
        from asp_core import background

        return [f.result() for f in [background.submit(self, **kw) for kw in sources]]

    @property
    def hardware(self) -> HardwareInfo:
        from asp_core.hardware import query

        return query()

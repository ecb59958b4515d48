"""The specialisation context: what every phase of one specialisation can see and report."""

from __future__ import annotations

import ast
import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable, TypeVar

from asp_core.errors import Unspecializable
from asp_core.pyast import KernelSource, kernel_source, location

if TYPE_CHECKING:
    from asp_core.build import CompiledLibrary
    from asp_core.hardware import HardwareInfo

__all__ = ["SpecializationContext"]

_D = TypeVar("_D")


@dataclass
class SpecializationContext:
    """Built by the core for each new specialisation key and passed to every component."""

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
    #: typed decision records (dataclass instances), see :meth:`decide`
    decisions: list[Any] = field(default_factory=list)

    # -- the kernel's Python source (lazy: not every specializer has a Python function) -------
    @functools.cached_property
    def _source(self) -> KernelSource:
        if self.func is None:
            raise Unspecializable("specializer without a Python kernel function")
        return kernel_source(self.func)

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
        if node is None:
            return Unspecializable(construct, filename=self.filename, lineno=self.firstlineno,
                                   reason=reason)
        line, col = location(self._source, node)
        return Unspecializable(construct, filename=self.filename, lineno=line, col=col,
                               reason=reason)

    def record(self, event: str, **data: Any) -> None:
        """Note something for ``asp explain`` (cheap; kept with the context)."""
        data.setdefault("time", time.time())
        self.events.append((event, data))

    def decide(self, decision: _D) -> _D:
        """Keep a typed decision record (a dataclass instance: the tuning winner, a storage
        fallback, ...).  Later phases and callers read it with :meth:`decided`; the untyped
        :attr:`events` are for ``asp explain`` only, not to be parsed for decisions."""
        self.decisions.append(decision)
        return decision

    def decided(self, kind: type[_D]) -> _D | None:
        """The latest decision record of type ``kind``, or None when none was taken."""
        for decision in reversed(self.decisions):
            if isinstance(decision, kind):
                return decision
        return None

    # -- services -----------------------------------------------------------------------------
    def compile(self, source: str, *, lang: str = "c", openmp: bool = True,
                flags: tuple[str, ...] = (), name: str = "kernel",
                specialised_on: dict[str, Any] | None = None,
                variant: str | None = None) -> CompiledLibrary:
        """Compile (or fetch from the cache) and load ``source``; recorded for ``asp explain``
        under ``variant`` (default: the variant being built)."""
        from asp_core.build import compile_library

        lib = compile_library(source, lang=lang, openmp=openmp, flags=flags, name=name,
                              specialised_on=specialised_on)
        self.record("compile", name=name, variant=variant or self.variant, lang=lang,
                    command=lib.command, seconds=lib.seconds, cached=lib.cached,
                    path=str(lib.path), source=source)
        return lib

    def compile_many(self, sources: list[dict[str, Any]]) -> list[CompiledLibrary]:
        """Compile several independent sources at once (each dict holds :meth:`compile`'s
        arguments, ``source`` included, and ``variant`` to label it in ``asp explain``) on the
        :mod:`asp_core.background` pool; results keep the input order, the first error raises.

        Sibling variants are independent compiler runs, so a cold specialisation with several
        variants costs about one compile per core instead of one per variant.
        """
        from asp_core import background

        return [f.result() for f in [background.submit(self, **kw) for kw in sources]]

    @property
    def hardware(self) -> HardwareInfo:
        from asp_core.hardware import query

        return query()

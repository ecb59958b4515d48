"""Variants every MPI rank agrees on, tuned collectively: how distributed runners (stencil
sweeps, data-parallel EM, distributed matrix powers) reach compiled code.

Each rank runs phases 1-4 of the kernel's :class:`~asp_core.Dispatcher` for its own block; the
ranks keep the variant names all of them proposed, in the first proposing rank's order, and
one :class:`~asp_core.autotune.Autotuner` over ``comm`` picks the variant every rank runs (the
slowest rank's time counts). A rank that cannot specialise makes every rank fall back
together, as one process would: ``ASP_MODE=strict`` raises on every rank, otherwise each rank
warns once, naming every failing rank. A rank with nothing to compute (an empty block) takes
part in every collective step without narrowing the others' choice. The context is recorded
like a call's, so ``asp explain`` shows distributed runs and their tuning decision.

Calling the object (:meth:`AgreedVariants.__call__`) is one collectively tuned call: runners
call it on every rank and get the agreed variant's result.
"""

from __future__ import annotations

import builtins
import math
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from asp_core import config, recording
from asp_core.autotune import Autotuner
from asp_core.cache import cache_key
from asp_core.decisions import VARIANT
from asp_core.errors import AspError, SpecializationWarning, warn

if TYPE_CHECKING:
    from asp_core.dispatch import Dispatcher
    from asp_core.pipeline import Variants

__all__ = ["AgreedVariants"]


def _nothing(*args: Any) -> None:
    """What a rank with nothing to compute runs once the ranks have decided."""


class AgreedVariants:
    """The variants of ``dispatcher`` for this rank's ``args`` that every rank of ``comm`` has,
    and their collective tuner. Constructed by all ranks together. ``args=None`` says this
    rank has no call of its own (e.g. an empty block): it proposes nothing, runs nothing and
    only takes part in the agreement. ``tuning`` is what the stored winner is kept under
    besides the variant names, the specialisation key and the rank count (e.g. a size class);
    ``what`` names the run in the fallback warning. ``per_rank=True`` (for runners whose ranks
    need not run the same code, each computing its own block) makes ranks that proposed
    different variants (blocks of very different sizes, say) each run the dispatcher itself,
    tuned in its own process, instead of only the variants all of them share, which may be
    none or the slowest (:attr:`per_rank` then says so).

    :attr:`specialised` is False (and :attr:`reason` says why) when the ranks fall back. Runners
    call the object with each call's arguments (:meth:`__call__`, collective while tuning);
    :attr:`winner` names the variant every rank runs once decided. For runners that time calls
    themselves (e.g. inside their own reduction), ``self[name]`` builds a variant and
    :attr:`tuner` is the collective tuner.
    """

    def __init__(self, dispatcher: Dispatcher, args: tuple | None, comm: Any, *,
                 tuning: Hashable = None, what: str = "", per_rank: bool = False) -> None:
        self.comm = comm
        self.tuner: Autotuner | None = None
        self.reason: str | None = None
        self.per_rank = False
        self._variants: Variants | None = None
        self._idle = args is None
        self._fallback: Callable[..., Any] = dispatcher.fallback or dispatcher
        self._bound: Callable[..., Any] | None = None
        self._built: set[str] = set()   # the variants every rank has built
        # ASP_MODE=python on some ranks only is their reason to fall back, agreed like any:
        # returning before the agreement left the other ranks waiting in it for good
        python_mode = config.mode() == "python"
        error: str | None = "ASP_MODE=python" if python_mode else None
        names: list[str] | None = [] if python_mode else None
        bad_input: str | None = None
        try:  # any failure, on any rank, is every rank's: no rank may wait in a collective
            if args is not None and not python_mode:
                self._variants = dispatcher.variants(*args)
                names = list(self._variants)
        except AspError as exc:  # cannot be specialised: every rank falls back (below)
            error, names = f"{type(exc).__name__}: {exc}", []
        except Exception as exc:  # noqa: BLE001 - bad input: raised on every rank (below)
            error, names, bad_input = f"{type(exc).__name__}: {exc}", [], type(exc).__name__
        # ASP_MODE=strict on some ranks only: every rank raises (those ranks raising while the
        # others ran Python ended the job, or hung it where the error was caught)
        gathered = comm.allgather((error, names, bad_input, config.mode() == "strict"))
        self._strict = any(s for _, _, _, s in gathered)
        gathered = [g[:3] for g in gathered]
        errors = [e for e, _, _ in gathered]
        proposed = [p for _, p, _ in gathered]
        kinds = [k for _, _, k in gathered if k]
        if kinds:   # as one process raises it, not a fallback that would run on the bad input
            kind = getattr(builtins, kinds[0], None)
            ranks: dict[str, list[str]] = {}
            for r, (e, _, k) in enumerate(gathered):
                if k:
                    ranks.setdefault(e, []).append(str(r))
            raise (kind if isinstance(kind, type) and issubclass(kind, Exception)
                   else ValueError)("; ".join(f"rank{'s' * (len(rs) > 1)} {', '.join(rs)}: {e}"
                                              for e, rs in ranks.items()))
        offers = [(rank, p) for rank, p in enumerate(proposed) if p is not None]
        common = [n for n in offers[0][1] if all(n in p for _, p in offers)] if offers else []
        if per_rank and not any(errors) and any(set(p) != set(common) for _, p in offers):
            self.per_rank = True   # no collective from here on: each rank's own dispatcher
            self._variants = None
            self._bound = _nothing if self._idle else dispatcher
            return
        if any(errors) or not common:
            self._variants = None
            self.reason = "; ".join(f"rank {r}: {e}" for r, e in enumerate(errors) if e) \
                or "the ranks proposed no variant in common"
            self._unspecialised(what or f"kernel {dispatcher.name!r}", python_mode)
            return
        from asp_core.plugins import get_registry

        key = self._variants.tuning_key if self._variants is not None else None
        if proposed[0] is None:  # rank 0 keeps the perf database: give it a proposer's key
            key = comm.bcast(key, root=offers[0][0])
        ctx = self._variants.context if self._variants is not None else None
        spec = get_registry().specializers[dispatcher.specializer]
        size = comm.Get_size()
        self.tuner = Autotuner(cache_key(specializer=spec.name, distributed=size,
                                         tuning=repr((key, tuning)), variants=sorted(common)),
                               common, comm=comm, label=f"{spec.name}:{dispatcher.name} on "
                                                        f"{size} ranks",
                               on_event=ctx.tuning_events(VARIANT) if ctx is not None else None,
                               repeats=spec.tuning_repeats)
        if ctx is not None:
            recording.add_context(ctx, f"{dispatcher.name}[{size} ranks]")
        self._what = what or f"kernel {dispatcher.name!r}"

    def _unspecialised(self, what: str, quiet: bool = False) -> None:
        """Every rank falls back (``self.reason`` says why): raised under strict mode on any
        rank, else one warning per rank (``quiet``: none, what it asked for)."""
        if self._strict:
            raise AspError(f"{what} cannot be specialised on {self.comm.Get_size()} ranks: "
                           f"{self.reason}")
        if not quiet:
            warn(f"asp: {what} runs unspecialised on every rank: {self.reason}",
                 SpecializationWarning)

    @property
    def specialised(self) -> bool:
        """Whether every rank runs compiled variants (else they all fall back)."""
        return self.tuner is not None or self.per_rank

    @property
    def winner(self) -> str | None:
        """The variant every rank runs once tuning has decided; None before, or unspecialised."""
        return self.tuner.winner if self.tuner is not None else None

    def __getitem__(self, name: str) -> Callable[..., Any]:
        """Variant ``name``, built on first use (may raise: build it on every rank, then agree
        before using it, as :meth:`~asp_core.autotune.Autotuner.exclude` needs)."""
        if self._variants is None:
            raise KeyError(f"no variants: {self.reason or 'this rank has no call of its own'}")
        return self._variants[name]

    def __call__(self, *args: Any) -> Any:
        """Collective while tuning: one call with this rank's ``args`` (those of its
        construction, or of the same specialisation), returning the variant's result.

        While the ranks tune, every rank runs the next variant to time: each builds it, the
        ranks agree whether any of them failed to (then every rank drops it, and tries the
        next), and the call's time is reported, the slowest rank's counting. A variant whose
        call raises on any rank is dropped on every rank (the other ranks are not left
        waiting) and the error reaches that rank's caller. Once decided every rank binds the
        winner (rank 0's stored winner, if any, from the start) and later calls go straight
        to it, with no communication. When the ranks fall back each runs the dispatcher's
        fallback; a rank constructed with ``args=None`` runs nothing and returns None."""
        bound = self._bound
        if bound is not None:
            return bound(*args)
        tuner = self.tuner
        if tuner is None:
            return self._bind(None)(*args)
        while not tuner.done:
            name = tuner.next()
            if tuner.done:
                break
            fn = self.agreed_build(name)
            if fn is not None:
                return self._timed(name, fn, args)
        return self._bind_agreed(tuner.winner)(*args)

    def agreed_build(self, name: str) -> Callable[..., Any] | None:
        """Collective: variant ``name`` built on every rank, or None on every rank where it
        failed to build on any (then dropped from the tuning while it runs), for runners that
        call the variants themselves."""
        from asp_core.mpi import import_mpi

        fn, error = self._build(name)
        if self.comm.allreduce(bool(error), op=import_mpi().MAX):
            if self.tuner is not None and not self.tuner.done:
                self.tuner.exclude(name, f"failed to build on a rank: {error or 'another rank'}")
            return None
        self._built.add(name)
        return fn

    def _timed(self, name: str, fn: Callable[..., Any], args: tuple) -> Any:
        """One timed call of variant ``name`` on every rank (see :meth:`__call__`)."""
        from asp_core.mpi import import_mpi

        tuner = self.tuner
        assert tuner is not None
        failure: Exception | None = None
        start = time.perf_counter()
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - agreed on below, then raised on this rank
            result, failure = None, exc
        seconds = time.perf_counter() - start if failure is None else math.inf
        seconds = self.comm.allreduce(seconds, op=import_mpi().MAX)  # the slowest rank's
        if math.isinf(seconds):
            tuner.exclude(name, "raised on a rank")
        else:
            tuner.report(name, seconds, agreed=True)
        if tuner.done:
            self._bind_agreed(tuner.winner)
        if failure is not None:
            raise failure
        return result

    def _build(self, name: str) -> tuple[Callable[..., Any], str]:
        """Variant ``name`` on this rank and why it failed to build ("" when it did not)."""
        if self._idle:
            return _nothing, ""
        try:
            return self[name], ""
        except Exception as exc:  # noqa: BLE001 - agreed on by every rank in __call__
            return _nothing, f"{type(exc).__name__}: {exc}"

    def _bind_agreed(self, name: str | None) -> Callable[..., Any]:
        """Collective: :meth:`_bind` of ``name`` on every rank, or of the fallback on every rank
        where it fails to build on any (the last candidate left when the others failed, or a
        stored winner, under a compile timeout: every rank raised, where one process falls
        back, or the ranks that could build it waited for the others in its first call)."""
        from asp_core.mpi import import_mpi

        if name is None or name in self._built:   # built on every rank already
            return self._bind(name)
        error = self._build(name)[1]
        if self.comm.allreduce(bool(error), op=import_mpi().MAX):
            self.tuner, self.reason = None, f"variant {name} failed to build on a rank: " + (
                error or "another rank")
            self._unspecialised(self._what)
            name = None
        return self._bind(name)

    def _bind(self, name: str | None) -> Callable[..., Any]:
        """What this rank's later calls run: variant ``name``, or the fallback for None."""
        if self._idle:
            self._bound = _nothing
        else:
            self._bound = self._fallback if name is None else self[name]
        return self._bound

"""Variants every MPI rank agrees on, tuned collectively: how distributed runners (stencil
sweeps, data-parallel EM) reach compiled code.

Each rank runs phases 1-4 of the kernel's :class:`~asp_core.Dispatcher` for its own block; the
ranks keep the variant names all of them proposed, in rank 0's order, and one
:class:`~asp_core.autotune.Autotuner` over ``comm`` picks the variant every rank runs (the
slowest rank's time counts). A rank that cannot specialise makes every rank fall back
together, as one process would: ``ASP_MODE=strict`` raises on every rank, otherwise each rank
warns once, naming every failing rank. The context is recorded like a call's, so
``asp explain`` shows distributed runs and their tuning decision.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from asp_core import config, recording
from asp_core.autotune import Autotuner
from asp_core.cache import cache_key
from asp_core.decisions import VARIANT
from asp_core.errors import AspError, SpecializationWarning

if TYPE_CHECKING:
    from asp_core.dispatch import Dispatcher
    from asp_core.pipeline import Variants

__all__ = ["AgreedVariants"]


class AgreedVariants:
    """The variants of ``dispatcher`` for this rank's ``args`` that every rank of ``comm`` has,
    and their collective tuner. Constructed by all ranks together. ``tuning`` is what the stored
    winner is kept under besides the variant names and the rank count (e.g. a size class);
    ``what`` names the run in the fallback warning.

    :attr:`specialised` is False (and :attr:`reason` says why) when the ranks fall back; else
    the caller runs ``self[name]`` for ``name = self.tuner.next()`` and reports its time until
    ``self.tuner.done``, then :attr:`winner`.
    """

    def __init__(self, dispatcher: Dispatcher, args: tuple, comm: Any, *,
                 tuning: Hashable = None, what: str = "") -> None:
        self.comm = comm
        self.tuner: Autotuner | None = None
        self.reason: str | None = None
        self._variants: Variants | None = None
        if config.mode() == "python":
            self.reason = "ASP_MODE=python"
            return
        error, names = None, []
        try:  # any failure, on any rank, is every rank's: no rank may wait in a collective
            variants = dispatcher.variants(*args)
            names = list(variants)
        except Exception as exc:  # noqa: BLE001 - reported below, on every rank
            error = f"{type(exc).__name__}: {exc}"
        errors = comm.allgather(error)
        proposed = comm.allgather(names)
        common = [n for n in proposed[0] if all(n in p for p in proposed)]
        if any(errors) or not common:
            self.reason = "; ".join(f"rank {r}: {e}" for r, e in enumerate(errors) if e) \
                or "the ranks proposed no variant in common"
            what = what or f"kernel {dispatcher.name!r}"
            if config.mode() == "strict":
                raise AspError(f"{what} cannot be specialised on {comm.Get_size()} ranks: "
                               f"{self.reason}")
            warnings.warn(f"asp: {what} runs unspecialised on every rank: {self.reason}",
                          SpecializationWarning, stacklevel=3)
            return
        from asp_core.plugins import get_registry

        self._variants = variants
        ctx = variants.context
        spec = get_registry().specializers[dispatcher.specializer]
        key = cache_key(specializer=spec.name, distributed=comm.Get_size(),
                        tuning=repr((variants.key, tuning)), variants=sorted(common))
        self.tuner = Autotuner(key, common, comm=comm, on_event=ctx.tuning_events(VARIANT),
                               label=f"{spec.name}:{ctx.kernel_name} on {comm.Get_size()} ranks",
                               repeats=spec.tuning_repeats)
        recording.add_context(ctx, f"{dispatcher.name}[{comm.Get_size()} ranks]")

    @property
    def specialised(self) -> bool:
        """Whether every rank runs compiled variants (else they all fall back)."""
        return self.tuner is not None

    @property
    def winner(self) -> str | None:
        """The variant every rank runs once tuning has decided; None before, or unspecialised."""
        return self.tuner.winner if self.tuner is not None else None

    def __getitem__(self, name: str) -> Callable[..., Any]:
        """Variant ``name``, built on first use (may raise: build it on every rank, then agree
        before using it, as :meth:`~asp_core.autotune.Autotuner.exclude` needs)."""
        if self._variants is None:
            raise KeyError(f"no variants: {self.reason}")
        return self._variants[name]

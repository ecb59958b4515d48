"""The specialised EM engine: the two GMM kernels behind the core's Dispatcher.

``em_step`` and ``log_prob`` have the signatures of :mod:`asp_gmm.reference`; the first call
with a new (M, D, covariance type, dtype) runs the pipeline, and the first EM iterations of a
new problem size each run a different variant until the fastest is known.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from asp_core import Dispatcher
from asp_gmm import reference
from asp_gmm.reference import EMStep

__all__ = ["GMMKernel", "dispatcher", "em_step", "log_prob", "reset", "tuning", "winner"]


@dataclass(frozen=True)
class GMMKernel:
    """The dispatcher's ``instance``: which of the two computations this is."""

    op: str


_LOCK = threading.Lock()
_DISPATCHERS: dict[tuple[str, tuple], Dispatcher] = {}


def dispatcher(op: str, options: dict[str, Any] | None = None) -> Dispatcher:
    """The shared dispatcher of ``op`` for these options (one per process and options)."""
    key = (op, tuple(sorted((options or {}).items())))
    with _LOCK:
        d = _DISPATCHERS.get(key)
        if d is None:
            func = reference.em_step if op == "em_step" else reference.log_prob
            d = _DISPATCHERS[key] = Dispatcher("gmm", func, fallback=func,
                                               instance=GMMKernel(op), options=options,
                                               name=f"asp_gmm.{op}")
        return d


def reset() -> None:
    """Forget every specialisation in this process (the code cache and perf database stay);
    the next call runs the pipeline again, as a new process would."""
    with _LOCK:
        _DISPATCHERS.clear()


def tuning(op: str = "em_step", options: dict[str, Any] | None = None) -> bool:
    """Whether some specialisation of ``op`` is still timing its variants."""
    from asp_core.pipeline import TuningCallable

    table = dispatcher(op, options).specializations
    return any(isinstance(fn, TuningCallable) and not fn.tuner.done for fn in table.values())


def winner(op: str = "em_step", options: dict[str, Any] | None = None) -> str | None:
    """The variant chosen for the latest specialisation of ``op`` (None while tuning)."""
    ctx = dispatcher(op, options).last_context
    events = [data for name, data in (ctx.events if ctx else []) if name == "autotune"]
    return events[-1].get("winner") if events else None


def em_step(X: np.ndarray, weights: np.ndarray, means: np.ndarray,
            precisions_cholesky: np.ndarray, covariance_type: str, reg_covar: float,
            options: dict[str, Any] | None = None) -> EMStep:
    """One EM iteration (see :func:`asp_gmm.reference.em_step`), specialised."""
    return dispatcher("em_step", options)(X, weights, means, precisions_cholesky,
                                          covariance_type, reg_covar)


def log_prob(X: np.ndarray, means: np.ndarray, precisions_cholesky: np.ndarray,
             covariance_type: str, options: dict[str, Any] | None = None) -> np.ndarray:
    """Per-component log-densities (see :func:`asp_gmm.reference.log_prob`), specialised."""
    return dispatcher("log_prob", options)(X, means, precisions_cholesky, covariance_type)

"""``StencilKernel.iterate`` beyond plain sweeps: temporal blocking on the CPU, or on the GPU.

``iterate`` runs its first sweep through the kernel's dispatcher as always (that validates the
grids, specialises, picks the platform, or falls back to Python with the core's warning), then
asks :func:`accelerated_iterate` whether the remaining sweeps can run faster:

* the dispatcher bound CUDA code (``fn.iterate`` exists): all sweeps run on the device with one
  upload and one download;
* otherwise, if the user did not choose a platform other than OpenMP and
  :func:`~asp_stencil.temporal.runner.wants_blocking` says the grids exceed the last-level cache,
  the temporally blocked C variant runs them (exactly equal to plain sweeps).

It returns ``None`` when neither applies, and ``iterate`` goes on with plain sweeps.
"""

from __future__ import annotations

import warnings
from typing import Any

from asp_core import config
from asp_core.errors import CompileError, SpecializationWarning

from ..signature import stencil_signature
from .runner import blocked_iterate, wants_blocking

__all__ = ["accelerated_iterate"]


def _result(grids: tuple, steps: int) -> Any:
    """The grid holding the last result after ``steps`` sweeps with Jacobi swaps."""
    gs = list(grids)
    if steps % 2:
        gs[-1], gs[-2] = gs[-2], gs[-1]
    return gs[-2] if steps else gs[-1]


def _chosen_platform(dispatcher: Any) -> str | None:
    """The platform the dispatcher's latest specialisation selected (``None`` if unknown)."""
    ctx = getattr(dispatcher, "last_context", None)
    for event, data in reversed(getattr(ctx, "events", []) or []):
        if event == "phase" and data.get("phase") == "platform_selection":
            return data.get("component")
    return None


def accelerated_iterate(kernel: Any, dispatcher: Any, grids: tuple, steps: int) -> Any:
    """Run ``steps`` sweeps of ``kernel`` on ``grids`` faster than plain sweeps if possible.

    Returns the grid holding the last result, or ``None`` (nothing ran) when the caller should
    use plain sweeps.
    """
    if steps < 2 or config.mode() == "python":
        return None
    key = stencil_signature(tuple(grids), {}, kernel)
    fn = dispatcher.specializations.get(key)
    if fn is None or fn is getattr(dispatcher, "fallback", None):
        return None
    device_iterate = getattr(fn, "iterate", None)
    if callable(device_iterate):
        try:
            device_iterate(tuple(grids), steps)
        except TypeError:  # state and output not interchangeable: plain sweeps
            return None
        return _result(grids, steps)
    requested, _ = config.phase_choice("stencil", "platform_selection",
                                       getattr(dispatcher, "options", None))
    if requested not in (None, "openmp") or _chosen_platform(dispatcher) not in (None, "openmp"):
        return None  # the user or the selection chose another platform (e.g. CUDA, tuning)
    if not wants_blocking(kernel, grids, steps):
        return None
    try:
        result = blocked_iterate(kernel, tuple(grids), steps)
    except CompileError as exc:
        warnings.warn(f"asp: temporal blocking of {type(kernel).__name__} failed to compile "
                      f"(a bug; please report it), plain sweeps are used: {exc}",
                      SpecializationWarning, stacklevel=3)
        return None
    return None if isinstance(result, str) else result

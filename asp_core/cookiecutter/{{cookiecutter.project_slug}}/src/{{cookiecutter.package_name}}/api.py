"""The user-facing API: the :func:`elementwise` decorator and the pure-Python semantics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from asp_core import Dispatcher

from {{ cookiecutter.package_name }}.signature import check_arrays

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SPECIALIZER", "elementwise", "python_map"]

#: The name this specializer is registered under (``asp list``, ``ASP_BACKEND={{ cookiecutter.specializer_name }}:c``).
SPECIALIZER = "{{ cookiecutter.specializer_name }}"


def python_map(func: Callable[..., float]) -> Callable[..., np.ndarray]:
    """The reference semantics: ``func`` applied point by point (also the fallback)."""
    import numpy as np

    vectorized = np.vectorize(func, otypes=[np.float64])

    def run(*arrays: np.ndarray) -> np.ndarray:
        check_arrays(arrays)
        return vectorized(*arrays)

    run.__name__ = f"{getattr(func, '__name__', 'kernel')}_python"
    return run


def elementwise(func: Callable[..., float] | None = None, **options: Any) -> Any:
    """Decorator: specialise ``func`` (a function of scalars) into an element-wise map.

    ``options`` are per-kernel Asp settings, e.g. ``platform_selection="python"`` (run through
    ``numpy.vectorize``) or ``disable_passes=["constant-folding"]``; a ``backend`` is chosen
    among those serving the selected platform (``vectorize`` serves ``python`` only). The
    result is an :class:`asp_core.Dispatcher`; the original function stays available as
    ``.func``.
    """

    def wrap(f: Callable[..., float]) -> Dispatcher:
        return Dispatcher(SPECIALIZER, f, fallback=python_map(f), options=options,
                          name=getattr(f, "__qualname__", None))

    return wrap(func) if func is not None else wrap

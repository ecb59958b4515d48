"""Argument validation and the specialisation key.

Asp calls :func:`signature` on every call (it must be cheap) and specialises once per distinct
key. The generated C depends only on the number of arrays (their length is passed at run time),
so that is the key. Validation happens here and again in every bound callable, so bad input is a
clear ``TypeError``/``ValueError`` before any native code runs.

NumPy is imported inside the functions: ``asp list`` imports every plugin's registration module
(and so this one), and listing should not pay for NumPy.
"""

from __future__ import annotations

from typing import Any, Hashable

__all__ = ["check_arrays", "signature"]


def check_arrays(arrays: tuple) -> None:
    """Raise for anything the generated code cannot read safely."""
    import numpy as np

    if not arrays:
        raise TypeError("an element-wise kernel needs at least one array")
    shape = None
    for k, a in enumerate(arrays):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"argument {k} is {type(a).__name__}, expected a numpy array")
        if a.dtype != np.float64:
            raise TypeError(f"argument {k} has dtype {a.dtype}, expected float64 "
                            "(use a.astype(np.float64))")
        if not a.flags.c_contiguous:
            raise ValueError(f"argument {k} is not C-contiguous (use np.ascontiguousarray)")
        if shape is not None and a.shape != shape:
            raise ValueError(f"argument {k} has shape {a.shape}, expected {shape} like argument 0")
        shape = a.shape


def signature(args: tuple, kwargs: dict, instance: Any) -> Hashable:
    """The specialisation key of a call (after validating it)."""
    if kwargs:
        raise TypeError(f"element-wise kernels take arrays positionally, got {sorted(kwargs)}")
    check_arrays(args)
    return (len(args),)

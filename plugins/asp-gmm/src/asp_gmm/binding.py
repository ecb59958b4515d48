"""ctypes bindings of the generated entry points (the same plain C ABI for OpenMP and CUDA).

The callables take exactly the reference kernels' arguments, validate them again (shapes,
dtypes) before any native code runs, pack the parameters (:mod:`asp_gmm.packing`), call the
library and turn its statistics back into scikit-learn's parameters.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from asp_core import interrupt
from asp_gmm.lowering import KernelPlan
from asp_gmm.packing import finish_em_step, pack
from asp_gmm.reference import EMStep
from asp_gmm.signature import parse_call

__all__ = ["EMStepKernel", "LogProbKernel"]

_P = ctypes.c_void_p


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _x(X: np.ndarray, plan: KernelPlan) -> np.ndarray:
    want = np.float32 if plan.ctype == "float" else np.float64
    return np.ascontiguousarray(X, dtype=want)


class EMStepKernel:
    """``(X, weights, means, precisions_cholesky, covariance_type, reg_covar) -> EMStep``."""

    def __init__(self, cdll: ctypes.CDLL, plan: KernelPlan, materialise: bool, name: str,
                 library: Any = None) -> None:
        self.plan = plan
        self.materialise = materialise
        self.name = name
        self.library = library
        self._fn = cdll.asp_gmm_em_step
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [_P, ctypes.c_int64, _P, _P, _P, _P, _P, _P]
        self._local = threading.local()  # the N x MP work matrix, one per calling thread

    def __call__(self, X: np.ndarray, weights: np.ndarray, means: np.ndarray,
                 precisions_cholesky: np.ndarray, covariance_type: str, reg_covar: float
                 ) -> EMStep:
        call = parse_call("em_step", (X, weights, means, precisions_cholesky, covariance_type,
                                      reg_covar), {})
        lay = self.plan.layout
        if (call.n_components, call.n_features, call.covariance) != (lay.M, lay.D, lay.cov):
            raise ValueError("arguments do not match the specialised (M, D, covariance_type)")
        X = _x(X, self.plan)
        N = X.shape[0]
        if N == 0:
            raise ValueError("X has no samples")
        packed = pack(lay, weights, means, precisions_cholesky)
        shift = packed.shift if self.plan.center != "origin" else np.zeros_like(packed.shift)
        out = np.zeros(lay.n_stat)
        work = getattr(self._local, "work", None)
        if work is None or (self.materialise and work.size < N * lay.MP):
            work = self._local.work = np.empty(N * lay.MP if self.materialise else 1)
        args = (_ptr(X), N, _ptr(packed.pa), _ptr(packed.pb), _ptr(packed.pc), _ptr(shift),
                _ptr(out), _ptr(work))
        if interrupt.worth_it(N * lay.M * lay.D):  # a long call: Ctrl-C must reach the user
            rc = interrupt.call(self._fn, *args, keep=(X, packed, shift, out, work))
        else:
            rc = self._fn(*args)
        if rc != 0:
            raise MemoryError(f"gmm kernel {self.name}: out of memory (code {rc})")
        return finish_em_step(lay, out, shift, N, float(reg_covar), float(np.finfo(X.dtype).eps))


class LogProbKernel:
    """``(X, means, precisions_cholesky, covariance_type) -> (N, M) log-densities``."""

    def __init__(self, cdll: ctypes.CDLL, plan: KernelPlan, name: str, library: Any = None
                 ) -> None:
        self.plan = plan
        self.name = name
        self.library = library
        self._fn = cdll.asp_gmm_log_prob
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [_P, ctypes.c_int64, _P, _P, _P, _P]

    def __call__(self, X: np.ndarray, means: np.ndarray, precisions_cholesky: np.ndarray,
                 covariance_type: str) -> np.ndarray:
        call = parse_call("log_prob", (X, means, precisions_cholesky, covariance_type), {})
        lay = self.plan.layout
        if (call.n_components, call.n_features, call.covariance) != (lay.M, lay.D, lay.cov):
            raise ValueError("arguments do not match the specialised (M, D, covariance_type)")
        X = _x(X, self.plan)
        N = X.shape[0]
        packed = pack(lay, None, means, precisions_cholesky)
        out = np.empty((N, lay.M))
        if N == 0:
            return out
        rc = self._fn(_ptr(X), N, _ptr(packed.pa), _ptr(packed.pb), _ptr(packed.pc), _ptr(out))
        if rc != 0:
            raise MemoryError(f"gmm kernel {self.name}: out of memory (code {rc})")
        return out

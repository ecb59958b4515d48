"""ctypes bindings of the generated entry points (the same plain C ABI for OpenMP and CUDA).

The callables take exactly the reference kernels' arguments, validate them again (shapes,
dtypes) before any native code runs, pack the parameters (:mod:`asp_gmm.packing`), call the
library and turn its statistics back into scikit-learn's parameters. Every OpenMP unit has all
six entry points, so one library serves the k-means initialisation, the initial M-step, the EM
iterations and the E-step behind ``predict``.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from asp_core import interrupt
from asp_gmm.lowering import KernelPlan
from asp_gmm.packing import finish_em_step, pack, zero_shift
from asp_gmm.reference import (EMStep, KMeansAssignment, KMeansSeeding, cluster_sums,
                               kmeans_redecide)
from asp_gmm.signature import parse_call

__all__ = ["EMStepKernel", "EStepKernel", "KMeansAssignKernel", "KMeansSeedKernel",
           "LogProbKernel", "MStepKernel"]

_P = ctypes.c_void_p


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _x(X: np.ndarray, plan: KernelPlan) -> np.ndarray:
    want = np.float32 if plan.ctype == "float" else np.float64
    return np.ascontiguousarray(X, dtype=want)


def _check_specialised(call: Any, plan: KernelPlan) -> None:
    lay = plan.layout
    if (call.n_components, call.n_features, call.covariance) != (lay.M, lay.D, lay.cov):
        raise ValueError("arguments do not match the specialised (M, D, covariance_type)")


def _nullable(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


class _EntryPoint:
    """One exported function of a library: its ctypes signature and the error check."""

    symbol = ""
    n_pointers = 0  # pointer arguments after (X, N)

    def __init__(self, cdll: ctypes.CDLL, plan: KernelPlan, name: str, library: Any = None
                 ) -> None:
        self.plan = plan
        self.name = name
        self.library = library  # keeps the shared object loaded while this callable lives
        self._fn = getattr(cdll, self.symbol)
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [_P, ctypes.c_int64] + [_P] * self.n_pointers

    def _run(self, X: np.ndarray, *arrays: np.ndarray | None, statuses: tuple[int, ...] = ()
             ) -> int:
        """Call the kernel on ``X`` and ``arrays`` (``None``: a NULL pointer); a long call runs
        where Ctrl-C can interrupt the wait (:mod:`asp_core.interrupt`). Returns the kernel's
        status: 0, or one of ``statuses`` (codes it documents); any other is out of memory."""
        args = (_ptr(X), X.shape[0], *(_nullable(a) for a in arrays))
        lay = self.plan.layout
        rc = interrupt.run(self._fn, *args, keep=(X, arrays), work=X.shape[0] * lay.M * lay.D)
        if rc != 0 and rc not in statuses:
            raise MemoryError(f"gmm kernel {self.name}: out of memory (code {rc})")
        return int(rc)


class EMStepKernel(_EntryPoint):
    """``(X, weights, means, precisions_cholesky, covariance_type, reg_covar) -> EMStep``."""

    symbol = "asp_gmm_em_step"
    n_pointers = 6

    def __init__(self, cdll: ctypes.CDLL, plan: KernelPlan, materialise: bool, name: str,
                 library: Any = None) -> None:
        super().__init__(cdll, plan, name, library)
        self.materialise = materialise
        self._local = threading.local()  # the N x MP work matrix, one per calling thread

    def __call__(self, X: np.ndarray, weights: np.ndarray, means: np.ndarray,
                 precisions_cholesky: np.ndarray, covariance_type: str, reg_covar: float
                 ) -> EMStep:
        call = parse_call("em_step", (X, weights, means, precisions_cholesky, covariance_type,
                                      reg_covar), {})
        _check_specialised(call, self.plan)
        lay = self.plan.layout
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
        self._run(X, packed.pa, packed.pb, packed.pc, shift, out,
                  work)
        return finish_em_step(lay, out, shift, N, float(reg_covar), float(np.finfo(X.dtype).eps))


class EStepKernel(_EntryPoint):
    """``(X, weights, means, precisions_cholesky, covariance_type, output)``: the E-step
    reduced to labels, responsibilities, per-sample or mean log-likelihood in one pass."""

    symbol = "asp_gmm_e_step"
    n_pointers = 7

    def __call__(self, X: np.ndarray, weights: np.ndarray, means: np.ndarray,
                 precisions_cholesky: np.ndarray, covariance_type: str, output: str
                 ) -> np.ndarray | float:
        call = parse_call("e_step", (X, weights, means, precisions_cholesky, covariance_type,
                                     output), {})
        _check_specialised(call, self.plan)
        X = _x(X, self.plan)
        N, M = X.shape[0], self.plan.layout.M
        packed = pack(self.plan.layout, weights, means, precisions_cholesky)
        resp = np.empty((N, M)) if output == "proba" else None
        lse = np.empty(N) if output == "score_samples" else None
        labels = np.empty(N, dtype=np.int64) if output == "labels" else None
        total = np.zeros(1)
        if N:
            self._run(X, packed.pa, packed.pb, packed.pc, resp,
                      lse, labels, total)
        if output == "score":
            return float(total[0]) / N if N else float("nan")
        outputs: dict[str, Any] = {"proba": resp, "score_samples": lse, "labels": labels}
        return outputs[output]


class MStepKernel(_EntryPoint):
    """``(X, resp, n_components, covariance_type, reg_covar) -> EMStep``: the M-step from
    given responsibilities (dense, or hard labels), in two passes as scikit-learn computes
    it: the counts and means first, then the moments about those means."""

    symbol = "asp_gmm_m_step"
    n_pointers = 4

    def _pass(self, X: np.ndarray, resp: np.ndarray, shift: np.ndarray, reg_covar: float,
              eps: float) -> EMStep:
        lay = self.plan.layout
        out = np.zeros(lay.n_stat)
        dense, labels = (resp, None) if resp.ndim == 2 else (None, resp)
        self._run(X, dense, labels, shift, out)
        return finish_em_step(lay, out, shift, X.shape[0], reg_covar, eps,
                              weights_over=float(X.shape[0]))

    def __call__(self, X: np.ndarray, resp: np.ndarray, n_components: int,
                 covariance_type: str, reg_covar: float) -> EMStep:
        call = parse_call("m_step", (X, resp, n_components, covariance_type, reg_covar), {})
        _check_specialised(call, self.plan)
        lay = self.plan.layout
        if resp.ndim == 1 and resp.size and int(resp.max()) >= lay.M:
            raise ValueError(f"labels must be < n_components = {lay.M}")
        X = _x(X, self.plan)
        if X.shape[0] == 0:
            raise ValueError("X has no samples")
        eps = float(np.finfo(X.dtype).eps)
        first = self._pass(X, resp, zero_shift(lay), float(reg_covar), eps)
        shift = zero_shift(lay)
        if lay.cov == "full":
            shift[:, :lay.D] = first.means
        else:
            shift[:, :lay.M] = first.means.T
        return self._pass(X, resp, shift, float(reg_covar), eps)


class LogProbKernel(_EntryPoint):
    """``(X, means, precisions_cholesky, covariance_type) -> (N, M) log-densities``."""

    symbol = "asp_gmm_log_prob"
    n_pointers = 4

    def __call__(self, X: np.ndarray, means: np.ndarray, precisions_cholesky: np.ndarray,
                 covariance_type: str) -> np.ndarray:
        call = parse_call("log_prob", (X, means, precisions_cholesky, covariance_type), {})
        _check_specialised(call, self.plan)
        lay = self.plan.layout
        X = _x(X, self.plan)
        packed = pack(lay, None, means, precisions_cholesky)
        out = np.empty((X.shape[0], lay.M))
        if X.shape[0]:
            self._run(X, packed.pa, packed.pb, packed.pc, out)
        return out


#: ``kmeans_assign``'s status when some samples lie within rounding of two centres (KM_NEAR)
_KM_NEAR = 2


class KMeansAssignKernel(_EntryPoint):
    """``(X, centers, covariance_type, bounds, moved) -> KMeansAssignment``: one Lloyd pass
    of k-means (``bounds`` updated in place)."""

    symbol = "asp_gmm_kmeans_assign"
    n_pointers = 6

    def __call__(self, X: np.ndarray, centers: np.ndarray, covariance_type: str,
                 bounds: np.ndarray, moved: np.ndarray) -> KMeansAssignment:
        call = parse_call("kmeans_assign", (X, centers, covariance_type, bounds, moved), {})
        _check_specialised(call, self.plan)
        lay = self.plan.layout
        X = _x(X, self.plan)
        labels = np.empty(X.shape[0], dtype=np.int64)
        sums, counts = np.empty((lay.M, lay.D)), np.empty(lay.M)
        if X.shape[0] == 0:
            return KMeansAssignment(labels, np.zeros((lay.M, lay.D)), np.zeros(lay.M))
        status = self._run(X, np.ascontiguousarray(centers), np.ascontiguousarray(moved), labels,
                           sums, counts, bounds, statuses=(_KM_NEAR,))
        # a sample whose bounds do not separate its least distance from the next (the kernel
        # sets them 2 e apart, e its rounding bound) is labelled as the NumPy pass labels it;
        # the kernel says whether there is one (looking costs 2 ms a pass at N = 1M)
        if status == _KM_NEAR:
            near = np.flatnonzero(bounds[:, 1] <= bounds[:, 0])
            if kmeans_redecide(X, centers, labels, near):
                return KMeansAssignment(labels, *cluster_sums(X, labels, lay.M))
        return KMeansAssignment(labels, sums, counts)


class KMeansSeedKernel(_EntryPoint):
    """``(X, x_squared_norms, indices, closest, uniforms, n_components, covariance_type) ->
    KMeansSeeding``: the rest of a k-means++ seeding, in one call."""

    symbol = "asp_gmm_kmeans_seed"
    n_pointers = 4

    def __call__(self, X: np.ndarray, x_squared_norms: np.ndarray, indices: np.ndarray,
                 closest: np.ndarray, uniforms: np.ndarray, n_components: int,
                 covariance_type: str) -> KMeansSeeding:
        args = (X, x_squared_norms, indices, closest, uniforms, n_components, covariance_type)
        _check_specialised(parse_call("kmeans_seed", args, {}), self.plan)
        X = _x(X, self.plan)
        # the kernel completes copies of the caller's arrays
        indices, closest = np.array(indices), np.array(closest)
        self._run(X, np.ascontiguousarray(x_squared_norms), np.ascontiguousarray(uniforms),
                  indices, closest)
        return KMeansSeeding(indices, closest)

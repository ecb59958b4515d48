"""The domain AST of the GMM specializer: one EM computation described as a list of steps.

A GMM "kernel" is not free-form user code: it is one of the two computations of
:mod:`asp_gmm.reference` (``em_step``: an EM iteration; ``log_prob``: the E-step densities)
applied to data of a given shape and dtype. The frontend turns that call into an
:class:`EMProblem`; domain passes rewrite its steps (fold constants, shift the moments, fuse
the E- and M-steps); platforms lower it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from asp_core.ir import Node

N = TypeVar("N", bound=Node)

__all__ = [
    "AddLogWeights",
    "EMProblem",
    "Fused",
    "LogDensity",
    "LogSumExp",
    "Moments",
    "Responsibilities",
    "find",
]


@dataclass
class LogDensity(Node):
    """log N(x | mu_k, Sigma_k) through the precision Cholesky factor L_k: -1/2 |x L_k - mu_k L_k|^2
    + log det L_k - D/2 log 2 pi. ``constants_folded``: the per-component constant terms are
    one precomputed number; ``triangular``: L_k's zero blocks are skipped."""

    covariance: str
    constants_folded: bool = False
    triangular: bool = False


@dataclass
class AddLogWeights(Node):
    """+ log w_k (absent from ``log_prob``; folded into the density constant by a pass)."""


@dataclass
class LogSumExp(Node):
    """log sum_k exp(.) per sample, max-shifted (the log-likelihood of each sample)."""


@dataclass
class Responsibilities(Node):
    """r_nk = exp(weighted log-density - log-sum-exp)."""


@dataclass
class Moments(Node):
    """Sufficient statistics sum r, sum r (x - c), sum r (x - c)(x - c)^T (or its diagonal).
    ``center``: ``origin`` (c = 0) or ``component`` (c = the incoming mean of component k)."""

    covariance: str
    center: str = "origin"
    triangular: bool = False  # only the upper triangle of sum r d d^T (it is symmetric)


@dataclass
class Fused(Node):
    """Steps evaluated block by block over samples: the N x M responsibilities never exist."""

    steps: list[Node] = field(default_factory=list)


@dataclass
class EMProblem(Node):
    """One GMM computation: ``op`` is ``em_step``, ``log_prob``, ``e_step`` (the E-step's
    labels/responsibilities/log-likelihoods) or ``m_step`` (the M-step from given
    responsibilities)."""

    op: str
    n_components: int
    n_features: int
    covariance: str
    x_dtype: str
    n_samples: int
    steps: list[Node] = field(default_factory=list)


def find(problem: EMProblem, kind: type[N]) -> N | None:
    """The first step of class ``kind`` (looking inside :class:`Fused`), or None."""
    for step in problem.steps:
        if isinstance(step, kind):
            return step
        if isinstance(step, Fused):
            for inner in step.steps:
                if isinstance(inner, kind):
                    return inner
    return None

"""asp-gmm: Gaussian mixture models trained by EM with specialised, autotuned kernels.

``GaussianMixture`` is a scikit-learn compatible estimator; ``GMM`` is the Asp paper's
interface. Both run on :mod:`asp_gmm.engine`. Imported lazily so that ``import asp_gmm`` (and
the plugin registration) does not import scikit-learn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GMM", "GaussianMixture", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "GaussianMixture":
        from asp_gmm.estimator import GaussianMixture

        return GaussianMixture
    if name == "GMM":
        from asp_gmm.paper import GMM

        return GMM
    raise AttributeError(f"module 'asp_gmm' has no attribute {name!r}")

"""asp-gmm: Gaussian mixture models trained by EM with specialised, autotuned kernels.

``GaussianMixture`` is a scikit-learn compatible estimator; ``GMM`` is the Asp paper's
interface. Both run on :mod:`asp_gmm.engine`. Imported lazily so that ``import asp_gmm`` (and
the plugin registration) does not import scikit-learn.
"""

from __future__ import annotations

from asp_core.exports import lazy_exports

__all__ = ["GMM", "GaussianMixture", "InvalidParameterError", "__version__"]
__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {
    "GaussianMixture": "estimator", "GMM": "paper", "InvalidParameterError": "validation"},
    __all__)

"""asp-gmm: Gaussian mixture models trained by EM with specialised, autotuned kernels.

``GaussianMixture`` is a scikit-learn compatible estimator; ``GMM`` is the Asp paper's
interface. Both run on :mod:`asp_gmm.engine`. Imported lazily so that ``import asp_gmm`` (and
the plugin registration) does not import scikit-learn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GMM", "GaussianMixture", "InvalidParameterError", "__version__"]
__version__ = "0.1.0"


_EXPORTS = {"GaussianMixture": "estimator", "GMM": "paper", "InvalidParameterError": "validation"}


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562), then kept in the module so that later lookups skip this function
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # the names not imported yet too (help(), tab completion)
    return sorted(set(globals()) | set(__all__))

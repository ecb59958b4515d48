"""Sphinx configuration of the Asp documentation.

Built in CI with warnings as errors (``sphinx-build -W -b html docs docs/_build/html``) and its
examples run with ``sphinx-build -W -b doctest docs docs/_build/doctest`` (``nox -s docs``).
Pages are Markdown (MyST); the hook reference comes from the hookspec docstrings (autodoc) and
the CLI reference from the click commands (sphinx-click).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asp_core import __version__

project = "Asp"
author = "The Asp developers"
copyright = "2026, The Asp developers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "sphinx_click",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "architecture/requests/**", "**/.ipynb_checkpoints"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"Asp {version}"
html_theme_options = {"description": "Asp is SEJITS for Python", "fixed_sidebar": True}

# Examples in the guides run against the installed plugins, in a private cache removed when the
# build ends, without the autotuning rounds (they would only make the doctest build slower).
_doctest_cache = tempfile.mkdtemp(prefix="asp-doctest-cache-")


@atexit.register
def _remove_doctest_cache(owner: int = os.getpid()) -> None:
    """At the build's end, in its own process only (not in a child it forks)."""
    if os.getpid() == owner:
        shutil.rmtree(_doctest_cache, ignore_errors=True)


doctest_global_setup = f"""
import os
os.environ.setdefault("ASP_CACHE_DIR", {_doctest_cache!r})
os.environ["ASP_AUTOTUNE"] = "off"
import warnings
from asp_core import SpecializationWarning
warnings.simplefilter("error", SpecializationWarning)  # an example must really specialise
import numpy as np
"""
doctest_test_doctest_blocks = ""  # only explicit {doctest} blocks run

os.environ.setdefault("ASP_CONFIG", str(ROOT / "docs" / "_build" / "no-config.toml"))

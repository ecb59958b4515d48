"""Repository-wide pytest setup: every test session gets its own Asp cache directory, so tests
never read or write the user's cache and start from a known state."""

from __future__ import annotations

import os
import tempfile

_session_cache = tempfile.mkdtemp(prefix="asp-test-cache-")
os.environ.setdefault("ASP_CACHE_DIR", _session_cache)
os.environ.setdefault("ASP_CONFIG", os.path.join(_session_cache, "no-config.toml"))

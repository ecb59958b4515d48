"""Repository-wide pytest setup: every test session gets its own Asp cache directory, so tests
never read or write the user's cache and start from a known state. The directory goes when
the session ends (a full run leaves some 85 MB of compiled variants there)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_session_cache = tempfile.mkdtemp(prefix="asp-test-cache-")
atexit.register(shutil.rmtree, _session_cache, ignore_errors=True)
os.environ.setdefault("ASP_CACHE_DIR", _session_cache)
os.environ.setdefault("ASP_CONFIG", os.path.join(_session_cache, "no-config.toml"))

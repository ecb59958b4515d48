"""Repository-wide pytest setup: every test session gets its own Asp cache directory, so tests
never read or write the user's cache and start from a known state. The directory goes when
the session ends (a full run leaves some 85 MB of compiled variants there)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

_session_cache = tempfile.mkdtemp(prefix="asp-test-cache-")


@atexit.register
def _remove_session_cache(owner: int = os.getpid()) -> None:
    """At the session's end, in its own process only: a child a test forks (``os.fork``,
    then ``sys.exit``) runs the exit handlers too, and removed the cache under the session."""
    if os.getpid() == owner:
        background = sys.modules.get("asp_core.background")
        if background is not None:   # its compiles still running would lose their folders
            background.shutdown(wait=True)
        shutil.rmtree(_session_cache, ignore_errors=True)


os.environ.setdefault("ASP_CACHE_DIR", _session_cache)
os.environ.setdefault("ASP_CONFIG", os.path.join(_session_cache, "no-config.toml"))

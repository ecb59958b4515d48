"""Test isolation: a private Asp cache, no user config file and none of the user's Asp settings
for the whole session."""

from __future__ import annotations

import os

import pytest

#: machine settings the tests keep (which compiler, its flags and time limit, how much is
#: logged); any other ``ASP_`` variable (``ASP_MODE=python``, a platform choice, a plugin
#: allow-list) would change what the tests check
KEPT = ("ASP_CC", "ASP_CXX", "ASP_NVCC", "ASP_CFLAGS", "ASP_COMPILE_TIMEOUT", "ASP_LOG_LEVEL")


@pytest.fixture(autouse=True, scope="session")
def _isolated_asp(tmp_path_factory: pytest.TempPathFactory):
    saved = {k: v for k, v in os.environ.items() if k.startswith("ASP_")}
    for key in saved:
        if key not in KEPT:
            del os.environ[key]
    root = tmp_path_factory.mktemp("asp")
    os.environ["ASP_CACHE_DIR"] = str(root / "cache")
    os.environ["ASP_CONFIG"] = str(root / "no-config.toml")
    yield
    for key in [k for k in os.environ if k.startswith("ASP_")]:
        del os.environ[key]
    os.environ.update(saved)

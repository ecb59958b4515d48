"""Test isolation: a private Asp cache and no user config file for the whole session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_asp(tmp_path_factory: pytest.TempPathFactory):
    saved = {k: os.environ.get(k) for k in ("ASP_CACHE_DIR", "ASP_CONFIG")}
    root = tmp_path_factory.mktemp("asp")
    os.environ["ASP_CACHE_DIR"] = str(root / "cache")
    os.environ["ASP_CONFIG"] = str(root / "no-config.toml")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

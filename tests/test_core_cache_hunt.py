"""The code cache under a concurrent clear, a full disk, a read-only folder and a file at an
entry's place (a bug hunt's regression tests)."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest

from asp_core import CacheError, CacheWarning, CompileError
from asp_core import cache as cache_mod
from asp_core.build import compile_library
from asp_core.cache import CodeCache, cache_key
from asp_core.cli import maintenance
from pytest_asp import requires_compiler

SRC = "double asp_thrice(double x) { return 3.0 * x; }\n"


def _so(tmp: Path) -> dict:
    (tmp / "libk.so").write_bytes(b"lib")
    return {}


def test_listing_and_measuring_a_cache_another_process_clears(fresh_cache, monkeypatch):
    """``asp cache info``/``verify``/``clear`` ended in a FileNotFoundError traceback when a
    prefix folder or a file went between listing and reading it."""
    cache = CodeCache(fresh_cache)
    for test in ("a", "b"):
        cache.get_or_build(cache_key(test=test), _so)
    listing, real_stat, real_lstat = Path.iterdir, os.stat, os.lstat

    def cleared_meanwhile(self):
        if self.parent == fresh_cache / "code" and self.is_dir():
            shutil.rmtree(self)
        return listing(self)

    calls: dict[str, int] = {}

    def gone(stat, after: int):   # a library of this cache, gone after ``after`` looks at it
        def racing(path, *args, **kwargs):
            name = str(path)
            if name.startswith(str(fresh_cache)) and name.endswith("libk.so"):
                calls[name] = calls.get(name, 0) + 1
                if calls[name] > after:
                    try:
                        os.unlink(name)
                    except FileNotFoundError:
                        pass
            return stat(path, *args, **kwargs)
        return racing

    monkeypatch.setattr(os, "stat", gone(real_stat, 1))   # listed as a file, gone when measured
    monkeypatch.setattr(os, "lstat", gone(real_lstat, 0))
    assert maintenance.size(cache) >= 0
    monkeypatch.setattr(Path, "iterdir", cleared_meanwhile)
    assert maintenance.entries(cache) == []


def test_a_file_at_an_entrys_place_is_not_moved_or_removed(fresh_cache):
    """A file (not Asp's) at an entry's path was moved into ``tmp/stale-*``, where ``asp cache
    verify`` and ``clear`` then failed on it for good ("Not a directory")."""
    cache = CodeCache(fresh_cache)
    cache.ensure()
    key = cache_key(test="file")
    final = cache.entry_path(key)
    final.parent.mkdir(parents=True)
    final.write_text("mine")
    with pytest.raises(CacheError, match="is not an Asp cache entry"):
        cache.get_or_build(key, _so)
    assert final.read_text() == "mine"
    assert maintenance.verify(cache)[1] == [] and maintenance.clear(cache) == 0
    assert final.read_text() == "mine"


def test_a_stale_file_an_earlier_version_left_is_cleared(fresh_cache):
    cache = CodeCache(fresh_cache)
    cache.ensure()
    stale = fresh_cache / "tmp" / "stale-0123456789ab-0123abcd"
    stale.write_text("moved aside")
    maintenance.clear(cache)
    assert not stale.exists()


def test_a_full_disk_under_the_cache_is_a_cache_error_not_a_bug(fresh_cache):
    """``ld: final link failed: No space left on device`` was "generated code failed to
    compile (a bug; please report it)", and the kernel ran in Python in every process."""
    cache = CodeCache(fresh_cache)

    def full(tmp: Path) -> dict:
        raise CompileError("gcc failed on generated code (exit 1)", command=["gcc"],
                           log="/usr/bin/ld: final link failed: No space left on device",
                           source_path=tmp / "k.c")

    with pytest.raises(CacheError, match="has no room for a compiled kernel"):
        cache.get_or_build(cache_key(test="full"), full)


@requires_compiler
def test_a_read_only_cache_warns_once_a_process(fresh_cache, monkeypatch):
    """Each kernel compiled into the private cache warned again: the reason named each key's
    lock file, so no two warnings were the same."""
    class Refused:
        def __init__(self, path: Path) -> None:
            self.path = path

        def acquire(self, timeout: float) -> None:
            raise PermissionError(13, "Permission denied", str(self.path))

    real = CodeCache.entry_lock
    monkeypatch.setattr(CodeCache, "entry_lock", lambda self, key: Refused(
        self.root / "locks" / f"{key}.lock") if self.root == fresh_cache else real(self, key))
    monkeypatch.setattr(cache_mod, "_warned", set())
    monkeypatch.setattr(cache_mod, "_private", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        libs = [compile_library(SRC.replace("3.0", f"{i}.0"), name="thrice", openmp=False)
                for i in range(3)]
    assert [lib.cdll.asp_thrice.restype is not None for lib in libs]
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1


@requires_compiler
def test_an_empty_unwritable_cache_directory_warns_once_a_process(fresh_cache, monkeypatch):
    """An empty cache directory the user cannot write warned at every cache access (19 times
    in a script of four kernels): the reason named the marker's temporary file, whose name is
    random, so no two warnings were the same."""
    fresh_cache.mkdir()
    write = Path.write_text

    def refused(self: Path, *args, **kwargs):
        if self.parent == fresh_cache:
            raise PermissionError(13, "Permission denied", str(self))
        return write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refused)
    monkeypatch.setattr(cache_mod, "_write_durably", refused)
    monkeypatch.setattr(cache_mod, "_warned", set())
    monkeypatch.setattr(cache_mod, "_private", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        libs = [compile_library(SRC.replace("3.0", f"{i}.0"), name="thrice", openmp=False)
                for i in range(3)]
    assert all(not str(lib.path).startswith(str(fresh_cache)) for lib in libs)
    cache_warnings = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(cache_warnings) == 1 and "not writable (Permission denied)" in cache_warnings[0]


@requires_compiler
def test_a_build_sweeps_what_killed_builds_left_and_compilers_keep_temporaries_in_it(
        fresh_cache, tmp_path, monkeypatch):
    """A Ctrl-C during background compiles left their build folders in ``<cache>/tmp`` until
    someone ran ``asp cache verify``, and gcc's ``cc*.s`` files in the user's ``TMPDIR`` for
    good (the compiler's process group is killed: gcc cleans nothing up)."""
    import tempfile

    from asp_core.toolchain import find_toolchain

    monkeypatch.setattr(cache_mod, "_swept", set(), raising=False)
    CodeCache(fresh_cache).ensure()
    killed = fresh_cache / "tmp" / "0123456789ab-abcdefgh"   # a killed build's folder
    killed.mkdir()
    (killed / "kernel.c").write_text("int x;\n")
    user_tmp = tmp_path / "user-tmp"
    user_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(user_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    seen = tmp_path / "seen"
    wrapper = tmp_path / "cc-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$TMPDIR" >> {seen}\n'
                       f'exec {find_toolchain("c").executable} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("ASP_CC", str(wrapper))
    lib = compile_library("int asp_swept(void) { return 3; }\n", openmp=False, name="swept")
    assert lib.cdll.asp_swept() == 3
    assert not killed.exists()
    assert list((fresh_cache / "tmp").iterdir()) == []
    last = seen.read_text().split()[-1]   # the kernel's compile (the probes run before it)
    assert last.startswith(str(fresh_cache / "tmp")), last
    assert list(user_tmp.iterdir()) == []


@requires_compiler
def test_entries_built_under_a_group_writable_umask_are_used(fresh_cache):
    """Under ``umask 002`` (the default of many distributions) the entry's files were made
    group-writable, and Asp refused its own output as unsafe: a CacheWarning, the private
    cache refused the same way, and every kernel ran in Python."""
    import stat

    old = os.umask(0o002)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheWarning)
            lib = compile_library("int asp_umask(void) { return 9; }\n", name="umask",
                                  openmp=False)
    finally:
        os.umask(old)
    assert lib.cdll.asp_umask() == 9 and not lib.cached
    assert all(not p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
               for p in lib.path.parent.iterdir())
    assert compile_library("int asp_umask(void) { return 9; }\n", name="umask",
                           openmp=False).cached

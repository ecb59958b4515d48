"""Cache faults (issue 14): foreign files, unsafe directories, libraries that do not load,
unwritable or noexec caches, leftovers of killed compiles, long names, a cache path that is a
file. Each case either works (with at most one warning) or fails with a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from asp_core import CacheError, CacheWarning, Dispatcher, SpecializationWarning
from asp_core.build import compile_library
from asp_core.cache import ENTRY_MARKER, ROOT_MARKER, CodeCache, _sha256
from asp_core.cli import cli
from pytest_asp import requires_compiler
from asp_core.toolchain import find_toolchain

REPO = Path(__file__).resolve().parents[2]
SRC = "double asp_thrice(double x) { return 3.0 * x; }\n"
root_user = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                               reason="file permissions do not bind root")


def _axpy(a, b):
    return a + 3.0 * b


def _fill_in_subprocess(root: Path, source: str = SRC, name: str = "thrice") -> Path:
    """Compile ``source`` into ``root`` in another process (this one never loads it)."""
    code = ("import sys, json; from asp_core.build import compile_library; "
            f"print(compile_library({source!r}, name={name!r}, openmp=False).path)")
    env = dict(os.environ, ASP_CACHE_DIR=str(root), PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


def _replace_keeping_checksums(lib: Path, data: bytes) -> None:
    """What an attacker (or a broken disk) with write access does: new bytes, matching meta."""
    lib.write_bytes(data)
    meta_path = lib.parent / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["files"][lib.name] = _sha256(lib)
    meta_path.write_text(json.dumps(meta))


# -- the cache touches only what it created ------------------------------------------------------
@requires_compiler
def test_verify_and_clear_leave_foreign_files_alone(fresh_cache):
    lib = compile_library(SRC, name="thrice", openmp=False)
    foreign = [fresh_cache / "code" / "myproject" / "src" / "main.py",
               fresh_cache / "code" / "ab" / "notes.txt",
               fresh_cache / "tmp" / "keep-me" / "data.bin",
               fresh_cache / "tmp" / "report.txt"]
    for f in foreign:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("precious")
    result = CliRunner().invoke(cli, ["cache", "verify"])
    assert result.exit_code == 0, result.output
    assert "1 entries OK" in result.output
    assert all(f.exists() for f in foreign)
    result = CliRunner().invoke(cli, ["cache", "clear"])
    assert result.exit_code == 0, result.output
    assert "removed 1 entries" in result.output
    assert all(f.exists() for f in foreign) and not lib.path.parent.exists()


def test_clear_refuses_a_directory_that_is_not_an_asp_cache(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "code" / "src").mkdir(parents=True)
    (project / "code" / "src" / "main.py").write_text("print('hi')")
    (project / "tmp").mkdir()
    (project / "tmp" / "scratch").write_text("x")
    monkeypatch.setenv("ASP_CACHE_DIR", str(project))
    result = CliRunner().invoke(cli, ["cache", "clear"])
    assert result.exit_code != 0
    assert "is not an Asp cache" in result.output
    assert (project / "code" / "src" / "main.py").exists() and (project / "tmp" / "scratch").exists()
    with pytest.raises(CacheError, match="is not an Asp cache"):   # nor used, nor marked
        CodeCache(project).ensure()
    assert not (project / ROOT_MARKER).exists()


def test_new_cache_is_marked(fresh_cache):
    CodeCache(fresh_cache).ensure()
    assert "Asp code cache" in (fresh_cache / ROOT_MARKER).read_text()


@requires_compiler
def test_entries_carry_their_marker(fresh_cache):
    lib = compile_library(SRC, name="thrice", openmp=False)
    assert (lib.path.parent / ENTRY_MARKER).read_text() == lib.key


# -- killed compiles and stale entries ------------------------------------------------------------
def test_verify_reports_and_removes_build_leftovers(fresh_cache):
    cache = CodeCache(fresh_cache)
    cache.ensure()
    killed = fresh_cache / "tmp" / "0123456789ab-x1y2z3w4"
    stale = fresh_cache / "tmp" / "stale-0123456789ab-deadbeef"
    for d in (killed, stale):
        d.mkdir()
        (d / "libk.so").write_bytes(b"half")
    running = fresh_cache / "tmp" / "fedcba987654-abcdef"
    running.mkdir()
    from filelock import FileLock

    with FileLock(str(fresh_cache / "locks" / ("fedcba987654" + "0" * 52 + ".lock"))):
        result = CliRunner().invoke(cli, ["cache", "verify"])
    assert result.exit_code == 0, result.output
    assert "0 entries OK, 2 bad entries or build leftovers removed" in result.output
    assert str(killed) in result.output and str(stale) in result.output
    assert not killed.exists() and not stale.exists()
    assert running.exists()  # its build is still under way (the lock is held)


# -- unsafe directories between the root and the entry -------------------------------------------
@requires_compiler
@pytest.mark.parametrize("where", ["code", "prefix", "entry"])
def test_planted_library_in_writable_directory_is_never_loaded(fresh_cache, tmp_path, where):
    lib_path = _fill_in_subprocess(fresh_cache)
    entry = lib_path.parent
    flag = tmp_path / "constructor-ran"
    evil = tmp_path / "evil.c"
    evil.write_text('#include <stdio.h>\n__attribute__((constructor)) static void own(void) '
                    f'{{ FILE *f = fopen("{flag}", "w"); if (f) fclose(f); }}\n'
                    "double asp_thrice(double x) { return -1.0; }\n")
    subprocess.run([find_toolchain("c").executable, "-shared", "-fPIC", "-o", str(tmp_path / "evil.so"), str(evil)],
                   check=True)
    _replace_keeping_checksums(lib_path, (tmp_path / "evil.so").read_bytes())
    target = {"code": fresh_cache / "code", "prefix": entry.parent, "entry": entry}[where]
    target.chmod(0o777)
    try:
        with pytest.warns(CacheWarning, match="writable by other users"):
            lib = compile_library(SRC, name="thrice", openmp=False)
        assert not flag.exists()
        assert not str(lib.path).startswith(str(fresh_cache))
        import ctypes

        fn = lib.cdll.asp_thrice
        fn.restype, fn.argtypes = ctypes.c_double, [ctypes.c_double]
        assert fn(2.0) == 6.0
    finally:
        target.chmod(0o700)


@requires_compiler
@pytest.mark.parametrize("autotune", ["off", "once"])
@pytest.mark.parametrize("problem", ["world-writable", "foreign-owner"])
def test_unsafe_root_builds_in_a_private_cache_with_one_warning(elementwise, fresh_cache,
                                                                 monkeypatch, problem, autotune):
    fresh_cache.mkdir()
    if problem == "world-writable":
        fresh_cache.chmod(0o777)
        expected = "writable by other users"
    else:
        import asp_core.cache as cache_mod

        real = cache_mod._unsafe
        monkeypatch.setattr(cache_mod, "_unsafe", lambda path, st: (
            f"{path} is owned by uid 4242, not by you" if path == fresh_cache else real(path, st)))
        expected = "not by you"
    monkeypatch.setenv("ASP_AUTOTUNE", autotune)
    monkeypatch.setenv("ASP_MODE", "strict")
    a, b = np.ones(8), np.arange(8.0)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(3):
                d = Dispatcher("elementwise", _axpy)
                np.testing.assert_array_equal(d(a, b), a + 3.0 * b)
        cache_warnings = [w for w in seen if issubclass(w.category, CacheWarning)]
        assert len(cache_warnings) == 1 and expected in str(cache_warnings[0].message)
        assert not any(issubclass(w.category, SpecializationWarning) for w in seen)
        assert not (fresh_cache / "code").exists()
    finally:
        fresh_cache.chmod(0o700)


# -- libraries that pass their checksums but do not load -----------------------------------------
@requires_compiler
def test_garbage_library_with_matching_checksums_is_rebuilt_once(fresh_cache):
    lib_path = _fill_in_subprocess(fresh_cache)
    _replace_keeping_checksums(lib_path, b"\x7fELF" + b"\0garbage" * 64)
    lib = compile_library(SRC, name="thrice", openmp=False)
    assert not lib.cached and lib.path == lib_path
    assert CodeCache(fresh_cache).lookup(lib.key) is not None


@requires_compiler
def test_library_that_never_loads_falls_back_with_the_core_warning(elementwise, fresh_cache,
                                                                   monkeypatch):
    import asp_core.build as build_mod
    import asp_core.cache as cache_mod

    monkeypatch.setattr(cache_mod, "_private", None)
    builds = []
    real_build = CodeCache._build

    def counting_build(self, key, build):
        builds.append(self.root)
        return real_build(self, key, build)

    def never(path):
        raise OSError(f"{path}: failed to map segment from shared object")

    monkeypatch.setattr(CodeCache, "_build", counting_build)
    monkeypatch.setattr(build_mod, "load_library", never)
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    d = Dispatcher("elementwise", _axpy)
    a, b = np.ones(4), np.arange(4.0)
    with pytest.warns(SpecializationWarning, match="failed to map segment"), \
            pytest.warns(CacheWarning, match="does not load"):
        np.testing.assert_array_equal(d(a, b), a + 3.0 * b)
    # built, rebuilt once, then the same in the private cache: never a loop
    assert builds.count(fresh_cache) == 2 and len(builds) == 4


@requires_compiler
def test_noexec_cache_compiles_into_private_cache_and_doctor_says_so(fresh_cache, monkeypatch):
    import asp_core.build as build_mod
    import asp_core.cache as cache_mod

    def noexec(path):
        return str(path).startswith(str(fresh_cache))

    monkeypatch.setattr(build_mod, "on_noexec_mount", noexec)
    monkeypatch.setattr(cache_mod, "on_noexec_mount", noexec)
    with pytest.warns(CacheWarning, match="noexec"):
        lib = compile_library(SRC + "/* noexec */\n", name="thrice", openmp=False)
    assert not str(lib.path).startswith(str(fresh_cache))
    from asp_core.cli.doctor import checks

    cache_check = [c for c in checks(measure_stream=False) if c[0] == "cache"][0]
    assert not cache_check[1] and "noexec" in cache_check[2]


# -- unwritable caches ----------------------------------------------------------------------------
@requires_compiler
def test_unwritable_subdirectory_compiles_into_private_cache(fresh_cache, monkeypatch):
    CodeCache(fresh_cache).ensure()
    import tempfile

    real = tempfile.mkdtemp

    def refuse(*args, dir=None, **kw):  # noqa: A002
        if dir is not None and str(dir).startswith(str(fresh_cache)):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.warns(CacheWarning, match="cannot write to the Asp cache"):
        lib = compile_library(SRC + "/* ro */\n", name="thrice", openmp=False)
    assert not str(lib.path).startswith(str(fresh_cache))


@root_user
@requires_compiler
@pytest.mark.parametrize("filled", [True, False])
def test_read_only_cache_runs_kernels_with_one_warning(elementwise, fresh_cache, monkeypatch,
                                                       filled):
    a, b = np.ones(8), np.arange(8.0)
    if filled:
        np.testing.assert_array_equal(Dispatcher("elementwise", _axpy)(a, b), a + 3.0 * b)
    else:
        CodeCache(fresh_cache).ensure()
    for p in [fresh_cache, *fresh_cache.rglob("*")]:
        if p.is_dir():
            p.chmod(0o500)
    try:
        for autotune in ("off", "once"):
            monkeypatch.setenv("ASP_AUTOTUNE", autotune)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                np.testing.assert_array_equal(Dispatcher("elementwise", _axpy)(a, b),
                                              a + 3.0 * b)
            assert not any(issubclass(w.category, SpecializationWarning) for w in seen)
        from asp_core.cli.doctor import checks

        cache_check = [c for c in checks(measure_stream=False) if c[0] == "cache"][0]
        assert "read-only" in cache_check[2] or "not writable" in cache_check[2]
    finally:
        for p in [fresh_cache, *fresh_cache.rglob("*")]:
            if p.is_dir():
                p.chmod(0o700)


# -- names and paths ------------------------------------------------------------------------------
@requires_compiler
def test_very_long_kernel_name_gives_bounded_file_names(fresh_cache):
    name = "K" * 300
    lib = compile_library(SRC + "/* long */\n", name=name, openmp=False)
    assert all(len(p.name) <= 80 for p in lib.path.parent.iterdir())
    other = compile_library(SRC + "/* long 2 */\n", name="K" * 299 + "L", openmp=False)
    assert other.path.name != lib.path.name


@pytest.mark.parametrize("args", [["cache", "info"], ["cache", "verify"], ["cache", "clear"]])
def test_cache_dir_that_is_a_file_is_a_clear_error(tmp_path, monkeypatch, args):
    blocker = tmp_path / "cachefile"
    blocker.write_text("not a directory")
    monkeypatch.setenv("ASP_CACHE_DIR", str(blocker))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert "is a file, not a directory" in result.output
    assert blocker.read_text() == "not a directory"


def test_cache_dir_that_is_a_file_fails_lookups_clearly(tmp_path):
    blocker = tmp_path / "cachefile"
    blocker.write_text("x")
    with pytest.raises(CacheError, match="is a file, not a directory"):
        CodeCache(blocker).lookup("0" * 64)


@requires_compiler
def test_a_build_folder_removed_under_the_compiler_is_a_cache_problem_not_a_bug(fresh_cache,
                                                                                monkeypatch):
    """The cache deleted while a kernel compiled (a user's rm -rf, a concurrent clear): the
    compiler could not write its output, and the kernel ran in Python for the rest of the
    process under "generated code failed to compile (a bug)".  It now builds in the private
    cache with one CacheWarning naming what happened."""
    import shutil

    from asp_core import toolchain

    run = toolchain.run_tool
    removed = []

    def run_after_removal(cmd, **kw):   # the first compile's folder goes away under it
        if not removed and kw.get("cwd") is not None:
            removed.append(kw["cwd"])
            shutil.rmtree(kw["cwd"])
            kw["cwd"] = Path(kw["cwd"]).parent
        return run(cmd, **kw)

    toolchain.find_toolchain("c")   # probes done before the compiler is sabotaged
    monkeypatch.setattr(toolchain, "run_tool", run_after_removal)
    with pytest.warns(CacheWarning, match="was removed while a kernel compiled"):
        lib = compile_library(SRC.replace("3.0", "5.0"), name="five", openmp=False)
    monkeypatch.undo()
    assert removed and fresh_cache not in lib.path.parents

"""The code cache: keys, checksums, corruption, concurrency across processes, unsafe
directories and warm starts in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asp_core import CacheError
from asp_core.build import compile_library, is_cached, library_key
from asp_core.cache import ENTRY_MARKER, CacheEntry, CodeCache, cache_key
from asp_core.cli import maintenance
from pytest_asp import requires_compiler

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "specializers" / "run_kernel.py"

SRC = "double asp_twice(double x) { return 2.0 * x; }\n"


def _entries(root: Path) -> list[Path]:
    return maintenance.entries(CodeCache(root))


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ASP_CACHE_DIR": str(cache), "ASP_DISABLE_PLUGIN_AUTOLOAD": "1",
                "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}, **extra)
    env.pop("ASP_MODE", None)
    return env


def _run(cache: Path, *args: str, **env: str) -> dict:
    proc = subprocess.run([sys.executable, str(RUNNER), *args], env=_env(cache, **env),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- keys and entries ---------------------------------------------------------------------------
def test_cache_key_is_canonical_and_sensitive():
    assert cache_key(a=1, b=[1, 2]) == cache_key(b=[1, 2], a=1)
    assert cache_key(a=1) != cache_key(a=2)
    assert cache_key(a=1) != cache_key(a="1")
    assert len(cache_key(x=object.__name__)) == 64


@requires_compiler
def test_library_key_changes_with_source_flags_and_specialisation(monkeypatch):
    base = library_key(SRC)
    assert base == library_key(SRC)
    assert library_key(SRC + "\n") != base
    assert library_key(SRC, flags=("-O1",)) != base
    assert library_key(SRC, specialised_on={"n": 1}) != library_key(SRC,
                                                                      specialised_on={"n": 2})
    assert library_key(SRC, specialised_on={"n": 1}) != base
    assert library_key(SRC, openmp=False) != base
    monkeypatch.setenv("ASP_CFLAGS", "-DASP_TEST_FLAG=1")
    assert library_key(SRC) != base


@requires_compiler
def test_entry_has_checksums_and_private_mode(fresh_cache):
    import ctypes
    import hashlib

    lib = compile_library(SRC, name="twice", openmp=False)
    assert not lib.cached and lib.seconds > 0
    fn = lib.cdll.asp_twice
    fn.restype, fn.argtypes = ctypes.c_double, [ctypes.c_double]
    assert fn(21.0) == 42.0
    meta = json.loads((lib.path.parent / "meta.json").read_text())
    assert set(meta["files"]) == {"libtwice.so", "twice.c", ".asp-entry"}
    for name, digest in meta["files"].items():
        assert hashlib.sha256((lib.path.parent / name).read_bytes()).hexdigest() == digest
    assert meta["key"] == lib.key and lib.path.parent.name == lib.key
    assert "gcc" in meta["command"][0] or "cc" in meta["command"][0]
    assert (fresh_cache.stat().st_mode & 0o777) == 0o700
    again = compile_library(SRC, name="twice", openmp=False)
    assert again.cached and again.seconds == 0.0 and again.path == lib.path
    assert len(_entries(fresh_cache)) == 1


@requires_compiler
def test_is_cached_answers_without_compiling(fresh_cache):
    assert not is_cached(SRC, openmp=False)
    assert not _entries(fresh_cache)   # nothing was built
    compile_library(SRC, name="twice", openmp=False)
    assert is_cached(SRC, openmp=False)
    assert not is_cached(SRC, openmp=False, specialised_on={"n": 1})   # another key


@requires_compiler
def test_compile_error_names_command_and_log(fresh_cache):
    from asp_core import CompileError

    with pytest.raises(CompileError) as info:
        compile_library("int broken( { return }\n", name="broken", openmp=False)
    assert "error" in info.value.log and info.value.command
    assert _entries(fresh_cache) == []
    assert list((fresh_cache / "tmp").iterdir()) == []  # the failed build left nothing behind


def _corrupt(path: Path, data: bytes | None = None) -> None:
    """Replace a file (new inode: a library already mapped by this process stays intact)."""
    tmp = path.with_name(path.name + ".corrupt")
    tmp.write_bytes(data if data is not None else path.read_bytes()[:100] + b"\0garbage")
    os.replace(tmp, path)


@requires_compiler
@pytest.mark.parametrize("what", ["so", "meta", "meta-missing-file"])
def test_corrupted_entry_is_detected_and_rebuilt(fresh_cache, what):
    first = _run(fresh_cache, "--calls", "1", ASP_AUTOTUNE="off")
    assert first["ok"] and [c["cached"] for c in first["compiles"]] == [False]
    entry = Path(first["compiles"][0]["path"]).parent
    if what == "so":
        _corrupt(entry / "libasp_map.so")
    elif what == "meta":
        _corrupt(entry / "meta.json", b"{ not json")
    else:
        (entry / "asp_map.c").unlink()
    cache = CodeCache(fresh_cache)
    assert cache.lookup(entry.name) is None  # detected before anything is loaded
    second = _run(fresh_cache, "--calls", "1", ASP_AUTOTUNE="off")
    assert second["ok"]
    assert [c["cached"] for c in second["compiles"]] == [False]  # rebuilt
    assert second["compiles"][0]["path"] == first["compiles"][0]["path"]
    assert cache.lookup(entry.name) is not None
    third = _run(fresh_cache, "--calls", "1", ASP_AUTOTUNE="off")
    assert [c["cached"] for c in third["compiles"]] == [True]


@requires_compiler
def test_verify_removes_bad_entries(fresh_cache):
    compile_library(SRC, name="twice", openmp=False)
    bad = compile_library(SRC + "/* other */\n", name="twice", openmp=False)
    _corrupt(bad.path)
    good, removed = maintenance.verify(CodeCache(fresh_cache))
    assert [p.name for p in removed] == [bad.key] and len(good) == 1
    assert not bad.path.parent.exists()


def _one_entry(root: Path, test: str) -> tuple[CodeCache, str, CacheEntry]:
    """A cache at ``root`` holding one entry (key made from ``test``) whose ``libk.so`` is
    ``b"first"``: the cache, the key and the entry."""
    cache = CodeCache(root)
    key = cache_key(test=test)

    def first(tmp: Path) -> dict:
        (tmp / "libk.so").write_bytes(b"first")
        return {}

    entry, _ = cache.get_or_build(key, first)
    return cache, key, entry


def test_verify_removes_a_bad_entry_only_under_the_lock_compiles_take(fresh_cache):
    """`asp cache verify` removed a bad entry without the lock a compile takes to write it: a
    compile rebuilding that entry meanwhile lost its files, or had its new entry deleted (found
    bad a moment before).  It now waits for the compile and finds the entry rebuilt."""
    import threading

    cache, key, entry = _one_entry(fresh_cache, "verify under the lock")
    (entry.path / "libk.so").write_bytes(b"damaged")
    building, go = threading.Event(), threading.Event()
    done: dict = {}

    def rebuild(tmp: Path) -> dict:   # a compile of the entry, holding its lock
        building.set()
        assert go.wait(60)
        (tmp / "libk.so").write_bytes(b"rebuilt")
        return {}

    def compile_it() -> None:
        done["compile"] = cache.get_or_build(key, rebuild)

    def verify() -> None:
        done["verify"] = maintenance.verify(cache)

    compiling = threading.Thread(target=compile_it)
    compiling.start()
    assert building.wait(60)
    verifying = threading.Thread(target=verify)
    verifying.start()
    verifying.join(0.5)   # time to remove it unlocked (or, later, the rebuilt entry)
    go.set()
    compiling.join(60)
    verifying.join(60)
    good, removed = done["verify"]
    assert done["compile"][1] is False and good == [entry.path]
    assert [p.name[:6] for p in removed] == ["stale-"]   # the damaged one, moved aside
    assert cache.lookup(key) is not None
    assert (entry.path / "libk.so").read_bytes() == b"rebuilt"


@requires_compiler
@pytest.mark.parametrize("autotune", ["off", "once"])
def test_eight_processes_compile_one_entry(fresh_cache, tmp_path, autotune, monkeypatch):
    """8 processes reach the first call at once: one compiles each entry, the others wait and
    load it; with tuning on, all of them also time both variants into one perf database."""
    n = 8
    calls = "12" if autotune == "once" else "2"
    variants = 2 if autotune == "once" else 1
    go = tmp_path / "go"
    procs, ready = [], []
    for i in range(n):
        r = tmp_path / f"ready{i}"
        ready.append(r)
        procs.append(subprocess.Popen(
            [sys.executable, str(RUNNER), "--calls", calls, "--ready", str(r), "--go", str(go)],
            env=_env(fresh_cache, ASP_AUTOTUNE=autotune), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.time() + 240
        while not all(r.exists() for r in ready):
            assert time.time() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.write_text("go")
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(o["ok"] for o in outs)
    cached = [c["cached"] for o in outs for c in o["compiles"]]
    assert len(cached) == n * variants and cached.count(False) == variants, cached
    entries = _entries(fresh_cache)
    assert len(entries) == variants
    assert all(CodeCache(fresh_cache).lookup(e.name) is not None for e in entries)
    assert {c["path"] for o in outs for c in o["compiles"]} == {
        str(e / "libasp_map.so") for e in entries}
    assert list((fresh_cache / "tmp").iterdir()) == []
    if autotune == "once":
        assert all(o["bound"] == "function" for o in outs)  # every process finished tuning
        from asp_core.autotune import PerfDB

        monkeypatch.setenv("OMP_NUM_THREADS", "1")   # the workers' (a winner holds for it)
        assert len(PerfDB(fresh_cache / "perf.sqlite").summary()) == 1


# -- unsafe directories ---------------------------------------------------------------------
def _axpy(a, b):
    return a + 3.0 * b


@pytest.fixture
def shared_dir(tmp_path, monkeypatch):
    root = tmp_path / "shared-cache"
    root.mkdir()
    monkeypatch.setenv("ASP_CACHE_DIR", str(root))
    yield root
    root.chmod(0o700)


def test_world_writable_cache_is_refused(shared_dir):
    shared_dir.chmod(0o777)
    with pytest.raises(CacheError, match=r"writable by other users \(its group or everyone: mode 777\).*chmod 700"):
        CodeCache(shared_dir).ensure()
    shared_dir.chmod(0o770)
    with pytest.raises(CacheError, match="writable by other users"):
        CodeCache(shared_dir).lookup("0" * 64)


def test_foreign_owned_cache_is_refused(shared_dir, monkeypatch):
    real = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real + 4242)
    with pytest.raises(CacheError, match=rf"owned by uid {real}, not by you \(uid "
                                         rf"{real + 4242}\).*ASP_CACHE_DIR"):
        CodeCache(shared_dir).ensure()


# an unsafe cache directory is worked around with one warning: see
# tests/faults/test_cache_faults.py::test_unsafe_root_builds_in_a_private_cache_with_one_warning


def test_verify_and_doctor_touch_nothing_in_a_directory_that_is_not_a_cache(tmp_path):
    """A home-like folder given as ASP_CACHE_DIR: a folder of the user's in its tmp/ whose
    name looks like a build folder stays, and nothing is created."""
    (tmp_path / "tmp" / "202401151030-photos").mkdir(parents=True)
    (tmp_path / "tmp" / "202401151030-photos" / "img.jpg").write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    cache = CodeCache(tmp_path)
    with pytest.raises(CacheError, match="is not an Asp cache .*refusing to verify"):
        maintenance.verify(cache)
    assert any("not an Asp cache" in p for p in maintenance.problems(cache))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def test_a_folder_whose_names_asp_also_uses_is_not_taken_for_a_cache(tmp_path, monkeypatch):
    """Only ``tmp/<12 hex digits>-notes/thesis.tex``: names Asp uses, a folder that looks
    like a build folder.  verify deleted it (the root was taken for a cache from before the
    marker); now nothing treats it as Asp's, and nothing is created there."""
    thesis = tmp_path / "tmp" / "cafe0123beef-notes" / "thesis.tex"
    thesis.parent.mkdir(parents=True)
    thesis.write_text("chapter 1")
    before = _snapshot(tmp_path)
    cache = CodeCache(tmp_path)
    for call in (cache.ensure, lambda: maintenance.verify(cache),
                 lambda: maintenance.clear(cache)):
        with pytest.raises(CacheError, match="not an Asp cache"):
            call()
    assert any("not an Asp cache" in p for p in maintenance.problems(cache))
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    from click.testing import CliRunner

    from asp_core.cli import cli

    result = CliRunner().invoke(cli, ["cache", "info"])
    assert result.exit_code != 0 and "not an Asp cache" in result.output
    assert _snapshot(tmp_path) == before


@requires_compiler
def test_files_asp_keeps_beside_its_entries_never_go_into_a_users_folder(tmp_path,
                                                                         monkeypatch):
    """A folder of the user's holding files named as Asp's (perf.sqlite, toolchains.json,
    hardware.json): a kernel compiles into a private cache, with one warning, and the tuning
    database and probe memos go there too; the user's files stay byte for byte."""
    import sqlite3

    from asp_core import CacheWarning
    from asp_core.autotune import PerfDB
    from asp_core.cache import cache_file

    con = sqlite3.connect(tmp_path / "perf.sqlite")
    con.execute("CREATE TABLE mydata (x)")
    con.commit()
    con.close()
    for name in ("toolchains.json", "hardware.json", "notes.txt"):
        (tmp_path / name).write_text('{"mine": true}')
    before = _snapshot(tmp_path)
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    with pytest.warns(CacheWarning, match="not an Asp cache.*private temporary cache"):
        lib = compile_library(SRC, name="twice", openmp=False)
    assert tmp_path not in lib.path.parents
    assert tmp_path not in PerfDB().path.parents
    assert tmp_path not in cache_file("toolchains.json").parents
    assert _snapshot(tmp_path) == before


@requires_compiler
def test_the_private_cache_is_asps_from_its_first_memo(tmp_path):
    """In a new process whose ASP_CACHE_DIR is a user's folder, the toolchain memo went into the
    private cache before anything marked it, so the private cache was refused in turn and every
    kernel ran in Python."""
    (tmp_path / "notes.txt").write_text("mine")
    code = ("import warnings\nwarnings.simplefilter('error', SyntaxWarning)\n"
            "from asp_core.build import compile_library\n"
            f"print(compile_library({SRC!r}, name='twice', openmp=False).path)\n")
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                         text=True, env=_env(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("CacheWarning") == 1 and "not an Asp cache" in out.stderr
    assert str(tmp_path) not in out.stdout and (tmp_path / "notes.txt").read_text() == "mine"


def test_a_new_cache_first_used_by_many_threads_is_asps(tmp_path):
    """Threads racing to make a new cache saw one another's half-written marker, or code/ made
    by a thread that had just marked it, and took the folder for a user's."""
    import threading

    for attempt in range(20):
        root = tmp_path / f"c{attempt}"
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def use(root: Path = root, errors: list = errors, start: threading.Barrier = start
                ) -> None:
            start.wait()
            try:
                CodeCache(root).ensure()
            except CacheError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=use) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        assert CodeCache(root).is_marked() and sorted(p.name for p in root.iterdir()) == [
            "CACHEDIR.TAG", "code", "locks", "tmp"]



def test_verify_and_clear_do_not_follow_a_symlinked_tmp(fresh_cache, tmp_path):
    """A cache whose ``tmp`` (or a folder in it) is a link to a user's folder: ``verify``
    removed the folders there whose names looked like builds ("2 bad entries removed")."""
    cache = CodeCache(fresh_cache)
    cache.ensure()
    user = tmp_path / "user"
    kept = [user / "0123456789ab-abcdefgh", user / "stale-0123456789ab-01234567"]
    for folder in kept:
        folder.mkdir(parents=True)
        (folder / "data").write_text("mine")
    (fresh_cache / "tmp").rmdir()
    (fresh_cache / "tmp").symlink_to(user, target_is_directory=True)
    assert cache.leftovers() == []
    maintenance.verify(cache)
    maintenance.clear(cache)
    (fresh_cache / "tmp").unlink()
    (fresh_cache / "tmp").mkdir()
    (fresh_cache / "tmp" / "0123456789ab-linked12").symlink_to(kept[0], target_is_directory=True)
    assert cache.leftovers() == []
    maintenance.verify(cache)
    assert all((folder / "data").read_text() == "mine" for folder in kept)


def test_removal_that_fails_is_an_error_and_one_gone_meanwhile_is_not_counted(fresh_cache,
                                                                               monkeypatch):
    """``clear`` on a read-only cache reported "removed 1 entries"; ``verify`` counted builds
    that finished (were published) while it ran as removed."""
    import shutil

    cache = CodeCache(fresh_cache)
    cache.ensure()
    gone = fresh_cache / "tmp" / "0123456789ab-abcdefgh"
    stuck = fresh_cache / "tmp" / "0123456789ab-stuck123"
    stuck.mkdir()
    assert cache.leftovers() == [stuck]

    def rmtree(path, onerror=None, onexc=None):   # what a read-only file system answers
        (onexc or onerror)(os.unlink, str(path / "f"), PermissionError(13, "Read-only"))

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    with pytest.raises(CacheError, match="could not remove 1 of 1 .*Read-only"):
        maintenance.clear(cache)
    monkeypatch.undo()
    assert maintenance._remove([gone, stuck]) == [stuck] and not stuck.exists()


def test_a_cache_location_that_cannot_be_looked_at_is_a_cache_error(tmp_path):
    with pytest.raises(CacheError, match="cannot be used: .*File name too long"):
        CodeCache(tmp_path / ("x" * 300)).check_root()


def test_uncreatable_cache_dir_is_a_cache_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheError, match="cannot create the Asp cache directory"):
        CodeCache(blocker / "sub").ensure()


# -- warm starts --------------------------------------------------------------------------------
@requires_compiler
def test_warm_start_in_new_process_hits_cache_and_stored_winner(fresh_cache):
    first = _run(fresh_cache, "--calls", "12")
    assert first["ok"] and first["bound"] == "function"
    assert sorted(c["variant"] for c in first["compiles"]) == ["parallel-simd", "serial"]
    assert [c["cached"] for c in first["compiles"]] == [False, False]
    assert first["autotune"][-1]["source"] == "tuned now"
    winner = first["autotune"][-1]["winner"]
    stamps = {p: p.stat().st_mtime_ns for e in _entries(fresh_cache) for p in e.iterdir()}
    second = _run(fresh_cache, "--calls", "1")
    assert second["ok"] and second["bound"] == "function"  # no tuning in this process
    assert second["autotune"] == [{"winner": winner, "source": "perf database"}]
    assert [(c["variant"], c["cached"]) for c in second["compiles"]] == [(winner, True)]
    assert {p: p.stat().st_mtime_ns for e in _entries(fresh_cache) for p in e.iterdir()} == stamps


@requires_compiler
@pytest.mark.parametrize("tamper", ["no-files-listed", "library-not-listed", "extra-file",
                                    "wrong-key", "files-not-a-dict", "path-escape"])
def test_meta_that_does_not_cover_the_entry_is_rejected(fresh_cache, tamper):
    lib = compile_library(SRC, name="twice", openmp=False)
    entry = lib.path.parent
    meta = json.loads((entry / "meta.json").read_text())
    if tamper == "no-files-listed":
        meta["files"] = {}
    elif tamper == "library-not-listed":
        del meta["files"]["libtwice.so"]
    elif tamper == "extra-file":
        (entry / "libevil.so").write_bytes(b"\x7fELF")
    elif tamper == "wrong-key":
        meta["key"] = "0" * 64
    elif tamper == "files-not-a-dict":
        meta["files"] = 7
    else:
        meta["files"]["../../escape"] = meta["files"].pop("twice.c")
    (entry / "meta.json").write_text(json.dumps(meta))
    assert CodeCache(fresh_cache).lookup(lib.key) is None
    rebuilt = compile_library(SRC, name="twice", openmp=False)
    assert not rebuilt.cached and CodeCache(fresh_cache).lookup(lib.key) is not None


def test_clear_removes_an_entry_only_under_the_lock_compiles_take(fresh_cache):
    """`asp cache clear` removed entries without the lock a compile takes to write one: a
    compile publishing that entry meanwhile lost its files or failed on a folder emptied under
    it. Clear now waits for the compile, then removes what it published."""
    import threading

    cache, key, entry = _one_entry(fresh_cache, "clear under the lock")
    holding, go = threading.Event(), threading.Event()
    done: dict = {}

    def hold_the_lock() -> None:   # what a compile of the entry holds while it writes it
        with cache.entry_lock(entry.path.name):
            holding.set()
            assert go.wait(60)
            done["seen"] = (entry.path / "libk.so").read_bytes()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(60)
    clearing = threading.Thread(target=lambda: done.setdefault("cleared",
                                                                 maintenance.clear(cache)))
    clearing.start()
    clearing.join(0.5)   # time to remove it unlocked
    go.set()
    holder.join(60)
    clearing.join(60)
    assert done["seen"] == b"first"    # untouched while the lock was held
    assert done["cleared"] == 1 and not entry.path.exists()


@requires_compiler
def test_an_entry_removal_cut_off_half_way_is_cleaned_up_later(fresh_cache, monkeypatch):
    """``asp cache clear`` killed after an entry's marker went but before its folder did left a
    folder neither ``verify`` nor ``clear`` recognised as Asp's, for good: an entry is moved
    aside in one rename first, and what is left of it is a leftover they remove."""
    import shutil

    from asp_core.build import compile_library

    lib = compile_library("int asp_cut(void) { return 4; }\n", name="cut", openmp=False)
    cache = CodeCache(fresh_cache)
    real_rmtree = shutil.rmtree

    def killed(path, *args, **kwargs):   # the marker goes, then the process is killed
        (Path(path) / ENTRY_MARKER).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        maintenance.clear(cache)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert not lib.path.parent.exists()
    good, removed = maintenance.verify(cache)
    assert good == [] and len(removed) == 1 and removed[0].name.startswith("stale-")
    assert [p for p in fresh_cache.rglob("*") if p.is_file() and "code" in p.parts] == []


@requires_compiler
def test_clear_removes_entries_when_tmp_was_removed_by_hand(fresh_cache):
    """Moving an entry aside into a tmp/ the user had removed failed, and clear reported
    "removed 0 entries", leaving it."""
    import shutil

    from asp_core.build import compile_library

    lib = compile_library("int asp_notmp(void) { return 4; }\n", name="notmp", openmp=False)
    shutil.rmtree(fresh_cache / "tmp")
    assert maintenance.clear(CodeCache(fresh_cache)) == 1
    assert not lib.path.parent.exists()

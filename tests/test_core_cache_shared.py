"""What Asp keeps under ``ASP_CACHE_DIR`` besides its entries: another tool's cache tag, a cache
removed while a process uses it, tuning results from another machine, a damaged tuning database."""

from __future__ import annotations

import os
import shutil
import warnings

import pytest

from asp_core import CacheError
from asp_core.autotune import Autotuner, PerfDB
from asp_core.cache import CodeCache
from asp_core.cli import maintenance

OTHER_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
             "# This file is a cache directory tag created by another tool.\n")


def test_another_tools_cachedir_tag_is_neither_overwritten_nor_taken_for_asps(tmp_path):
    """A folder holding only another tool's CACHEDIR.TAG is that tool's: Asp overwrote the tag
    with its own and made the folder its cache."""
    root = tmp_path / "other-tool-cache"
    root.mkdir()
    (root / "CACHEDIR.TAG").write_text(OTHER_TAG)
    with pytest.raises(CacheError, match="not an Asp cache"):
        CodeCache(root).ensure()
    with pytest.raises(CacheError, match="not an Asp cache"):
        maintenance.verify(CodeCache(root))
    assert os.listdir(root) == ["CACHEDIR.TAG"]
    assert (root / "CACHEDIR.TAG").read_text() == OTHER_TAG



def test_the_marker_reaches_the_disk_before_its_name(tmp_path, monkeypatch):
    """The marker is flushed to the disk before it is renamed into place: a power cut between
    the two left an empty CACHEDIR.TAG, which locked the user out of their cache."""
    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    def replace(src, dst):
        synced.append(f"rename {os.path.basename(dst)}")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    root = tmp_path / "cache"
    CodeCache(root).ensure()
    assert [os.path.basename(s).split(".")[0] for s in synced] == [
        "CACHEDIR", "rename CACHEDIR", "cache"]


def test_an_empty_marker_is_named_and_the_folder_left_alone(tmp_path):
    """An empty CACHEDIR.TAG (a crash cut it short) is not taken for Asp's, since no tool's
    tag is empty, but the refusal says what is wrong and how to get the cache back."""
    root = tmp_path / "cache"
    CodeCache(root).ensure()
    (root / "CACHEDIR.TAG").write_text("")
    with pytest.raises(CacheError, match=r"CACHEDIR.TAG is empty .*your Asp cache, remove it"):
        CodeCache(root).ensure()
    assert sorted(os.listdir(root)) == ["CACHEDIR.TAG", "code", "locks", "tmp"]

def _tune(db: PerfDB | None = None) -> Autotuner:
    tuner = Autotuner("k", ["a", "b"], mode="once", db=db)
    tuner.tune(lambda name: {"a": 1.0, "b": 2.0}[name])
    return tuner


def test_a_cache_removed_while_a_tuner_runs_is_made_again_as_asps(fresh_cache):
    """The tuner stores its winner many calls after it looked for one: the cache directory
    removed meanwhile was made again holding only perf.sqlite, without Asp's marker, and from
    then on every process refused it as a user's folder."""
    tuner = Autotuner("k", ["a", "b"], mode="once")  # looks for a stored winner: makes the cache
    assert CodeCache(fresh_cache).is_marked()
    shutil.rmtree(fresh_cache)
    tuner.tune(lambda name: {"a": 1.0, "b": 2.0}[name])
    CodeCache(fresh_cache).ensure()  # still Asp's
    assert CodeCache(fresh_cache).is_marked() and PerfDB().winner("k") == "a"


def test_a_cache_removed_during_a_compiler_probe_is_made_again_as_asps(fresh_cache):
    """The same for the toolchain memo written after a probe of a few seconds."""
    from asp_core.toolchain import _disk_memo

    def probe() -> str:
        shutil.rmtree(fresh_cache)
        return "probed"

    assert _disk_memo("probe", "/no/such/cc", 1.0, probe) == "probed"
    CodeCache(fresh_cache).ensure()
    assert CodeCache(fresh_cache).is_marked()


@pytest.mark.parametrize("change", ["cpu", "asp-version", "compiler"])
def test_a_winner_tuned_elsewhere_is_not_reused(tmp_path, monkeypatch, change):
    """A home directory (and so the cache) shared by nodes of different CPUs, or a compiler or
    Asp upgrade: the tuning keys name the kernel and its inputs only, so the winner timed on
    the other CPU, compiler or version was taken as this one's."""
    from asp_core import _version, hardware

    db = PerfDB(tmp_path / "perf.sqlite")
    monkeypatch.setattr(hardware, "cpu_model", lambda: "Vendor CPU A")
    _tune(db)
    assert Autotuner("k", ["a", "b"], mode="once", db=db).source == "perf database"
    assert db.summary() == [("k", "", "a")]
    if change == "cpu":
        monkeypatch.setattr(hardware, "cpu_model", lambda: "Vendor CPU B")
    elif change == "asp-version":
        monkeypatch.setattr(_version, "__version__", _version.__version__ + ".post1")
    else:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            pytest.skip("no C compiler to name")
        (tmp_path / "bin").mkdir()   # another file (a link to the same one is one compiler)
        (tmp_path / "bin" / "other-cc").write_text(f'#!/bin/sh\nexec "{cc}" "$@"\n')
        (tmp_path / "bin" / "other-cc").chmod(0o755)
        monkeypatch.setenv("ASP_CC", str(tmp_path / "bin" / "other-cc"))
    again = Autotuner("k", ["a", "b"], mode="once", db=db)
    assert not again.done and db.winner("k") is None and db.summary() == []


def _damage_past_the_first_page(path) -> None:
    """Overwrite every page but the first (the schema): opening works, reading does not."""
    db = PerfDB(path)
    for i in range(200):
        db.record_many(f"k{i}", [("v" * 200, 1.0, {"x": "y" * 300})], "l" * 100, winner="v")
    size = path.stat().st_size
    assert size > 8 * 4096 and not os.path.exists(f"{path}-wal")
    with open(path, "r+b") as fh:
        for offset in range(4096, size, 4096):
            fh.seek(offset)
            fh.write(b"\xff" * 4096)


def test_a_tuning_database_damaged_past_its_first_page_is_set_aside(tmp_path):
    """Damage that opening does not see ("database disk image is malformed" on the first
    read) was only warned about, in every process for good: no winner was ever stored again,
    and `asp cache clear --perf` failed on it."""
    path = tmp_path / "perf.sqlite"
    _damage_past_the_first_page(path)
    db = PerfDB(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert db.winner("k1") is None
        db.set_winner("k", "a")
        assert db.winner("k") == "a"
    assert any(p.name.startswith("perf.sqlite.corrupt-") for p in tmp_path.iterdir())

    _damage_past_the_first_page(path)
    PerfDB(path).clear()  # the damaged file is moved aside: nothing is left to clear
    assert PerfDB(path).winner("k") is None and PerfDB(path).summary() == []


def test_damaged_tuning_databases_set_aside_are_bounded_listed_and_cleared(fresh_cache):
    """Each process that met a damaged perf.sqlite set it aside as ``perf.sqlite.corrupt-PID-
    TIME`` (with its ``-wal`` and ``-shm``) and none was ever removed: they piled up without
    bound, `asp cache info` did not mention them and `asp cache clear --perf` left them.  Only
    the newest is kept now; `info` lists it and `clear --perf` removes it.  Files of any other
    name are Asp's to leave alone."""
    from click.testing import CliRunner

    from asp_core.cli import cli

    CodeCache(fresh_cache).ensure()
    for pid, when in [(11, 1700000000), (22, 1700000100), (33, 1600000000)]:
        for suffix in ("", "-wal", "-shm"):
            (fresh_cache / f"perf.sqlite.corrupt-{pid}-{when}{suffix}").write_bytes(b"old")
    foreign = ["other.sqlite.corrupt-1-2", "perf.sqlite.corrupt-1-2.bak",
               "perf.sqlite.corrupt-notes"]
    for name in foreign:
        (fresh_cache / name).write_text("not Asp's")
    (fresh_cache / "perf.sqlite").write_bytes(b"\0garbage" * 512)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PerfDB().winner("k") is None   # set aside: a new database starts afresh
        PerfDB().set_winner("k", "a")

    def corrupt() -> list[str]:
        return sorted(p.name for p in fresh_cache.iterdir() if ".corrupt-" in p.name)

    newest = [n for n in corrupt() if n not in foreign]
    assert len(newest) == 1 and newest[0].startswith(f"perf.sqlite.corrupt-{os.getpid()}-")
    out = CliRunner().invoke(cli, ["cache", "info"], catch_exceptions=False).output
    assert f"damaged tuning databases set aside: 1 (newest: {newest[0]};" in out
    assert "autotuned kernels: 1" in out
    result = CliRunner().invoke(cli, ["cache", "clear", "--perf"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert corrupt() == sorted(foreign) and PerfDB().winner("k") is None
    assert "set aside" not in CliRunner().invoke(cli, ["cache", "info"]).output


@pytest.mark.parametrize("args", [("cache", "info"), ("cache", "clear", "--perf")])
def test_asp_cache_commands_do_not_create_a_missing_cache(tmp_path, monkeypatch, args):
    """Looking for the tuning results made the cache: `asp cache info` with a mistyped
    ASP_CACHE_DIR created that directory (and its parents) as an Asp cache."""
    from click.testing import CliRunner

    from asp_core.cli import cli

    missing = tmp_path / "typo" / "asp-cache"
    monkeypatch.setenv("ASP_CACHE_DIR", str(missing))
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "typo").exists()

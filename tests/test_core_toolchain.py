"""Toolchain detection, compiler identity and the on-disk probe cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from asp_core import CompileError, CompilerNotFound
from pytest_asp import requires_compiler
from asp_core.cli.doctor import available_toolchains
from asp_core.toolchain import INSTALL_HINT, Toolchain, find_toolchain


def test_missing_compiler_says_how_to_install(monkeypatch):
    monkeypatch.setenv("ASP_CC", "/nonexistent/cc")
    with pytest.raises(CompilerNotFound) as info:
        find_toolchain("c")
    assert "$ASP_CC" in str(info.value) and INSTALL_HINT["c"] in str(info.value)
    assert isinstance(available_toolchains()["c"], str)


def test_unknown_language():
    with pytest.raises(ValueError, match="unknown language 'fortran'"):
        find_toolchain("fortran")


@requires_compiler
def test_c_toolchain_flags_and_identity(fresh_cache, monkeypatch):
    tc = find_toolchain("c")
    assert "-ffp-contract=off" in tc.flags and "-fPIC" in tc.flags
    assert tc.family in ("gcc", "clang") and tc.version
    cmd = tc.command(fresh_cache / "k.c", fresh_cache / "libk.so", flags=("-DX=1",))
    assert cmd[-1] == "-lm" and "-shared" in cmd and "-DX=1" in cmd
    assert ("-fopenmp" in cmd) == tc.has_openmp
    assert "-fopenmp" not in tc.command(fresh_cache / "k.c", fresh_cache / "k.o", openmp=False)
    monkeypatch.setenv("ASP_CFLAGS", "-DASP_EXTRA=1")
    extra = find_toolchain("c")
    assert extra.extra_flags == ("-DASP_EXTRA=1",) and extra.abi_id() != tc.abi_id()


@requires_compiler
def test_compile_error_carries_log(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.raises(CompileError) as info:
        find_toolchain("c").compile("this is not C\n", tmp_path, name="bad")
    assert info.value.log and "command:" in str(info.value)
    # the build directory goes with a failed build: the report names a copy that stays
    kept = Path(info.value.source_path)
    assert kept.name.startswith("asp-failed-bad-") and kept.read_text() == "this is not C\n"
    # one file per source, not per failure (they filled the temporary directory)
    with pytest.raises(CompileError) as again:
        find_toolchain("c").compile("this is not C\n", tmp_path, name="bad")
    assert Path(again.value.source_path) == kept
    assert sorted(p.name for p in kept.parent.glob("asp-failed-bad-*")) == [kept.name]
    kept.unlink()


def test_compiler_output_that_is_not_utf8_is_kept_in_the_log(tmp_path):
    """A compiler printing in another locale's encoding: the log keeps it, replaced."""
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\nprintf 'erreur: \\351\\n' >&2\nexit 1\n")
    fake.chmod(0o755)
    tc = Toolchain("c", str(fake), "gcc", "12", ())
    with pytest.raises(CompileError) as info:
        tc.compile("int x;\n", tmp_path, name="latin1")
    assert "erreur: \ufffd" in info.value.log
    Path(info.value.source_path).unlink()


@requires_compiler
def test_asp_cflags_are_split_as_a_shell_does(monkeypatch):
    monkeypatch.setenv("ASP_CFLAGS", "-DNAME='a b' -O2")
    assert find_toolchain("c").extra_flags == ("-DNAME=a b", "-O2")


@requires_compiler
def test_probe_is_remembered_on_disk(fresh_cache, monkeypatch):
    from asp_core import toolchain

    toolchain._probe.cache_clear()  # probed earlier in this process: forget it
    toolchain._openmp_works.cache_clear()
    find_toolchain("c")
    data = json.loads((fresh_cache / "toolchains.json").read_text())
    assert any(k.startswith("version:c|") for k in data)
    toolchain._probe.cache_clear()
    toolchain._openmp_works.cache_clear()
    def no_subprocess(*a, **k):
        raise AssertionError("the compiler was probed again")

    monkeypatch.setattr(toolchain, "run_tool", no_subprocess)   # how the probes run it
    assert find_toolchain("c").version


@requires_compiler
@pytest.mark.parametrize("content", ["[1, 2]", '{"version:c|x": "y"}', "not json"])
def test_malformed_probe_file_is_ignored(fresh_cache, content):
    from asp_core import toolchain
    from asp_core.cache import CodeCache

    CodeCache(fresh_cache).ensure()
    (fresh_cache / "toolchains.json").write_text(content)
    toolchain._probe.cache_clear()
    toolchain._openmp_works.cache_clear()
    try:
        assert find_toolchain("c").version
    finally:
        toolchain._probe.cache_clear()
        toolchain._openmp_works.cache_clear()
        os.remove(fresh_cache / "toolchains.json")


@requires_compiler
def test_a_passing_openmp_failure_is_not_remembered(fresh_cache, monkeypatch):
    """One OpenMP test compile that fails (killed on a loaded machine) must not make every later
    library of this cache build without OpenMP: the probe tries again before it records."""
    from asp_core import toolchain

    real = toolchain._build_probe
    calls: list[list[str]] = []

    def fails_once(executable, flags, source, suffix):
        calls.append(flags)
        if flags == ["-fopenmp"] and flags in calls[:-1]:
            return real(executable, flags, source, suffix)
        return "killed (signal 9)" if flags == ["-fopenmp"] else real(executable, flags, source,
                                                                       suffix)

    monkeypatch.setattr(toolchain, "_build_probe", fails_once)
    toolchain._openmp_works.cache_clear()
    try:
        assert find_toolchain("c").has_openmp
        data = json.loads((fresh_cache / "toolchains.json").read_text())
        assert [v for k, v in data.items() if k.startswith("openmp-so:")] == [True]
        assert calls.count(["-fopenmp"]) == 2
    finally:
        toolchain._openmp_works.cache_clear()


def test_probes_remembered_at_the_same_time_are_all_kept(fresh_cache):
    """A probe that finishes while another runs is not lost when the slower one writes."""
    import threading
    import time

    from asp_core.toolchain import _disk_memo

    def slow() -> str:
        time.sleep(0.3)
        return "slow"

    t = threading.Thread(target=_disk_memo, args=("a", "/bin/slow", 1.0, slow))
    t.start()
    time.sleep(0.05)
    _disk_memo("b", "/bin/fast", 1.0, lambda: "fast")
    t.join()
    memo = json.loads((fresh_cache / "toolchains.json").read_text())
    assert memo["a|/bin/slow|1.0"] == "slow" and memo["b|/bin/fast|1.0"] == "fast"


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc (Linux)")
def test_a_timed_out_tool_takes_what_it_started_with_it(tmp_path):
    """``ASP_COMPILE_TIMEOUT`` killed the compiler driver or wrapper only: the process doing
    the work (``cc1`` under ``gcc``, the compiler under a wrapper) ran on, reparented to init,
    after every timeout."""
    import subprocess

    from asp_core.spawn import run_tool

    pidfile = tmp_path / "worker.pid"
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    wrapper.chmod(0o755)
    with pytest.raises(subprocess.TimeoutExpired):
        run_tool([str(wrapper)], timeout=1.0)
    worker = int(pidfile.read_text())
    assert _ends(worker), "the wrapper's child outlived the timeout"


def _ends(pid: int, seconds: float = 10.0) -> bool:
    """Whether process ``pid`` is gone within ``seconds`` (it is killed asynchronously)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.05)
    return not _running(pid)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its parent's wait is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc (Linux)")
def test_a_tool_running_in_the_background_ends_with_the_process(tmp_path):
    """In a process group of its own, a compiler no longer gets the terminal's Ctrl-C: one
    running on a background thread when the main thread ends (a Ctrl-C during a first call)
    is killed at exit instead of running on, orphaned."""
    import subprocess
    import sys

    pidfile = tmp_path / "worker.pid"
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    wrapper.chmod(0o755)
    script = ("import threading, time, pathlib\nfrom asp_core.spawn import run_tool\n"
              f"threading.Thread(target=run_tool, args=([{str(wrapper)!r}],),\n"
              "                 kwargs={'timeout': 120}, daemon=True).start()\n"
              f"while not pathlib.Path({str(pidfile)!r}).exists(): time.sleep(0.01)\n"
              "raise KeyboardInterrupt\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert "KeyboardInterrupt" in proc.stderr
    worker = int(pidfile.read_text())
    assert _ends(worker), "the tool outlived the process that ran it"


def test_a_wrapper_script_is_another_compiler_in_the_cache_key(tmp_path):
    """A wrapper (``exec gcc -ffast-math "$@"``) prints the wrapped compiler's version line:
    code it built was reused by plain gcc, and differed from Python's results."""
    wrapper = tmp_path / "gcc-fastmath"
    wrapper.write_text('#!/bin/sh\nexec gcc -ffast-math "$@"\n')
    wrapper.chmod(0o755)
    plain = Toolchain("c", "/usr/bin/gcc", "gcc", "12.2.0", ("-O3",))
    wrapped = Toolchain("c", str(wrapper), "gcc", "12.2.0", ("-O3",))
    assert plain.abi_id() != wrapped.abi_id()
    link = tmp_path / "cc"
    link.symlink_to(wrapper)   # one file under two names: one compiler
    assert Toolchain("c", str(link), "gcc", "12.2.0", ("-O3",)).abi_id() == wrapped.abi_id()


def test_one_compiler_run_by_two_names_has_one_version(tmp_path, fresh_cache):
    """GCC's version line starts with the name it was run by (``cc (Debian 12.2.0-14)
    12.2.0``): ``cc`` and ``gcc``, one file, were two compilers in the cache key, and
    ``ASP_CC=gcc`` compiled again every kernel ``cc`` had compiled."""
    from asp_core.toolchain import _probe

    real = tmp_path / "gcc-12"
    real.write_text('#!/bin/sh\necho "$(basename "$0") (Debian 12.2.0-14) 12.2.0"\n'
                    'echo "This is free software; see the source for copying conditions."\n'
                    'echo "Free Software Foundation"\n')
    real.chmod(0o755)
    versions = set()
    for name in ("cc", "gcc"):
        (tmp_path / name).symlink_to(real)
        path = str(tmp_path / name)
        versions.add(_probe(path, os.stat(path).st_mtime, "c"))
    assert versions == {("gcc", "(Debian 12.2.0-14) 12.2.0")}

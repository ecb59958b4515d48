"""Hardware query sanity: cores, caches, CPU quota, GPUs."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from asp_core import hardware


def test_query_is_sane_and_cached():
    hw = hardware.query()
    assert hw is hardware.query()
    assert hw.logical_cpus == os.cpu_count()
    assert 1 <= hw.physical_cores <= hw.logical_cpus
    assert hw.memory_bytes > 64 << 20
    assert hw.cpu_model and isinstance(hw.cpu_model, str)
    assert all(isinstance(v, int) and v > 0 for v in hw.caches.values())
    assert all(k.startswith("L") for k in hw.caches)
    assert hw.last_level_cache == max(hw.caches.values(), default=8 << 20)
    assert set(hw.isa) <= set(hardware._ISA)
    assert hw.has_gpu == bool(hw.gpus)
    d = dataclasses.asdict(hw)
    assert d["logical_cpus"] == hw.logical_cpus and json.dumps(d)


def test_size_parser():
    assert hardware._size("32K") == 32 << 10
    assert hardware._size("1M\n") == 1 << 20
    assert hardware._size("") == 0 and hardware._size("abc") == 0


def _fake_smi(tmp_path, monkeypatch, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + script)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_gpus_from_nvidia_smi(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, 'echo "NVIDIA H100 80GB HBM3, 81559, 9.0"\n'
                                     'echo "NVIDIA A100-SXM4-40GB, 40960, 8.0"\n')
    gpus = hardware._gpus()
    assert gpus == [hardware.GPU("NVIDIA H100 80GB HBM3", 81559 << 20, "9.0"),
                    hardware.GPU("NVIDIA A100-SXM4-40GB", 40960 << 20, "8.0")]


@pytest.mark.parametrize("script", ["echo 'NVIDIA-SMI has failed' >&2; exit 9\n",
                                    "echo 'garbage line without fields'\n"])
def test_broken_nvidia_smi_means_no_gpu(tmp_path, monkeypatch, script):
    _fake_smi(tmp_path, monkeypatch, script)
    assert hardware._gpus() == []


def test_default_threads_honours_omp_num_threads(monkeypatch):
    """MPI launchers set OMP_NUM_THREADS=1 per rank; kernels with explicit num_threads must
    follow it (else ranks x cores threads fight for the cores)."""
    from asp_core.hardware import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")   # nested levels: the outer one counts
    assert default_threads() == 3
    for bad in ("", "0", "abc"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert default_threads() == hardware.available_cpus()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == hardware.available_cpus()



@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity API")
def test_default_threads_honours_cpu_affinity():
    """Under ``taskset -c 0`` (SLURM, mpiexec binding, containers) one CPU is all the process
    has: more threads would only oversubscribe it."""
    import subprocess
    import sys

    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from asp_core.hardware import default_threads; print(default_threads())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "1"
    assert hardware.available_cpus() <= len(os.sched_getaffinity(0))


def _cgroup(tmp_path, membership: str, files: dict[str, str]):
    for rel, text in files.items():
        path = tmp_path / "fs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "self-cgroup").write_text(membership)
    return hardware.cgroup_cpu_quota(tmp_path / "fs", tmp_path / "self-cgroup")


def test_cgroup_v2_quota_is_the_tightest_ancestor(tmp_path):
    assert _cgroup(tmp_path, "0::/job/step\n", {
        "cpu.max": "max 100000\n", "job/cpu.max": "150000 100000\n",
        "job/step/cpu.max": "max 100000\n"}) == 1.5


def test_cgroup_v1_quota(tmp_path):
    assert _cgroup(tmp_path, "4:memory:/x\n1:cpu,cpuacct:/docker/abc\n", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}) == 0.5


@pytest.mark.parametrize("membership,files", [
    ("0::/\n", {"cpu.max": "max 100000\n"}),
    ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}),
    ("", {}),
])
def test_no_cgroup_quota(tmp_path, membership, files):
    assert _cgroup(tmp_path, membership, files) is None


def test_cgroup_quota_caps_available_cpus(monkeypatch):
    monkeypatch.setattr(hardware, "process_cpu_quota", lambda: 0.3)
    assert hardware.available_cpus() == 1
    monkeypatch.setattr(hardware, "process_cpu_quota", lambda: 1000.0)
    assert hardware.available_cpus() == len(os.sched_getaffinity(0))


def test_the_process_quota_is_read_once(monkeypatch):
    """The cgroup files were read at every ``available_cpus``: four reads (0.13 ms) on every
    call of a ``MatrixPowers`` made per step, and at every new tuner."""
    reads = []
    monkeypatch.setattr(hardware, "cgroup_cpu_quota", lambda: reads.append(1) or 1.5)
    hardware.process_cpu_quota.cache_clear()
    try:
        assert [hardware.available_cpus() for _ in range(3)] == [min(2, len(
            os.sched_getaffinity(0)))] * 3
        assert reads == [1]
    finally:
        hardware.process_cpu_quota.cache_clear()


def test_cpu_list_parser():
    assert hardware._cpu_list_len("0-3,8,10-11\n") == 7
    assert hardware._cpu_list_len("") == 0


def test_cuda_probes_run_once_per_process(monkeypatch):
    from asp_core import toolchain
    from asp_core.errors import CompilerNotFound

    calls = []

    def no_nvcc(lang="c"):
        calls.append(lang)
        raise CompilerNotFound("no cuda compiler found")

    monkeypatch.setattr(toolchain, "find_toolchain", no_nvcc)
    monkeypatch.setattr(hardware, "query", lambda: hardware.HardwareInfo(
        "cpu", 1, 1, {}, (), 0, gpus=[hardware.GPU("Test GPU", 1 << 30, "9.0")]))
    hardware.nvcc_unavailable_reason.cache_clear()
    hardware.cuda_unavailable_reason.cache_clear()
    try:
        for _ in range(3):
            assert hardware.nvcc_unavailable_reason() == "no nvcc: no cuda compiler found"
            assert hardware.cuda_unavailable_reason() == \
                "nvcc not found (CUDA toolkit not installed)"
        assert calls == ["cuda"]
    finally:
        hardware.nvcc_unavailable_reason.cache_clear()
        hardware.cuda_unavailable_reason.cache_clear()

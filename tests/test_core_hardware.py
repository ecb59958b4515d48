"""Hardware query sanity and the cached STREAM measurement."""

from __future__ import annotations

import gc
import json
import os
import weakref

import numpy as np
import pytest

from asp_core import hardware
from asp_core.testing import requires_compiler


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
    d = hw.as_dict()
    assert d["logical_cpus"] == hw.logical_cpus and json.dumps(d)


def test_size_parser():
    assert hardware._size("32K") == 32 << 10
    assert hardware._size("1M\n") == 1 << 20
    assert hardware._size("") == 0 and hardware._size("abc") == 0


def test_stream_copy_is_measured_once_and_cached(fresh_cache, monkeypatch):
    calls = []

    def fake(nbytes, repeats=8):
        calls.append(nbytes)
        return 12.5

    monkeypatch.setattr(hardware, "measure_stream_copy", fake)
    hw = hardware.query()
    assert hw.stream_copy_gbs() == 12.5
    assert len(calls) == 1 and calls[0] >= 64 << 20
    stored = json.loads((fresh_cache / "hardware.json").read_text())
    assert stored["stream_copy_gbs"] == 12.5
    assert hw.stream_copy_gbs() == 12.5 and len(calls) == 1  # second call: no measurement
    assert hw.stream_copy_gbs(refresh=True) == 12.5 and len(calls) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # another configuration: measured again
    hw.stream_copy_gbs()
    assert len(calls) == 3


def test_corrupt_stream_cache_is_remeasured(fresh_cache, monkeypatch):
    monkeypatch.setattr(hardware, "measure_stream_copy", lambda nbytes, repeats=8: 3.0)
    fresh_cache.mkdir(parents=True)
    (fresh_cache / "hardware.json").write_text("{ broken")
    assert hardware.query().stream_copy_gbs() == 3.0


@requires_compiler
def test_real_stream_measurement(fresh_cache):
    gbs = hardware.measure_stream_copy(4 << 20, repeats=2)
    assert 0.1 < gbs < 10_000


@requires_compiler
def test_stream_copy_kernel_copies_and_keeps_arrays_alive(fresh_cache):
    a = np.random.default_rng(1).random(1000)
    b = np.zeros_like(a)
    kernel = hardware.stream_copy_kernel(a, b)
    kernel()
    np.testing.assert_array_equal(a, b)
    ref_a, ref_b = weakref.ref(a), weakref.ref(b)
    del a, b
    gc.collect()
    assert ref_a() is not None and ref_b() is not None  # the kernel holds what it writes to
    kernel()
    with pytest.raises(ValueError, match="C-contiguous float64"):
        hardware.stream_copy_kernel(np.zeros(4, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        hardware.stream_copy_kernel(np.zeros(4), np.zeros(5))


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
        assert default_threads() == (os.cpu_count() or 1)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == (os.cpu_count() or 1)


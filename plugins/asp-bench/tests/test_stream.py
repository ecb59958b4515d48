"""The memory roof: asp-bench's compiled STREAM copy."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from asp_bench import measure_stream_copy, stream_copy_kernel
from pytest_asp import requires_compiler


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "asp-cache"))


@requires_compiler
def test_real_stream_measurement(isolated_cache):
    gbs = measure_stream_copy(4 << 20, repeats=2)
    assert 0.1 < gbs < 10_000


@requires_compiler
def test_stream_copy_kernel_copies_and_keeps_arrays_alive(isolated_cache):
    a = np.random.default_rng(1).random(1000)
    b = np.zeros_like(a)
    kernel = stream_copy_kernel(a, b)
    kernel()
    np.testing.assert_array_equal(a, b)
    ref_a, ref_b = weakref.ref(a), weakref.ref(b)
    del a, b
    gc.collect()
    assert ref_a() is not None and ref_b() is not None  # the kernel holds what it writes to
    kernel()
    with pytest.raises(ValueError, match="C-contiguous float64"):
        stream_copy_kernel(np.zeros(4, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        stream_copy_kernel(np.zeros(4), np.zeros(5))


def test_stream_copy_kernel_without_compiler_falls_back_only_if_asked(isolated_cache, monkeypatch):
    from asp_core import build
    from asp_core.errors import CompilerNotFound

    def no_compiler(*args, **kwargs):
        raise CompilerNotFound("no C compiler")

    monkeypatch.setattr(build, "compile_library", no_compiler)
    a, b = np.arange(5.0), np.zeros(5)
    stream_copy_kernel(a, b)()  # NumPy's copy stands in
    np.testing.assert_array_equal(a, b)
    with pytest.raises(CompilerNotFound):
        stream_copy_kernel(a, b, numpy_fallback=False)

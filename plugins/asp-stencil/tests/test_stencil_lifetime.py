"""A long-lived process keeps no kernel class it no longer uses (a factory making kernel
classes, a notebook cell run again): nothing of Asp's holds them."""

from __future__ import annotations

import gc
import warnings
import weakref

import numpy as np
import pytest

from asp_core import SpecializationWarning
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.distributed import check_kernel


class _Base(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = 2.0 * u[x]


def _factory(table: np.ndarray, via_super: bool) -> type:
    if via_super:
        class Scaled(_Base):
            lookup = table

            def kernel(self, u, out):
                super().kernel(u, out)   # the function holds its class (__class__ cell)
    else:
        class Scaled(StencilKernel):     # type: ignore[no-redef]
            lookup = table

            def kernel(self, u, out):
                for x in out.interior_points():
                    out[x] = 2.0 * u[x]
    return Scaled


@pytest.mark.parametrize("mode", ["auto", "python"])
@pytest.mark.parametrize("via_super", [False, True])
def test_a_kernel_class_no_one_holds_is_freed(mode, via_super, tmp_path, monkeypatch):
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ASP_MODE", mode)
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    u, out = StencilGrid([6, 6]), StencilGrid([6, 6])
    u.data[...] = 1.5
    refs = []
    for _ in range(3):
        cls = _factory(np.ones(1000), via_super)
        with warnings.catch_warnings():   # super() is outside the DSL: it runs in Python
            warnings.simplefilter("ignore", SpecializationWarning)
            cls().kernel(u, out)
        check_kernel(cls())          # the distributed runner's check of the class
        refs.append(weakref.ref(cls))
        del cls
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    np.testing.assert_array_equal(out.data[1:-1, 1:-1], 3.0)

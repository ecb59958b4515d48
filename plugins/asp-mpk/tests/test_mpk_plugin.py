"""Registration, the DAST passes (structure checks without compiling) and `asp explain` data."""

from __future__ import annotations

import numpy as np
import pytest
from asp_core import PHASES, SpecializationContext, get_registry
from pytest_asp import requires_compiler

from asp_mpk import gallery
from asp_mpk.components import MatrixFrontend, MPKDomainOptimizer, signature
from asp_mpk.powers import MatrixPowers


def test_registered_for_every_phase():
    reg = get_registry()
    assert "mpk" in reg.specializers
    phases = reg.phases("mpk")
    for phase in PHASES:
        assert phases.get(phase), f"no component for {phase}"
    names = {c.name for c in reg.for_phase("mpk", "platform_selection")}
    assert {"openmp", "scipy"} <= names


def test_registration_module_is_light():
    import subprocess
    import sys

    # nor asp-mpk's own implementation: every stencil or GMM program's first call loads the
    # plugins, and paid about 40 ms for it
    code = ("import sys, asp_mpk.plugin; bad = [m for m in ('scipy', 'numba', 'mpi4py', "
            "'asp_mpk.powers', 'asp_mpk.cacg') if m in sys.modules]; print(bad); "
            "import asp_mpk; print(all(n in dir(asp_mpk) for n in asp_mpk.__all__)); "
            "from asp_mpk import cg, spmv; print(cg.__module__, spmv.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True", "asp_mpk.cacg", "asp_mpk.powers"]


def _ctx(mp, nvec=1, gram=False, basis="monomial", options=None):
    xs = np.zeros((nvec, mp.n))
    out = np.zeros((nvec, mp.k + 1, mp.n))
    g = np.zeros((nvec * (mp.k + 1),) * 2) if gram else None
    args = (xs, out, np.zeros((3, max(mp.k, 1))), g, basis)
    return SpecializationContext("mpk", mp._reference, args, {}, mp, options or {},
                                 signature(args, {}, mp), "test")


def test_frontend_and_passes_on_a_grid():
    mp = MatrixPowers(gallery.poisson2d(300), 8, tune=False)
    ctx = _ctx(mp)
    op = MatrixFrontend().parse(ctx)
    assert op.k == 8 and op.nvec == 1 and op.monomial and not op.gram
    assert op.matrix.offsets == (-300, -1, 0, 1, 300)
    op2 = MPKDomainOptimizer().optimize(op, ctx)
    fmts = [c.format for c in op2.candidates]
    assert fmts[0] == "dia-c" and "dia" in fmts and fmts[-1] == "naive"
    for c in op2.candidates:
        assert c.nblocks >= 1 and c.threads >= 1
    assert op2.ordering == "natural"
    # a pass can be disabled by name: without size-blocks every candidate keeps one block
    op3 = MPKDomainOptimizer().optimize(op, _ctx(mp, options={"disable_passes": ["size-blocks"]}))
    assert all(c.nblocks == 1 for c in op3.candidates)
    assert _ctx(mp).passes == []  # the reports are on the ctx that ran the passes
    assert any(r.name == "size-blocks" for r in ctx.passes)


def test_passes_on_general_sparsity_and_gram_key():
    A = gallery.unstructured_spd(3000, seed=1)
    mp = MatrixPowers(A, 4, tune=False)
    ctx = _ctx(mp, nvec=2, gram=True, basis="recurrence")
    op = MPKDomainOptimizer().optimize(MatrixFrontend().parse(ctx), ctx)
    assert op.ordering == "rcm"
    fmts = {c.format for c in op.candidates}
    assert {"csr", "csr-sym", "naive"} <= fmts and "dia" not in fmts
    assert all(c.ksplit == 0 for c in op.candidates)  # the fused Gram needs one pass
    assert signature(ctx.args, {}, mp) == (mp.pattern, mp.values, "float64", 4, 2, False, True)


@requires_compiler
def test_pipeline_records_choices_for_explain(monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    mp = MatrixPowers(gallery.poisson2d(30), 3, tune=False)
    mp.powers(np.ones(mp.n))
    ctx = mp._dispatch.last_context
    kinds = [e for e, _ in ctx.events]
    assert "variants" in kinds and "compile" in kinds and "plan" in kinds
    prog = [d for e, d in ctx.events if e == "program"][0]
    assert "mpk_dia" in prog["text"] and "#pragma omp" in prog["text"]


@requires_compiler
def test_generated_source_is_c_abi():
    from asp_mpk.kernels import render_source

    for fmt in ("dia", "csr", "naive"):
        src = render_source(fmt, "float64", monomial=False, offsets=(-1, 0, 1))
        assert "pybind" not in src and "#include <Python.h>" not in src
        assert "int mpk_" in src and "combine(" in src


@pytest.mark.parametrize("bad", [None, object()])
def test_signature_needs_the_instance(bad):
    with pytest.raises(TypeError):
        signature((np.zeros((1, 3)), np.zeros((1, 2, 3)), None, None, "monomial"), {}, bad)


def test_bench_times_the_public_call_in_a_fresh_process():
    """The benchmark's fresh-process row: SciPy, ``import asp_mpk``, then asp's first, second
    and later calls as a user writes them, in a new process with an empty cache."""
    from asp_mpk.bench import fresh_process

    got = fresh_process("gallery.poisson2d(60)", "powers", 3)
    assert {"scipy", "import", "first", "second", "steady"} <= set(got)
    assert all(got[key] > 0 for key in ("scipy", "import", "first", "second", "steady"))


def test_bench_times_first_calls_against_scipys_first_in_new_processes():
    """The first-call row: SciPy's and asp's first computation of the nine vectors, each in its
    own new process (both pay for fresh memory), as medians."""
    from asp_mpk.bench import first_calls

    got = first_calls("gallery.poisson2d(40)", rounds=1)
    assert set(got) == {"scipy", "asp"} and all(t > 0 for t in got.values())

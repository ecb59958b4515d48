"""Phases 3-5 of the mpk specializer: the platform lowers each format to its storage, the
platform optimiser gives each variant its plan and fallback and materialises them, the backend
only compiles and binds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from asp_core import AspError, SpecializationContext
from pytest_asp import requires_compiler

from asp_mpk import gallery
from asp_mpk.components import (CBackend, MatrixFrontend, MPKDomainOptimizer, OpenMPPlatform,
                                PA1Variants, signature)
from asp_mpk.dast import Candidate
from asp_mpk.powers import MatrixPowers
from asp_mpk.program import (PLAN_FALLBACK, MPKProgram, PlannedVariant, PlanSpec, Storage,
                             VariantProgram)


def _ctx(mp: MatrixPowers, nvec: int = 1, gram: bool = False, basis: str = "monomial"
         ) -> SpecializationContext:
    xs = np.zeros((nvec, mp.n), dtype=mp.dtype)
    out = np.zeros((nvec, mp.k + 1, mp.n), dtype=mp.dtype)
    g = np.zeros((nvec * (mp.k + 1),) * 2) if gram else None
    args = (xs, out, np.zeros((3, max(mp.k, 1))), g, basis)
    return SpecializationContext("mpk", mp._reference, args, {}, mp, {}, signature(args, {}, mp),
                                 "test")


def _lowered(mp: MatrixPowers, **kw: object) -> tuple[SpecializationContext, MPKProgram, list]:
    ctx = _ctx(mp, **kw)  # type: ignore[arg-type]
    op = MPKDomainOptimizer().optimize(MatrixFrontend().parse(ctx), ctx)
    program = OpenMPPlatform().lower(op, ctx)
    return ctx, program.ir, PA1Variants().variants(program, ctx)


def test_platform_lowers_each_format_to_its_storage():
    _, prog, _ = _lowered(MatrixPowers(gallery.poisson2d(300), 8, tune=False))
    assert list(prog.storage) == list(dict.fromkeys(c.format for c in prog.op.candidates))
    assert prog.storage["dia-c"] == Storage("dia-c", "dia", compress=True)
    assert prog.storage["dia"] == Storage("dia", "dia")
    assert prog.storage["naive"] == Storage("naive", "naive")
    text = str(prog)
    assert "dia-c: dia kernel, constant diagonals as masks" in text and "int mpk_dia" in text

    _, prog, _ = _lowered(MatrixPowers(gallery.unstructured_spd(3000, seed=1), 4, tune=False))
    assert prog.storage["csr"] == Storage("csr", "csr")
    assert prog.storage["csr-sym"] == Storage("csr-sym", "csr", sym=True)
    assert Storage.of("bcsr3") == Storage("bcsr3", "csr", block=3)
    with pytest.raises(ValueError, match="unknown"):
        prog.source(Storage.of("ell"))


def test_variants_carry_their_plan_and_fallback():
    _, prog, variants = _lowered(MatrixPowers(gallery.poisson2d(300), 8, tune=False))
    for v in variants:
        ir = v.program.ir
        assert isinstance(ir, VariantProgram) and ir.program is prog and ir.name == v.name
        assert ir.fallback is None   # DIA and naive plans cannot fail
        if ir.storage.template == "dia":
            assert ir.plan == PlanSpec("dia", nblocks=v.params["nblocks"],
                                       offsets=(-300, -1, 0, 1, 300),
                                       compress=ir.storage.compress)
    mp = MatrixPowers(gallery.unstructured_spd(3000, seed=1), 8, tune=False)
    ctx, _, variants = _lowered(mp)
    shown = [d["text"] for e, d in ctx.events
             if e == "program" and d["platform"] == "openmp variants"]   # for asp explain
    assert len(shown) == 1 and all(v.name in shown[0] for v in variants)
    assert "ghost closures" in shown[0] and "exceed 4x nnz: naive" in shown[0]
    csr = [v.program.ir for v in variants if v.params["format"] == "csr"]
    assert csr
    for ir in csr:
        ks = ir.ksplit or 8
        assert ir.plan.levels == tuple(sorted({ks} | ({8 % ks} if 8 % ks else set())))
        assert ir.plan.ordering == "rcm" and ir.plan.template == "csr"
        assert ir.fallback is not None and ir.fallback.storage == Storage.of("naive")
        assert ir.fallback.threads == ir.threads and ir.fallback.name == ir.name


@requires_compiler
def test_phase_4_materialises_the_fallback_when_closures_are_too_large(monkeypatch):
    """On an expander graph every ghost closure is the whole matrix: phase 4 materialises the
    variant's declared fallback (the naive kernel) instead, the decision is a typed record,
    and the backend builds what it was given."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    n = 20000
    R = sp.random(n, n, density=5 / n, random_state=np.random.default_rng(0), format="csr")
    A = (R + R.T + sp.identity(n) * 20).tocsr()
    mp = MatrixPowers(A, 4, tune=False)
    ctx = _ctx(mp)
    op = MatrixFrontend().parse(ctx).replace(candidates=[Candidate("csr", nblocks=8, threads=1)])
    program = OpenMPPlatform().lower(op, ctx)
    (variant,) = PA1Variants().variants(program, ctx)
    with pytest.raises(AspError, match="planned variants"):
        CBackend().build(variant, ctx)   # the backend plans nothing itself
    planned = PA1Variants().materialise(variant, ctx)
    decision = ctx.decision(PLAN_FALLBACK)
    assert decision is not None and decision.params["variant"] == variant.name
    assert decision.choice == "naive"
    assert "ghost closures" in decision.reason
    ir = planned.program.ir
    assert isinstance(ir, PlannedVariant) and ir.variant.storage == Storage.of("naive")
    assert planned.name == variant.name and planned.params == variant.params
    kern = CBackend().build(planned, ctx)
    assert kern.fmt == "naive" and kern.name == variant.name and kern.nthreads == 1
    x = np.random.default_rng(1).standard_normal(n)
    out = np.empty((1, 5, n))
    coefs = np.zeros((3, 4))
    coefs[0] = 1.0
    kern(x[None].copy(), out, coefs, None, "monomial")
    np.testing.assert_allclose(out[0, 4], A @ (A @ (A @ (A @ x))), rtol=1e-12)


def test_matrix_powers_and_cg_share_one_analysed_matrix(monkeypatch):
    import asp_mpk
    from asp_mpk import matrix

    monkeypatch.setenv("ASP_MODE", "python")   # what is cached, not what runs

    matrix.clear_matrices()
    A = gallery.poisson2d(30)
    b = np.ones(A.shape[0])
    asp_mpk.matrix_powers(A, b, 4)
    asp_mpk.cg(A, b, s=4)
    assert matrix.analysed(A) is matrix.analysed(A, np.float64)
    assert matrix.analysed(A).powers(4) is matrix.analysed(A, np.float64).powers(4)
    assert matrix.analysed(A) is not matrix.analysed(A, np.float32)

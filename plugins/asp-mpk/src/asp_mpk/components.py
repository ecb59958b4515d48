"""The five phase components of the ``mpk`` specializer, registered by :mod:`asp_mpk.plugin`.

frontend ``matrix`` (matrix description + call shapes → :class:`MatrixPowersOp`) → domain
passes (``order-rows``, ``choose-formats``, ``size-blocks``) → platform ``openmp`` (generated C,
needs a compiler: each candidate format lowered to its storage and kernel template) or ``scipy``
(repeated ``A @ x``, always available) → platform optimiser ``pa1-variants`` (one variant per
format/block count/k-split/thread count, each with its plan parameters and fallback; see
:mod:`asp_mpk.program`; a variant's plan is materialised by its ``materialise`` just before
it is built) → backend ``c`` (``ctx.compile``, ctypes) or ``scipy``.

The kernel's call arguments are ``(xs, out, coefs, gram, basis)`` (see
:class:`asp_mpk.powers.MatrixPowers`); ``ctx.instance`` is the ``MatrixPowers`` object that owns
the validated CSR matrix and its analysis.
"""

from __future__ import annotations

import math
import weakref
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable

from asp_core.decisions import VARIANT
from asp_core import (AspError, Backend, DomainOptimizer, Frontend, PassManager, Platform,
                      PlatformOptimizer, PlatformProgram, Variant)

from asp_mpk.dast import Candidate, MatrixPowersOp, MatrixStructure
from asp_mpk.passes import DEFAULT_PASSES
from asp_mpk.program import (PLAN_FALLBACK, MPKProgram, PlannedVariant, ReferenceProgram,
                             VariantProgram, variant_program)

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

    from asp_mpk.kernels import CKernel
    from asp_mpk.powers import MatrixPowers

__all__ = ["MatrixFrontend", "MPKDomainOptimizer", "OpenMPPlatform", "ScipyPlatform",
           "PA1Variants", "CBackend", "ScipyBackend", "signature", "tuning_key", "half_octave"]


def signature(args: tuple, kwargs: dict, instance: Any) -> tuple:
    """Specialisation key: pattern, values, dtype, k, nvec, basis kind, Gram wanted."""
    xs, out, coefs, gram, basis = (tuple(args) + (None,) * 5)[:5]
    if instance is None or not hasattr(instance, "pattern"):
        raise TypeError("the mpk kernel is called through asp_mpk.MatrixPowers")
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError("out must be an (nvec, k+1, n) array")
    return (instance.pattern, instance.values, str(instance.dtype), shape[1] - 1, shape[0],
            basis == "monomial", gram is not None)


def half_octave(x: float) -> int:
    """``x`` on a half-octave scale (sizes within ~40 % share a bucket): the size class
    tuning winners are kept under."""
    return int(round(2 * math.log2(max(float(x), 1.0))))


def tuning_key(args: tuple, kwargs: dict, instance: Any) -> tuple:
    """Key under which tuning winners are stored: the matrix's structure class (format,
    diagonal count, how many are constant, symmetry and whether values vary, or symmetry,
    dense blocks and nonzeros per row; bandwidth and size in half-octaves) and the call kind,
    not the exact matrix, so a new matrix of a known kind starts with the winner (variant
    names do not depend on n)."""
    sig = signature(args, kwargs, instance)
    st = instance.structure
    if st.offsets is not None:   # (constants compiled in or not: other variants win)
        kind: tuple = ("dia", len(st.offsets), st.dia_compressible, st.symmetric,
                       half_octave(st.bandwidth), instance.matrix.values_vary)
    else:
        kind = ("csr", st.symmetric, st.bcsr[:1], round(st.nnz / max(st.n, 1)),
                half_octave(st.rcm_bandwidth or st.bandwidth))
    return (kind, half_octave(st.n), *sig[2:])


class MatrixFrontend(Frontend):
    """Phase 1: the matrix description and the call's shapes become a MatrixPowersOp."""

    def parse(self, ctx: SpecializationContext) -> MatrixPowersOp:
        mp = ctx.instance
        st = mp.structure
        xs, out, coefs, gram, basis = ctx.args[:5]
        ms = MatrixStructure(st.n, st.nnz, st.pattern, st.symmetric, st.bandwidth, st.offsets,
                             round(st.dia_fill, 4), st.rcm_bandwidth, st.dia_compressible,
                             st.bcsr, values_vary=mp.matrix.values_vary)
        return MatrixPowersOp(ms, str(mp.dtype), out.shape[1] - 1, out.shape[0],
                              basis == "monomial", gram is not None)


class MPKDomainOptimizer(DomainOptimizer):
    """Phase 2: the named domain passes (each can be disabled by name)."""

    def __init__(self) -> None:
        self.manager = PassManager("mpk-domain", list(DEFAULT_PASSES))

    def optimize(self, dast: MatrixPowersOp, ctx: SpecializationContext) -> MatrixPowersOp:
        dast = self.manager.run(dast, ctx)
        if not dast.candidates:  # every format pass disabled: the baseline still works
            dast = dast.replace(candidates=[Candidate("naive", threads=0)])
        return dast


class OpenMPPlatform(Platform):
    """Phase 3: generated C with OpenMP (needs a C compiler); lowers each candidate format to
    its storage and kernel template (:class:`~asp_mpk.program.MPKProgram`)."""

    name = "openmp"
    compiler = "c"

    def check(self, dast: MatrixPowersOp, ctx: SpecializationContext) -> str | None:
        from asp_core.toolchain import compiler_unavailable_reason

        return compiler_unavailable_reason("c")

    def lower(self, dast: MatrixPowersOp, ctx: SpecializationContext) -> PlatformProgram:
        return PlatformProgram("openmp", MPKProgram.lower(dast), {"ordering": dast.ordering})


class ScipyPlatform(Platform):
    """Phase 3: repeated ``A @ x`` in SciPy (always available; the reference semantics)."""

    name = "scipy"

    def lower(self, dast: MatrixPowersOp, ctx: SpecializationContext) -> PlatformProgram:
        return PlatformProgram("scipy", ReferenceProgram(dast), {})


def _variant_name(c: Candidate) -> str:
    name = f"{c.format}-{c.sizing or f'b{c.nblocks}'}" if c.format != "naive" else "naive"
    if c.ksplit:
        name += f"-ks{c.ksplit}"
    if c.threads == 1:
        name += "-t1"
    if c.nt:
        name += "-nt"
    return name


class PA1Variants(PlatformOptimizer):
    """Phase 4: one variant per candidate (default: the first, a cache-sized PA1 when any),
    each a :class:`~asp_mpk.program.VariantProgram`: storage, plan parameters, threads,
    k-split and the fallback used when its plan cannot be built."""

    platforms = ("openmp",)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        mpk: MPKProgram = program.ir
        op = mpk.op
        out: list[Variant] = []
        seen: set[str] = set()
        for c in op.candidates:
            name = _variant_name(c)
            if name in seen:
                continue
            seen.add(name)
            ir = variant_program(name, mpk, c)
            out.append(Variant(name, PlatformProgram(program.platform, ir, program.meta),
                               {"format": c.format, "nblocks": c.nblocks, "ksplit": c.ksplit,
                                "threads": c.threads, "nt": c.nt, "wave": c.wave,
                                "ordering": op.ordering}))
        ctx.record("program", platform=f"{program.platform} variants", text="/* " + "\n   ".join(
            str(v.program.ir) for v in out) + " */")
        return out

    def materialise(self, variant: Variant, ctx: SpecializationContext) -> Variant:
        """The variant with its plan built (a :class:`~asp_mpk.program.PlannedVariant`), or
        its declared fallback's when the plan cannot pay off here (recorded as a
        ``PLAN_FALLBACK`` decision); run by the core just before the backend builds it."""
        vp: VariantProgram = variant.program.ir
        planned = vp.materialise(ctx.instance)
        if planned.fallback is not None:
            fb = planned.fallback
            ctx.decide(PLAN_FALLBACK, fb.to, reason=fb.reason, variant=fb.variant)
        plan = planned.plan
        ctx.record("plan", variant=variant.name, params=planned.variant.plan.params(),
                   plan_bytes=plan.nbytes,
                   redundancy=[round(c.redundancy, 3) for c in getattr(plan, "closures",
                                                                       {}).values()])
        return Variant(variant.name, PlatformProgram(variant.program.platform, planned,
                                                     variant.program.meta), variant.params)


class CBackend(Backend):
    """Phase 5: compile the kernel of a variant phase 4 materialised, bind it with ctypes."""

    platforms = ("openmp",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> CKernel:
        from asp_mpk.kernels import CKernel

        planned = variant.program.ir
        if not isinstance(planned, PlannedVariant):
            raise AspError(f"the mpk C backend builds planned variants (phase 4's "
                           f"materialise), not {type(planned).__name__}")
        vp = planned.variant
        op = vp.program.op
        lib = ctx.compile(**planned.compile_args())
        _precompile_in_background(ctx, vp.program, ctx.instance)   # after the first compile
        return CKernel(lib, vp.storage.template, planned.plan, n=op.matrix.n, k=op.k,
                       dtype=op.dtype, nthreads=vp.threads, ksplit=vp.ksplit, name=variant.name,
                       nt=vp.nt, wave=vp.wave, exact=ctx.instance.sparse_products)


#: platform programs whose other formats were handed to :mod:`asp_core.background` already
_PRECOMPILING: weakref.WeakSet[MPKProgram] = weakref.WeakSet()


def _precompile_in_background(ctx: SpecializationContext, program: MPKProgram,
                              mp: MatrixPowers) -> None:
    """While variants are still to be timed, compile every other candidate format's kernel on
    the core's background pool (:mod:`asp_core.background`), once per specialisation: the
    autotuner then builds the variants it times from the code cache, and a build of a format
    still compiling waits for that compile instead of running a second gcc.  Started after the
first variant's compile, so that kernel is handed over at once, one gcc at a time (each
    submitted when the previous ends), and only while no solve runs (``when_idle``: a solve is a
    :func:`asp_core.background.foreground` span), so a solve never shares the cores with gcc:
    on two cores a second solve took twice its steady time next to these compiles.  Calls do
    not time variants while they wait or run (:meth:`MatrixPowers.run`, :func:`asp_mpk.cg`).
    Errors are left to the foreground build of the same variant, which reports them."""
    if program in _PRECOMPILING or ctx.decision(VARIANT) is not None:
        return   # started already, or the winner is known (perf database, ASP_AUTOTUNE=off)
    _PRECOMPILING.add(program)
    formats = list(program.storage)[1:]   # the first is the foreground's
    ctx.record("precompile", formats=formats)
    _submit_in_turn(ctx, program, mp, formats)


def _submit_in_turn(ctx: SpecializationContext, program: MPKProgram, mp: MatrixPowers,
                    formats: list[str]) -> None:
    """Submit the compile of ``formats[0]``, and of the rest once it has ended.  A compile
    cancelled while queued (a foreground build took it over, or the interpreter exits) ends the
    chain: its callback runs under the pool's lock, where submitting would deadlock, and the
    builds that need the remaining formats compile them themselves."""
    from asp_core import background

    if not formats:
        return
    try:
        storage = program.storage[formats[0]]
        args = program.compile_args(storage, program.diagonal_kinds(storage, mp))
    except Exception:  # noqa: BLE001 - reported by the foreground build of that variant
        return
    # weak references: a key already queued returns the same future to every matrix whose
    # kernel has that code, and a future keeps its callbacks (and a pool thread the future
    # it ran last).  Held strongly, each such callback kept its matrix (copy, analysis, plans,
    # kernels, CG workspace) alive: a busy caller that solved with one new matrix after
    # another, the compile held back meanwhile, kept every one of them.  A matrix dropped
    # before its turn comes needs none of its other formats
    ctx_ref, program_ref, mp_ref = weakref.ref(ctx), weakref.ref(program), weakref.ref(mp)
    rest = formats[1:]

    def then(done: Future) -> None:
        ctx_, program_, mp_ = ctx_ref(), program_ref(), mp_ref()
        if not done.cancelled() and ctx_ is not None and program_ is not None and \
                mp_ is not None:
            _submit_in_turn(ctx_, program_, mp_, rest)

    background.submit(ctx, **args, variant=formats[0], when_idle=True).add_done_callback(then)


class ScipyBackend(Backend):
    """Phase 5 for the ``scipy`` platform: the instance's reference implementation."""

    platforms = ("scipy",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., Any]:
        mp: MatrixPowers = ctx.instance
        return mp._reference

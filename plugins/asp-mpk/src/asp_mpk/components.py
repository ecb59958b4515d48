"""The five phase components of the ``mpk`` specializer, registered by :mod:`asp_mpk.plugin`.

frontend ``matrix`` (matrix description + call shapes → :class:`MatrixPowersOp`) → domain
passes (``order-rows``, ``choose-formats``, ``size-blocks``) → platform ``openmp`` (generated C,
needs a compiler) or ``scipy`` (repeated ``A @ x``, always available) → platform optimiser
``pa1-variants`` (one variant per format/block count/k-split/thread count) → backend ``c``
(plan + template + ``ctx.compile`` + ctypes) or ``scipy``.

The kernel's call arguments are ``(xs, out, coefs, gram, basis)`` (see
:class:`asp_mpk.powers.MatrixPowers`); ``ctx.instance`` is the ``MatrixPowers`` object that owns
the validated CSR matrix and its analysis.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable

from asp_core import (Backend, DomainOptimizer, Frontend, PassManager, Platform,
                      PlatformOptimizer, PlatformProgram, Variant)

from asp_mpk.dast import MatrixPowersOp, MatrixStructure, kernel_format
from asp_mpk.passes import DEFAULT_PASSES

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["MatrixFrontend", "MPKDomainOptimizer", "OpenMPPlatform", "ScipyPlatform",
           "PA1Variants", "CBackend", "ScipyBackend", "signature", "tuning_key"]


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


def _octave(x: float) -> int:
    """``x`` on a half-octave scale (sizes within ~40 % share a bucket)."""
    return int(round(2 * math.log2(max(float(x), 1.0))))


def tuning_key(args: tuple, kwargs: dict, instance: Any) -> tuple:
    """Key under which tuning winners are stored: the matrix's structure class (format,
    diagonal count and how many are constant, or symmetry, dense blocks and nonzeros per row;
    bandwidth and size in half-octaves) and the call kind, not the exact matrix, so a new
    matrix of a known kind starts with the winner (variant names do not depend on n)."""
    sig = signature(args, kwargs, instance)
    st = instance.structure
    if st.offsets is not None:
        kind: tuple = ("dia", len(st.offsets), st.dia_compressible, _octave(st.bandwidth))
    else:
        kind = ("csr", st.symmetric, st.bcsr[:1], round(st.nnz / max(st.n, 1)),
                _octave(st.rcm_bandwidth or st.bandwidth))
    return (kind, _octave(st.n), *sig[2:])


class MatrixFrontend(Frontend):
    """Phase 1: the matrix description and the call's shapes become a MatrixPowersOp."""

    def parse(self, ctx: SpecializationContext) -> MatrixPowersOp:
        mp = ctx.instance
        st = mp.structure
        xs, out, coefs, gram, basis = ctx.args[:5]
        ms = MatrixStructure(st.n, st.nnz, st.pattern, st.symmetric, st.bandwidth, st.offsets,
                             round(st.dia_fill, 4), st.rcm_bandwidth, st.dia_compressible,
                             st.bcsr)
        return MatrixPowersOp(ms, str(mp.dtype), out.shape[1] - 1, out.shape[0],
                              basis == "monomial", gram is not None)


class MPKDomainOptimizer(DomainOptimizer):
    """Phase 2: the named domain passes (each can be disabled by name)."""

    def __init__(self) -> None:
        self.manager = PassManager("mpk-domain", list(DEFAULT_PASSES))

    def optimize(self, dast: MatrixPowersOp, ctx: SpecializationContext) -> MatrixPowersOp:
        dast = self.manager.run(dast, ctx)
        if not dast.candidates:  # every format pass disabled: the baseline still works
            from asp_mpk.dast import Candidate

            dast = dast.replace(candidates=[Candidate("naive", threads=0)])
        return dast


class _Program:
    """Platform IR: the op plus the rendered default source (shown by ``asp explain``)."""

    def __init__(self, op: MatrixPowersOp, source: str) -> None:
        self.op = op
        self.source = source

    def __str__(self) -> str:
        return self.source


class OpenMPPlatform(Platform):
    """Phase 3: generated C with OpenMP (needs a C compiler)."""

    name = "openmp"

    def check(self, dast: MatrixPowersOp, ctx: SpecializationContext) -> str | None:
        from asp_core.toolchain import has_compiler

        if not has_compiler("c"):
            return "no C compiler found"
        return None

    def lower(self, dast: MatrixPowersOp, ctx: SpecializationContext) -> PlatformProgram:
        from asp_mpk.kernels import render_source

        first = dast.candidates[0]
        fmt, block = kernel_format(first.format)
        src = render_source(fmt, dast.dtype, monomial=dast.monomial,
                            offsets=dast.matrix.offsets or (), sym=first.format == "csr-sym",
                            block=block)
        return PlatformProgram("openmp", _Program(dast, src), {"ordering": dast.ordering})


class ScipyPlatform(Platform):
    """Phase 3: repeated ``A @ x`` in SciPy (always available; the reference semantics)."""

    name = "scipy"

    def lower(self, dast: MatrixPowersOp, ctx: SpecializationContext) -> PlatformProgram:
        return PlatformProgram("scipy", _Program(dast, "# repeated scipy.sparse A @ x"), {})


def _variant_name(c: Any) -> str:
    name = f"{c.format}-{c.sizing or f'b{c.nblocks}'}" if c.format != "naive" else "naive"
    if c.ksplit:
        name += f"-ks{c.ksplit}"
    if c.threads == 1:
        name += "-t1"
    return name


class PA1Variants(PlatformOptimizer):
    """Phase 4: one variant per candidate (default: the first, a cache-sized PA1 when any)."""

    platforms = ("openmp",)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        op: MatrixPowersOp = program.ir.op
        out: list[Variant] = []
        seen: set[str] = set()
        for c in op.candidates:
            name = _variant_name(c)
            if name in seen:
                continue
            seen.add(name)
            out.append(Variant(name, program, {"format": c.format, "nblocks": c.nblocks,
                                               "ksplit": c.ksplit, "threads": c.threads,
                                               "ordering": op.ordering}))
        return out


class CBackend(Backend):
    """Phase 5: build the plan, render and compile the template, bind with ctypes."""

    platforms = ("openmp",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., Any]:
        from asp_core.hardware import default_threads

        from asp_mpk.kernels import CKernel
        from asp_mpk.plan import get_plan

        mp = ctx.instance
        op: MatrixPowersOp = variant.program.ir.op
        p = variant.params
        fmt = p["format"]
        cfmt, block = kernel_format(fmt)
        k = op.k
        ks = p["ksplit"] or k
        if cfmt == "dia":
            params = {"format": "dia", "offsets": op.matrix.offsets, "nblocks": p["nblocks"],
                      "compress": fmt == "dia-c"}
        elif cfmt == "csr":
            levels = {ks} | ({k % ks} if k % ks else set())
            params = {"format": "csr", "nblocks": p["nblocks"], "ks": tuple(sorted(levels)),
                      "sym": fmt == "csr-sym", "ordering": p["ordering"], "block": block}
        else:
            params = {"format": "naive"}
        from asp_mpk.partition import ClosureTooLarge

        order = mp.order(p["ordering"], block) if cfmt == "csr" else None
        try:
            plan = get_plan(mp.csr, mp.pattern, mp.values, params, order=order)
        except ClosureTooLarge as exc:   # the graph is too "wide": fall back to the baseline
            ctx.record("plan", variant=variant.name, fallback="naive", reason=str(exc))
            fmt = cfmt = "naive"
            block = 1
            params = {"format": "naive"}
            plan = get_plan(mp.csr, mp.pattern, mp.values, params)
        _await_precompile(mp, fmt)
        lib = ctx.compile(**_compile_args(fmt, op, getattr(plan, "kinds", None)))
        _precompile_in_background(ctx, op)   # after the first variant's own compile
        threads = p["threads"] or default_threads()
        kern = CKernel(lib, cfmt, plan, n=op.matrix.n, k=k, dtype=op.dtype,
                       nthreads=threads, ksplit=ks, name=variant.name)
        ctx.record("plan", variant=variant.name, params=params, plan_bytes=plan.nbytes,
                   redundancy=[round(c.redundancy, 3) for c in getattr(plan, "closures",
                                                                       {}).values()])

        def bound(xs: Any, out: Any, coefs: Any, gram: Any = None, basis: str = "monomial"
                  ) -> Any:
            return kern(xs, out, coefs, gram)

        bound.kernel = kern  # type: ignore[attr-defined]
        return bound


def _compile_args(fmt: str, op: MatrixPowersOp, kinds: list[tuple] | None) -> dict[str, Any]:
    """``ctx.compile`` arguments of the kernel for candidate format ``fmt`` (``kinds``: the DIA
    plan's diagonal kinds, None for the other formats)."""
    from asp_mpk.kernels import render_source

    cfmt, block = kernel_format(fmt)
    src = render_source(cfmt, op.dtype, monomial=op.monomial, offsets=op.matrix.offsets or (),
                        sym=fmt == "csr-sym", kinds=kinds, block=block)
    return {"source": src, "name": f"mpk_{cfmt}",
            "specialised_on": {"format": fmt, "dtype": op.dtype, "monomial": op.monomial,
                               "block": block, "offsets": list(op.matrix.offsets or ()),
                               "kinds": [list(x) for x in kinds or []]}}


#: per MatrixPowers: candidate format -> set once its background precompile has ended
_PRECOMPILED: weakref.WeakKeyDictionary[Any, dict[str, threading.Event]] = \
    weakref.WeakKeyDictionary()


def _await_precompile(mp: Any, fmt: str) -> None:
    """A foreground build of a format the background is compiling waits for that compile and
    loads it from the code cache, instead of running a second gcc on the caller's path."""
    from asp_mpk import background

    done = _PRECOMPILED.get(mp, {}).get(fmt)
    if done is not None and not background.in_background():
        done.wait()


def _precompile_in_background(ctx: SpecializationContext, op: MatrixPowersOp) -> None:
    """While variants are still to be timed, compile every other candidate format's kernel on
    a background thread, once per specialisation: the autotuner then builds the variants it
    times from the code cache instead of compiling on the caller's path.  Started after the
    first variant's compile and one gcc at a time, so neither that compile nor the caller's
    work (a solve running meanwhile) waits for a core.  When the specialisation itself runs in
    the background (:meth:`MatrixPowers.prepare`), the compiles run there before the kernel is
    handed over, so no variant is timed while gcc competes for the cores.  Errors are left to
    the foreground build of the same variant, which reports them."""
    if any(event in ("precompile", "autotune") for event, _ in ctx.events):
        return   # started already, or the winner is known (perf database, ASP_AUTOTUNE=off)
    formats = list(dict.fromkeys(c.format for c in op.candidates))
    ctx.record("precompile", formats=formats[1:])
    if len(formats) < 2:
        return
    mp = ctx.instance
    done = {fmt: threading.Event() for fmt in formats[1:]}   # the first is the foreground's
    _PRECOMPILED[mp] = done

    def run() -> None:
        from asp_mpk.plan import dia_storage

        try:
            for fmt, compiled in done.items():   # one gcc at a time
                kinds = None
                if fmt in ("dia", "dia-c"):
                    kinds = dia_storage(mp.csr, mp.pattern, mp.values, op.matrix.offsets,
                                        fmt == "dia-c")[0]
                ctx.compile(**_compile_args(fmt, op, kinds), variant=fmt)
                compiled.set()
        except Exception:  # noqa: BLE001 - reported by the foreground build of that variant
            pass
        finally:
            for compiled in done.values():   # nobody waits for a compile that will not come
                compiled.set()

    from asp_mpk import background

    if background.in_background():
        run()   # the caller is not waiting: the variants are timed once all are compiled
    else:
        background.start(run, name="asp-mpk-precompile")


class ScipyBackend(Backend):
    """Phase 5 for the ``scipy`` platform: the instance's reference implementation."""

    platforms = ("scipy",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., Any]:
        return ctx.instance._reference

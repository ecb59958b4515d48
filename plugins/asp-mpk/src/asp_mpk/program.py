"""The OpenMP platform IR of the ``mpk`` specializer: what phases 3 and 4 decide.

Phase 3 (:class:`~asp_mpk.components.OpenMPPlatform`) lowers each candidate format of the
domain op to a :class:`Storage`: the kernel template that runs it, over which register blocks,
with symmetric or compressed-diagonal storage; the set is an :class:`MPKProgram`.  Phase 4
(:class:`~asp_mpk.components.PA1Variants`) turns each candidate into a :class:`VariantProgram`:
a storage, the :class:`PlanSpec` of the matrix data its kernel runs on (block count, ghost-zone
depths, row order), threads, k-split, and the variant that replaces it when its plan cannot be
built (ghost closures too large: the naive baseline).  Phase 4 also materialises a variant
(:meth:`PA1Variants.materialise <asp_mpk.components.PA1Variants.materialise>`, which the core
runs just before the variant is built): :meth:`VariantProgram.materialise` builds its plan, or
its fallback's, into a :class:`PlannedVariant`.  The backend (phase 5) compiles that
variant's source and binds it to the plan; it chooses nothing.

Plans are materialised per variant, when the core is about to build it, not for every
proposed variant: building the DIA storage or the ghost closures of a large matrix takes a
noticeable fraction of a second, and most variants of a known matrix kind are never built
(the stored winner is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asp_mpk.dast import Candidate, MatrixPowersOp, kernel_format

if TYPE_CHECKING:
    from asp_mpk.plan import Plan
    from asp_mpk.powers import MatrixPowers

__all__ = ["Storage", "PlanSpec", "MPKProgram", "VariantProgram", "PlannedVariant",
           "PlanFallback", "PLAN_FALLBACK", "ReferenceProgram", "variant_program"]


@dataclass(frozen=True)
class Storage:
    """How a candidate format is stored and run on the OpenMP platform (phase 3's choice)."""

    format: str            # candidate format: "dia-c", "dia", "csr", "csr-sym", "bcsrR", "naive"
    template: str          # kernel template: "dia", "csr" or "naive"
    block: int = 1         # R of the R x R register blocks (BCSR), else 1
    sym: bool = False      # upper triangle of each local matrix
    compress: bool = False  # constant diagonals stored as byte masks, lower ones mirrored
    constants: bool = True  # with compress: constant values compiled in (else only mirrored)

    @classmethod
    def of(cls, fmt: str, constants: bool = True) -> Storage:
        """The storage of candidate format ``fmt``: "dia-c" is a compressed "dia" kernel
        (``constants``: with constant values compiled in), "csr-sym" a symmetric "csr"
        kernel, "bcsrR" a "csr" kernel over R x R blocks."""
        template, block = kernel_format(fmt)
        compress = fmt == "dia-c"
        return cls(fmt, template, block=block, sym=fmt == "csr-sym", compress=compress,
                   constants=constants or not compress)


@dataclass(frozen=True)
class PlanSpec:
    """The matrix data one variant's kernel runs on (built by :func:`asp_mpk.plan.get_plan`).

    DIA: the diagonals (``offsets``, ``compress``) cut into ``nblocks`` row blocks; CSR: the
    PA1 ghost closures of ``nblocks`` parts of the ``ordering`` for each depth in ``levels``
    (over R x R blocks when ``block`` > 1, upper triangles when ``sym``); naive: the CSR arrays.
    """

    template: str
    nblocks: int = 1
    offsets: tuple[int, ...] = ()
    compress: bool = False
    constants: bool = True
    levels: tuple[int, ...] = ()
    sym: bool = False
    ordering: str = "natural"
    block: int = 1

    def params(self) -> dict[str, Any]:
        """:func:`~asp_mpk.plan.get_plan`'s parameters (its cache key)."""
        if self.template == "dia":
            return {"format": "dia", "offsets": self.offsets, "nblocks": self.nblocks,
                    "compress": self.compress, "constants": self.constants}
        if self.template == "csr":
            return {"format": "csr", "nblocks": self.nblocks, "ks": self.levels,
                    "sym": self.sym, "ordering": self.ordering, "block": self.block}
        return {"format": "naive"}

    def __str__(self) -> str:
        if self.template == "dia":
            return (f"{self.nblocks} row block(s) of {len(self.offsets)} diagonals"
                    + ("" if not self.compress else ", constant ones as masks"
                       if self.constants else ", the lower ones read from the upper"))
        if self.template == "csr":
            return (f"ghost closures of {self.nblocks} part(s) of the {self.ordering} order, "
                    f"depths {', '.join(map(str, self.levels))}"
                    + (f", {self.block}x{self.block} blocks" if self.block > 1 else "")
                    + (", upper triangles" if self.sym else ""))
        return "the CSR arrays"

    def build(self, mp: MatrixPowers) -> Plan:
        """The plan for ``mp``'s matrix (cached by :func:`~asp_mpk.plan.get_plan`); raises
        :class:`~asp_mpk.partition.ClosureTooLarge` when PA1 closures cannot pay off."""
        from asp_mpk.plan import get_plan

        order = mp.order(self.ordering, self.block) if self.template == "csr" else None
        return get_plan(mp.csr, mp.pattern, mp.values, self.params(), order=order)


#: optimisation level of the generated kernels, after the toolchain's own ``-O3``.  Their hot
#: loops carry ``#pragma omp simd``, which gcc vectorises at ``-O2`` as well; ``-O3`` adds the
#: loop vectoriser's versions of every other loop (guarded boundary rows, Gram and combine
#: tails), which cost the compile 4x (compressed DIA, 2-D Poisson: 1.8 s against 0.43 s; 3-D:
#: 3.1 s against 0.77 s, gcc 12) for no measured kernel speed (matrix powers, streaming and
#: classical CG passes within noise on the Intel AVX-512 machine).  A first solve runs
#: interim passes until that compile ends, and later solves share the cores with the other
#: formats' compiles.
OPT_FLAGS = ("-O2",)


@dataclass(eq=False)
class MPKProgram:
    """Phase 3's platform program: the op and the storage of each candidate format (in the
    candidates' order, the default first).  Compared by identity: one per specialisation."""

    op: MatrixPowersOp
    storage: dict[str, Storage]

    @classmethod
    def lower(cls, op: MatrixPowersOp) -> MPKProgram:
        return cls(op, {c.format: Storage.of(c.format, constants=not op.matrix.values_vary)
                        for c in op.candidates})

    def diagonal_kinds(self, storage: Storage, mp: MatrixPowers) -> list[tuple] | None:
        """What a DIA kernel is specialised on: each diagonal full or a constant stored as a
        mask (:func:`~asp_mpk.analysis.compress_diagonals`; computes and caches the DIA
        storage); None for the other templates."""
        from asp_mpk.plan import dia_storage

        if storage.template != "dia":
            return None
        return dia_storage(mp.csr, mp.pattern, mp.values, self.op.matrix.offsets or (),
                           storage.compress, storage.constants)[0]

    def source(self, storage: Storage, kinds: list[tuple] | None = None) -> str:
        """C source of the kernel for ``storage`` (``kinds``: see :meth:`diagonal_kinds`; all
        diagonals full when None)."""
        from asp_mpk.kernels import render_source

        op = self.op
        return render_source(storage.template, op.dtype, monomial=op.monomial,
                             offsets=op.matrix.offsets or (), sym=storage.sym, kinds=kinds,
                             block=storage.block)

    def compile_args(self, storage: Storage, kinds: list[tuple] | None) -> dict[str, Any]:
        """:meth:`SpecializationContext.compile` arguments of the kernel for ``storage``."""
        op = self.op
        return {"source": self.source(storage, kinds), "name": f"mpk_{storage.template}",
                "flags": OPT_FLAGS,
                "specialised_on": {"format": storage.format, "dtype": op.dtype,
                                   "monomial": op.monomial, "block": storage.block,
                                   "offsets": list(op.matrix.offsets or ()),
                                   "kinds": [list(x) for x in kinds or []]}}

    def __str__(self) -> str:
        lines = ["/* storage of each candidate format (the default kernel follows; DIA kernels",
                 "   are specialised on the diagonals found constant when their plan is built)"]
        for s in self.storage.values():
            extra = "".join(f", {flag}" for flag, on in (
                (f"{s.block}x{s.block} blocks", s.block > 1), ("upper triangle", s.sym),
                ("constant diagonals as masks", s.compress and s.constants),
                ("lower diagonals read from the upper", s.compress and not s.constants)) if on)
            lines.append(f"   {s.format}: {s.template} kernel{extra}")
        lines.append(f"   row order: {self.op.ordering} */")
        first = next(iter(self.storage.values()), None)
        return "\n".join(lines) + ("\n" + self.source(first) if first is not None else "")


#: the kind of :class:`asp_core.decisions.Decision` phase 4 records for a :class:`PlanFallback`
PLAN_FALLBACK = "plan-fallback"


@dataclass(frozen=True)
class PlanFallback:
    """Decision record: variant ``variant`` runs ``to`` because its own plan failed."""

    variant: str
    to: str
    reason: str


@dataclass(frozen=True)
class PlannedVariant:
    """A variant with its plan built (phase 4's last step): what the backend compiles and
    binds."""

    variant: VariantProgram
    plan: Plan
    fallback: PlanFallback | None = None

    def compile_args(self) -> dict[str, Any]:
        v = self.variant
        return v.program.compile_args(v.storage, getattr(self.plan, "kinds", None))


@dataclass(frozen=True)
class VariantProgram:
    """Phase 4's program for one variant (see the module docstring)."""

    name: str
    program: MPKProgram
    storage: Storage
    plan: PlanSpec
    threads: int = 1       # OpenMP threads of the kernel
    ksplit: int = 0        # 0: all k levels in one pass
    fallback: VariantProgram | None = None
    nt: bool = False       # streaming stores for the basis (dia kernels)
    wave: int = 0          # rows per wavefront step of each block (dia kernels; 0: none)

    def materialise(self, mp: MatrixPowers) -> PlannedVariant:
        """Build this variant's plan, or its fallback's when PA1 cannot pay off here."""
        from asp_mpk.partition import ClosureTooLarge

        try:
            return PlannedVariant(self, self.plan.build(mp))
        except ClosureTooLarge as exc:
            if self.fallback is None:
                raise
            planned = self.fallback.materialise(mp)
            return PlannedVariant(planned.variant, planned.plan,
                                  PlanFallback(self.name, self.fallback.storage.format,
                                               str(exc)))

    def __str__(self) -> str:
        text = (f"{self.name}: {self.storage.format} kernel, {self.threads} thread(s)"
                + (f", {self.ksplit} levels per pass" if self.ksplit else "")
                + (", streaming stores" if self.nt else "")
                + (f", wavefront sweep of {self.wave} rows per step" if self.wave else "")
                + f"; plan: {self.plan}")
        if self.fallback is not None:
            text += f"; when the closures exceed 4x nnz: {self.fallback.storage.format}"
        return text


def variant_program(name: str, program: MPKProgram, c: Candidate) -> VariantProgram:
    """The variant of candidate ``c``: its plan parameters and, for PA1 over CSR (whose ghost
    closures can hold too many copies of A), the naive baseline as its fallback."""
    op = program.op
    storage = program.storage[c.format]
    if storage.template == "dia":
        spec = PlanSpec("dia", nblocks=c.nblocks, offsets=op.matrix.offsets or (),
                        compress=storage.compress, constants=storage.constants)
    elif storage.template == "csr":
        ks = c.ksplit or op.k
        levels = {ks} | ({op.k % ks} if op.k % ks else set())
        spec = PlanSpec("csr", nblocks=c.nblocks, levels=tuple(sorted(levels)), sym=storage.sym,
                        ordering=op.ordering, block=storage.block)
    else:
        spec = PlanSpec("naive")
    from asp_core.hardware import default_threads

    threads = c.threads or default_threads()
    fallback = None
    if storage.template == "csr":
        fallback = VariantProgram(name, program, Storage.of("naive"), PlanSpec("naive"),
                                  threads, c.ksplit)
    return VariantProgram(name, program, storage, spec, threads, c.ksplit, fallback,
                          nt=c.nt and storage.template == "dia",
                          wave=c.wave if storage.template == "dia" else 0)


@dataclass(frozen=True)
class ReferenceProgram:
    """The ``scipy`` platform's program: the instance's repeated ``A @ x``."""

    op: MatrixPowersOp

    def __str__(self) -> str:
        return "# repeated scipy.sparse A @ x"

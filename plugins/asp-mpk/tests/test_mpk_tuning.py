"""Tuning off the caller's path: variants compile in the background while the first calls time
them, and winners are stored per matrix-structure class."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pytest_asp import requires_compiler

import asp_mpk
from asp_mpk import gallery
from asp_mpk.components import tuning_key


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ASP_AUTOTUNE", "once")
    return tmp_path


def _wait_for_background_compiles(timeout=600.0):
    from asp_mpk import background

    deadline = time.monotonic() + timeout
    while background.busy() and time.monotonic() < deadline:
        time.sleep(0.02)


def _events(mp, kind):
    return [data for event, data in mp._dispatch.last_context.events if event == kind]


@requires_compiler
def test_variants_compile_in_the_background(fresh_cache):
    A = gallery.poisson2d(400)                      # dia-c, dia and naive formats
    mp = asp_mpk.MatrixPowers(A, 4)
    mp.tune()
    assert mp.tuned_kernel(nvec=1, gram=False, basis="monomial") is not None
    started = _events(mp, "precompile")
    assert len(started) == 1 and set(started[0]["formats"]) == {"dia", "naive"}
    compiles = _events(mp, "compile")
    background = [c for c in compiles if c["variant"] in ("dia", "naive")]
    assert {c["variant"] for c in background} == {"dia", "naive"}
    foreground = [c for c in compiles if c not in background]
    first = foreground[0]["variant"]             # compiled on the caller's path: dia-c
    assert first.startswith("dia-c-")
    later = [c for c in foreground[1:] if not c["variant"].startswith("dia-c-")]
    assert later and all(c["cached"] for c in later), later


@requires_compiler
def test_new_matrix_of_a_known_kind_starts_tuned(fresh_cache):
    x = np.random.default_rng(0).standard_normal(300 * 300)
    A = gallery.poisson2d(300)
    mp = asp_mpk.MatrixPowers(A, 4)
    mp.tune()
    winner = mp.variant
    B = 3.0 * A                                   # other values, same structure class
    mp2 = asp_mpk.MatrixPowers(B, 4)
    assert mp2.values != mp.values
    np.testing.assert_allclose(mp2(x)[4], B @ (B @ (B @ (B @ x))), rtol=1e-12)
    assert mp2.tuned_kernel(nvec=1, gram=False, basis="monomial") is not None   # 1 call
    assert mp2.variant == winner
    assert not _events(mp2, "precompile") or _events(mp2, "autotune")[0]["source"] == \
        "perf database"


@requires_compiler
def test_a_stream_of_rescaled_matrices_shares_one_kernel(fresh_cache, monkeypatch):
    """``A * dt`` with a new ``dt`` each step: constants compiled into the kernel cost a
    compile (and a library kept loaded, five files in the cache) for every matrix of the
    stream.  From the third values of one pattern on, the kernel's code no longer depends on
    them: one library serves the rest of the stream, with the same results."""
    import glob

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    monkeypatch.setenv("ASP_MPK_COMPILE", "wait")
    A = gallery.poisson2d(60)
    x = np.random.default_rng(0).standard_normal(A.shape[0])
    libraries, varying = [], []
    for step in range(6):
        B = (0.5 + 0.1 * step) * A
        for _ in range(2):   # a matrix used once is not specialised
            V = asp_mpk.matrix_powers(B, x, 3)
            np.testing.assert_allclose(V[3], B @ (B @ (B @ x)), rtol=1e-12)
        libraries.append(len(glob.glob(f"{fresh_cache}/**/*.so", recursive=True)))
        varying.append(asp_mpk.MatrixPowers(B, 3).matrix.values_vary)
    assert varying == [False, False, True, True, True, True]
    assert libraries == [1, 2, 3, 3, 3, 3]


def test_structure_class_ignores_values_and_small_size_changes():
    def key(A):
        mp = asp_mpk.MatrixPowers(A, 3)
        out = np.empty((1, 4, A.shape[0]))
        return tuning_key((None, out, None, None, "monomial"), {}, mp)

    assert key(gallery.poisson2d(100)) == key(2.0 * gallery.poisson2d(100))
    assert key(gallery.poisson2d(100)) == key(gallery.poisson2d(104))
    assert key(gallery.poisson2d(100)) != key(gallery.poisson2d(400))
    assert key(gallery.poisson2d(100)) != key(gallery.variable_poisson2d(100))
    assert key(gallery.poisson2d(100)) != key(gallery.poisson3d(22))


@requires_compiler
def test_first_calls_run_scipy_while_the_kernel_compiles(fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_MPK_COMPILE", "background")
    A = gallery.variable_poisson2d(120, seed=2)
    x = np.random.default_rng(1).standard_normal(A.shape[0])
    ref = [x]
    for _ in range(3):
        ref.append(A @ ref[-1])
    mp = asp_mpk.MatrixPowers(A, 3)
    np.testing.assert_allclose(mp(x), np.stack(ref), rtol=1e-12)   # SciPy or the kernel
    assert mp.wait(timeout=600)
    np.testing.assert_allclose(mp(x), np.stack(ref), rtol=1e-12)
    assert mp.bound_kernel() is not None           # the compiled kernel answered
    A.data *= -1.0                                 # in place: the functional API notices
    np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 3)[3], -ref[3], rtol=1e-12)


@requires_compiler
def test_a_background_specialisations_warning_names_the_line_that_started_it(fresh_cache,
                                                                              monkeypatch):
    """The fallback warning of a specialisation on asp-mpk's thread named threading.py (the
    thread's own stack), not the call that started it: a ``filterwarnings`` for the user's
    module missed it."""
    import inspect
    import warnings

    from asp_core import SpecializationWarning

    monkeypatch.setenv("ASP_MPK_COMPILE", "background")
    monkeypatch.setenv("ASP_CFLAGS", "-fno-such-asp-flag")   # every compile fails
    A = gallery.poisson2d(40)
    x = np.ones(A.shape[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp = asp_mpk.MatrixPowers(A, 2)
        V = mp(x)
        line = inspect.currentframe().f_lineno - 1
        assert mp.wait(timeout=600)
    np.testing.assert_allclose(V[2], A @ (A @ x), rtol=1e-12)
    mine = [w for w in caught if issubclass(w.category, SpecializationWarning)]
    assert [(w.filename, w.lineno) for w in mine] == [(__file__, line)], \
        [(w.filename, w.lineno, str(w.message)[:80]) for w in mine]


@requires_compiler
def test_a_matrix_used_once_is_not_specialised(fresh_cache, monkeypatch):
    """``spmv`` and ``matrix_powers`` compute contents met for the first time over A's own
    arrays, and analyse and specialise them from the second call: a product of each new
    matrix (or of new values in place) copied and analysed A and started a compile on a
    background thread every call, 5-8 ms of a 256-row matrix's product that SciPy does in
    4 us.  The object API, made to be called again, analyses at once."""
    from asp_mpk import background, matrix

    monkeypatch.setenv("ASP_MPK_COMPILE", "background")
    rng = np.random.default_rng(5)
    x = rng.standard_normal(16 * 16)
    A = gallery.poisson2d(16)
    for step in range(4):
        A.data *= 1.5                                 # new contents each call
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
        B = (2.0 + step) * gallery.poisson2d(16)      # a new matrix each call
        np.testing.assert_allclose(asp_mpk.matrix_powers(B, x, 2), [x, B @ x, B @ (B @ x)],
                                   rtol=1e-12)
    assert not matrix._MATRICES, "nothing analysed, so nothing specialised"
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)   # seen before
    (m,) = matrix._MATRICES.values()
    mp = m.powers(1)
    time.sleep(mp.specialise_after)   # calls that span it start the specialisation
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    assert mp._pending, "its specialisation started"
    background.join_all(timeout=600)
    eager = asp_mpk.MatrixPowers(gallery.poisson2d(20), 2)
    assert eager.matrix.csr is not None


@requires_compiler
def test_calls_of_a_small_matrix_are_not_specialised_until_they_take_a_while(fresh_cache,
                                                                             monkeypatch):
    """The functional API specialises a matrix once its calls have run ``SPECIALISE_AFTER_S``
    (from the start of the first): a 256-row matrix's kernel runs at SciPy's speed, and its
    specialisation, started at the second call, held the interpreter from a caller's loop
    in turns (10,000 products 30 % slower than SciPy's).  Until then, and while the kernel is
    specialised and its variants compile, ``spmv`` of a watched matrix is one native CSR
    product (SciPy's sums, bit for bit) and ``matrix_powers`` CSR products with no Python
    around them but the checks; writes to A are still seen."""
    from asp_mpk import background, matrix, native, powers

    monkeypatch.setenv("ASP_MPK_COMPILE", "background")
    monkeypatch.setattr(powers, "SPECIALISE_AFTER_S", 3600.0, raising=False)
    A = gallery.poisson2d(16)
    x = np.random.default_rng(7).standard_normal(A.shape[0])
    for _ in range(20):
        np.testing.assert_array_equal(asp_mpk.spmv(A, x), A @ x)
        np.testing.assert_array_equal(asp_mpk.matrix_powers(A, x, 2)[2], A @ (A @ x))
    (m,) = matrix._MATRICES.values()
    assert not m.powers(1)._pending and not m.powers(2)._pending, "nothing specialised"
    assert isinstance(matrix._PRODUCTS[id(A)][1], native.CSRProduct)
    assert matrix.product(A) is not None, "spmv is one native call"
    with pytest.raises(ValueError, match="non-finite"):
        asp_mpk.matrix_powers(A, np.full(A.shape[0], np.nan), 2)
    A.data[A.nnz // 2] += 1.0   # written in place: the native call declines, A is seen anew
    np.testing.assert_array_equal(asp_mpk.spmv(A, x), A @ x)
    np.testing.assert_array_equal(asp_mpk.matrix_powers(A, x, 2)[2], A @ (A @ x))

    m = matrix.analysed(A)
    mp = m.powers(1)
    mp.specialise_after = 0.0   # due: the next call starts it, the CSR product serves meanwhile
    np.testing.assert_array_equal(asp_mpk.spmv(A, x), A @ x)
    assert mp._pending
    assert matrix._PRODUCTS[id(A)][1] is m.csr_product()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and m.spmv_native is None:   # until tuned and raced
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
        time.sleep(0.005)
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    # the native call is the race's winner for good: the CSR product or the tuned kernel
    winner = m.csr_product() if m.spmv_native else m.spmv_kernel
    assert winner is not None and matrix._PRODUCTS[id(A)][1] is winner
    assert matrix.product(A) is not None
    background.join_all(timeout=600)
    _wait_for_background_compiles()


@requires_compiler
@pytest.mark.parametrize("api", ["functional", "object"])
def test_matrix_powers_of_a_small_matrix_is_one_native_call_until_its_kernel_wins(
        fresh_cache, monkeypatch, api):
    """While its kernel is specialised, the monomial basis of a plain vector is one native call
    of the CSR products (SciPy's sums; for the functional API with the write check of a
    watched A); once the kernel is tuned, that call and the tuned kernel's are timed as users
    make them and the faster serves from then on: for a small matrix the native call (7 us a
    call, 256 rows, k = 4) beat the tuned kernel's Python path (20 us)."""
    from asp_mpk import background, matrix, powers

    monkeypatch.setenv("ASP_MPK_COMPILE", "background")
    monkeypatch.setattr(powers, "SPECIALISE_AFTER_S", 0.0, raising=False)
    A = gallery.poisson2d(16)
    x = np.random.default_rng(8).standard_normal(A.shape[0])
    ref = np.stack([x, A @ x, A @ (A @ x), A @ (A @ (A @ x))])
    obj = asp_mpk.MatrixPowers(A, 3) if api == "object" else None

    def call(v):
        return obj(v) if obj is not None else asp_mpk.matrix_powers(A, v, 3)

    for _ in range(5):
        np.testing.assert_array_equal(call(x), ref)
    mp = obj if obj is not None else matrix.analysed(A).powers(3)
    assert mp.native_serves(), "native while the kernel settles"
    if obj is None:
        assert matrix.powers_call(A, 3) is not None, "A is not even recognised in Python"
    else:
        assert mp._csr_call is not None
    with pytest.raises(ValueError, match="non-finite"):   # declined natively, named in Python
        call(np.full(A.shape[0], np.inf))
    deadline = time.monotonic() + 300
    while mp._native is None and time.monotonic() < deadline:   # until the race has run
        np.testing.assert_allclose(call(x), ref, rtol=1e-12)
        time.sleep(0.005)
    assert mp._native is not None and mp._winner(1, "monomial") is not None
    assert mp.native_serves() is mp._native
    np.testing.assert_allclose(call(x), ref, rtol=1e-12)
    if obj is None:
        assert (matrix.powers_call(A, 3) is not None) is mp._native
        A.data[7] += 1.0   # written: whichever serves, A is seen anew
        np.testing.assert_allclose(call(x)[1], A @ x, rtol=1e-12)
    background.join_all(timeout=600)
    _wait_for_background_compiles()


def test_the_race_keeps_the_faster_call(monkeypatch):
    """The race's decision is made by timing the two calls: a tuned path slower than the
    native call leaves the native call serving for good; a native call more than
    ``RACE_GIVE_UP`` times the tuned one loses after one round (a native call over 1 ms lost
    at once, whatever the kernel took: an unstructured matrix kept a tuned kernel 1.6x
    slower than the CSR products)."""
    from asp_mpk import powers

    A = gallery.poisson2d(6)
    x = np.random.default_rng(1).standard_normal(A.shape[0])
    mp = asp_mpk.MatrixPowers(A, 2)
    mp._csr_call = powers.native.csr_powers_call(mp.csr, 2)
    monkeypatch.setattr(mp, "_general", lambda *args: time.sleep(0.003))
    mp._race(x)
    assert mp._native is True and mp.native_serves()
    native_call = mp._csr_call
    monkeypatch.setattr(mp, "_csr_call", lambda *args: (time.sleep(0.003), native_call(*args))[1])
    rounds = []
    monkeypatch.setattr(mp, "_general", lambda *args: rounds.append(1))
    mp._native = None
    mp._race(x)
    assert mp._native is False and mp._plain(x) is None and not mp.native_serves()
    assert len(rounds) == 1


def test_spmv_races_the_csr_product_against_the_tuned_kernel(monkeypatch):
    """spmv's tuned k = 1 kernel is raced against the CSR product as spmv's native call runs
    them (their product entry points), and the faster is kept: the tuner times generated
    variants only, and for an unstructured matrix its winner (without a product entry point)
    ran spmv 1.9x slower than the CSR product."""
    from asp_mpk import matrix, powers

    A = gallery.poisson2d(6)
    m = matrix.analysed(A)
    mp = m.powers(1)
    x = np.random.default_rng(2).standard_normal(A.shape[0])
    y = np.empty(A.shape[0])
    assert powers._entry_call(m.csr_product(), x, y)() == 0   # the call the race times
    np.testing.assert_array_equal(y, A @ x)

    class Tuned:
        has_spmv = True

    tuned = Tuned()
    seconds = {}
    monkeypatch.setattr(powers, "_entry_call",
                        lambda product, x, y: lambda: time.sleep(seconds[product]) or 0)
    seconds.update({m.csr_product(): 0.0, tuned: 0.003})
    assert powers._spmv_race(m, mp, tuned, x) is True
    seconds.update({m.csr_product(): 0.003, tuned: 0.0})
    assert powers._spmv_race(m, mp, tuned, x) is False


@requires_compiler
def test_cg_first_solve_starts_with_scipy_steps(fresh_cache, monkeypatch):
    from asp_mpk.cacg import last_stats

    monkeypatch.setenv("ASP_MPK_COMPILE", "background")
    A = gallery.poisson2d(150)
    b = np.random.default_rng(4).standard_normal(A.shape[0])
    x, info = asp_mpk.cg(A, b, rtol=1e-8)
    st = last_stats()
    assert info == 0 and np.linalg.norm(b - A @ x) < 1e-8 * np.linalg.norm(b)
    assert st.steps_by_mode.get("scipy", 0) > 0        # a cold cache: gcc takes a while
    assert sum(st.steps_by_mode.values()) == st.iterations


@requires_compiler
def test_calls_do_not_tune_while_variants_compile(fresh_cache, monkeypatch):
    """The kernel is handed over after its first variant's compile; while the others compile
    on asp_core.background, calls run that variant instead of building and timing the next
    one on the caller's path (which would wait for its compile)."""
    from asp_core import background

    A = gallery.poisson2d(200)                      # dia-c, dia and naive formats
    x = np.random.default_rng(3).standard_normal(A.shape[0])
    ref = A @ (A @ (A @ (A @ x)))
    mp = asp_mpk.MatrixPowers(A, 4)
    np.testing.assert_allclose(mp(x)[4], ref, rtol=1e-12)     # specialises: one variant built
    assert _events(mp, "precompile")
    tuning = next(iter(mp._dispatch.specializations.values()))
    built = dict(tuning.built)
    monkeypatch.setattr(background, "busy", lambda: True)    # the siblings still compiling
    for _ in range(6):
        np.testing.assert_allclose(mp(x)[4], ref, rtol=1e-12)
    assert dict(tuning.built) == built and mp.tuned_kernel(nvec=1, gram=False,
                                                           basis="monomial") is None
    monkeypatch.setattr(background, "busy", lambda: False)   # compiled: tuning resumes
    assert mp.tune() is not None and mp.tuned_kernel(nvec=1, gram=False,
                                                     basis="monomial") is not None


@requires_compiler
def test_cg_does_not_tune_while_variants_compile(fresh_cache, monkeypatch):
    from asp_core import background
    from asp_mpk.cacg import last_stats

    A = gallery.poisson2d(150)
    b = np.random.default_rng(5).standard_normal(A.shape[0])
    asp_mpk.cg(A, b, rtol=1e-8)                   # met the first time: over A's own arrays
    monkeypatch.setattr(background, "busy", lambda **kw: True)
    x, info = asp_mpk.cg(A, b, rtol=1e-8)
    st = last_stats()
    assert info == 0 and np.linalg.norm(b - A @ x) < 1e-8 * np.linalg.norm(b)
    # the first outer step specialises (ASP_MPK_COMPILE=wait); no later one times variants
    assert st.steps_by_mode.get("stored", 0) <= st.s
    assert st.steps_by_mode.get("classical", 0) >= st.iterations - st.s


@requires_compiler
@pytest.mark.parametrize("powers_first", [False, True])
def test_cg_streams_when_the_stored_basis_is_given_up(fresh_cache, powers_first):
    """A stored basis given up on as too slow leaves its variants' tuning unfinished; the
    streaming basis needs no tuning and is still tried with the variant already built.
    ``powers_first``: matrix_powers calls first bound a kernel of the monomial basis, which
    must not stream CG's recurrence basis (it did: the solve then never converged)."""
    from asp_mpk.cacg import choose_s, last_stats
    from asp_mpk.matrix import analysed

    # DIA: the kernel can stream; a matrix of its own per case (analyses are kept per process)
    A = gallery.poisson2d(149 if powers_first else 150)
    b = np.random.default_rng(6).standard_normal(A.shape[0])
    s = choose_s(A.shape[0], A.nnz)
    mp = analysed(A, np.float64).powers(s)
    if powers_first:
        for _ in range(2):
            asp_mpk.matrix_powers(A, b, s)
            _wait_for_background_compiles()
        # one call of CG's kind builds a variant of it (bound second, untuned)
        m = 2 * (s + 1)
        coefs = np.zeros((3, s))
        coefs[0] = 1.0
        mp.run(np.stack([b, b]), np.empty((2, s + 1, A.shape[0])), coefs, np.empty((m, m)),
               "recurrence")
        _wait_for_background_compiles()
        assert mp.bound_kernel() is mp.bound_kernel(basis="monomial") is not None
        assert mp.bound_kernel(basis="recurrence") is not None
    modes = mp.cg_modes
    modes.record("classical", 1e-3)
    for _ in range(modes.TRIES_BEFORE_GIVING_UP):
        modes.record("stored", 1.0)                 # far slower than classical: given up
    streamed = 0
    for _ in range(modes.EXPLORE_FROM_SOLVE):          # up to the solve exploring a new mode
        x, info = asp_mpk.cg(A, b, rtol=1e-8, maxiter=2000)   # SciPy takes 453
        st = last_stats()
        assert info == 0 and np.linalg.norm(b - A @ x) < 1e-8 * np.linalg.norm(b)
        assert st.steps_by_mode.get("stored", 0) <= st.s   # only the step that specialised
        streamed += st.steps_by_mode.get("stream", 0)
        _wait_for_background_compiles()                 # (modes are not timed next to gcc)
    assert streamed > 0


@requires_compiler
def test_other_formats_compile_between_solves_not_during_them(fresh_cache, monkeypatch):
    """A solve is a foreground span of the core's pool: the other formats' compiles, handed to
    the pool by the first variant's build, start only once no solve has run for IDLE_S."""
    import threading

    from asp_core import background as pool
    from asp_core.toolchain import Toolchain

    monkeypatch.setattr(pool, "IDLE_S", 0.3)
    real = Toolchain.compile
    runs: list[tuple[str, float, float]] = []

    def compile(self, source, workdir, **kw):
        t0 = time.monotonic()
        try:
            return real(self, source, workdir, **kw)
        finally:
            runs.append((threading.current_thread().name, t0, time.monotonic()))

    monkeypatch.setattr(Toolchain, "compile", compile)
    A = gallery.poisson2d(300)                    # dia-c first; dia and naive in the pool
    b = np.random.default_rng(4).standard_normal(A.shape[0])
    spans = []
    for _ in range(2):                            # back to back: the compiles wait
        t0 = time.monotonic()
        x, info = asp_mpk.cg(A, b, rtol=1e-8)
        spans.append((t0, time.monotonic()))
        assert info == 0 and np.linalg.norm(b - A @ x) < 1e-8 * np.linalg.norm(b)
    assert pool.busy()                            # waiting for the gap after the solves
    _wait_for_background_compiles()
    pooled = [(t0, t1) for name, t0, t1 in runs if name.startswith("asp-compile")]
    assert len(pooled) == 2
    end = spans[-1][1]
    assert all(t0 >= end + 0.25 for t0, _ in pooled), (pooled, spans)


@requires_compiler
def test_held_back_compiles_do_not_keep_the_matrices_that_asked_for_them(fresh_cache):
    """A busy caller going through new matrices of one pattern (a time-stepping loop): the
    other formats' compile is held back while it works, and every matrix's kernel asks for
    the same code.  Each used to hang a callback holding its matrix (copy, analysis, plans,
    kernels) on that one queued compile, so none of them was ever freed (13 MB per 40k-row
    matrix, without bound); only the matrix whose compile job it is may stay."""
    import gc
    import weakref

    from asp_core import background as pool

    from asp_mpk.matrix import analysed, clear_matrices

    base = gallery.poisson2d(40)
    rng = np.random.default_rng(0)
    seen = []
    with pool.foreground():                       # busy: the pool holds its compiles back
        for _ in range(5):
            A = base.copy()
            A.data = rng.uniform(1.0, 2.0, A.nnz)
            for _ in range(2):   # a matrix used once is not specialised
                V = asp_mpk.matrix_powers(A, np.ones(A.shape[0]), 3)
                assert np.allclose(V[3], A @ (A @ (A @ np.ones(A.shape[0]))))
            seen.append(weakref.ref(analysed(A)))
        assert pool.busy()
        clear_matrices()
        del A
        gc.collect()
        alive = sum(ref() is not None for ref in seen)
    _wait_for_background_compiles()
    assert alive <= 1, f"{alive} of {len(seen)} dropped matrices are still alive"


@requires_compiler
def test_candidates_plans_are_built_off_the_call_path(fresh_cache, monkeypatch):
    """Once the first variant runs, phase 4 builds the other candidates' plans on a background
    thread, and calls keep running that variant meanwhile: the calls that time a candidate only
    build it (its BCSR conversion and PA1 closures cost one call 0.5 s on a 1M-row banded
    matrix)."""
    import threading

    from asp_mpk.program import VariantProgram

    monkeypatch.setenv("ASP_MPK_COMPILE", "background")
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    where: list[tuple[str, str]] = []
    real = VariantProgram.materialise

    def spy(self, mp):
        where.append((self.name, threading.current_thread().name))
        return real(self, mp)

    monkeypatch.setattr(VariantProgram, "materialise", spy)
    A = gallery.banded_spd(20000, bandwidth=3)
    x = np.random.default_rng(5).standard_normal(A.shape[0])
    ref = A @ (A @ (A @ (A @ x)))
    mp = asp_mpk.MatrixPowers(A, 4)
    for _ in range(2000):
        np.testing.assert_allclose(mp(x)[4], ref, rtol=1e-10)
        if mp.tuned_kernel(nvec=1, gram=False, basis="monomial") is not None:
            break
        time.sleep(0.002)   # let the background compiles and plans run
    assert mp.tuned_kernel(nvec=1, gram=False, basis="monomial") is not None
    threads = {t for _, t in where}
    assert len({n for n, _ in where}) > 2 and "asp-mpk-plans" in threads, where
    assert threading.main_thread().name not in threads, where
    _wait_for_background_compiles()


def test_exit_waits_for_threads_started_by_background_threads():
    """The plans thread is started by the specialisation thread as it ends; exit used to join
    only the threads it saw first, so the plans thread ran native code while the interpreter
    tore down ("terminate called without an active exception", about one exit in two)."""
    from asp_mpk import background

    finished = []

    def second():
        time.sleep(0.2)
        finished.append("second")

    def first():
        time.sleep(0.1)
        background.start(second, name="test-second")
        finished.append("first")

    background.start(first, name="test-first")
    background.join_all()
    assert finished == ["first", "second"]


def test_exit_waits_for_threads_started_at_the_same_moment():
    """start() kept only live threads: one another caller had appended but not started yet
    was dropped, so exit did not wait for it (8 first calls from 8 threads left 1-7 running,
    and some exits aborted with "terminate called")."""
    import threading

    from asp_mpk import background

    release = threading.Event()
    barrier = threading.Barrier(8)
    mine = []

    def caller():
        barrier.wait()
        mine.append(background.start(release.wait, name="test-concurrent"))

    callers = [threading.Thread(target=caller) for _ in range(8)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    with background._LOCK:
        tracked = [t for t in background._THREADS if t in mine]
    release.set()
    background.join_all()
    assert len(tracked) == 8


@requires_compiler
def test_a_child_forked_during_a_first_calls_specialisation_runs(tmp_path):
    """The specialisation thread held the plugin registry's and the dispatcher's locks when
    the process forked; the child's first call waited for them forever."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = ("import os, faulthandler, numpy as np, asp_mpk\n"
              "from asp_mpk.gallery import poisson2d\n"
              "A = poisson2d(70); x = np.ones(A.shape[0])\n"
              "asp_mpk.matrix_powers(A, x, 3)\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    faulthandler.dump_traceback_later(60, exit=True)\n"
              "    V = asp_mpk.matrix_powers(A, x, 3)\n"
              "    os._exit(0 if np.allclose(V[3], A @ (A @ (A @ x))) else 3)\n"
              "_, status = os.waitpid(pid, 0)\n"
              "print('child', os.waitstatus_to_exitcode(status))\n")
    env = {**os.environ, "ASP_CACHE_DIR": str(tmp_path / "cache"),
           "ASP_MPK_COMPILE": "background"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-2000:]


def test_candidate_plans_stop_when_the_interpreter_exits(monkeypatch):
    from asp_mpk import background
    from asp_mpk.powers import _plan_candidates

    class Tuning:
        candidates = ["dia", "naive", "bcsr"]
        done = False
        prepared: list[str] = []

        def prepare(self, name):
            self.prepared.append(name)
            background._STOPPING.set()   # exit begins while the first plan is built

    monkeypatch.setattr(background, "_STOPPING", type(background._STOPPING)())
    tuning = Tuning()
    _plan_candidates(tuning)
    assert tuning.prepared == ["dia"]


def test_a_process_that_tunes_until_exit_exits_cleanly(tmp_path):
    """A small matrix of a kind seen before: the call starts the candidates' plans, and exit
    comes at once (this failed in most runs before exit joined the plans thread)."""
    import os
    import subprocess
    import sys

    script = ("import numpy as np, scipy.sparse as sp, asp_mpk\n"
              "asp_mpk.matrix_powers(sp.csr_matrix((400, 400)), np.ones(400), 3)\n")
    env = {**os.environ, "ASP_CACHE_DIR": str(tmp_path), "ASP_MPK_COMPILE": "background"}
    for _ in range(6):
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0 and "terminate called" not in run.stderr, run.stderr[-2000:]


@requires_compiler
def test_a_process_that_exits_during_its_first_compile_leaves_no_build_behind(tmp_path):
    """A call starts the kernel's compile on a background thread (the functional API's first
    past ``SPECIALISE_AFTER_S``) and the process exits at once.  The thread imported the
    compile pool while the interpreter exited, so the pool's exit handler (wait for running
    compiles) never ran: gcc outlived the process and its build folder stayed in the cache's
    tmp/."""
    import os
    import subprocess
    import sys

    script = ("import numpy as np, asp_mpk\n"
              "from asp_mpk.gallery import poisson2d\n"
              "from asp_mpk.matrix import analysed\n"
              "A = poisson2d(300)\n"
              "asp_mpk.matrix_powers(A, np.ones(A.shape[0]), 4)\n"
              "mp = analysed(A).powers(4)\n"
              "while not mp._pending:\n"
              "    asp_mpk.matrix_powers(A, np.ones(A.shape[0]), 4)\n")
    cache = tmp_path / "cache"
    env = {**os.environ, "ASP_CACHE_DIR": str(cache), "ASP_MPK_COMPILE": "background"}
    for _ in range(3):
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert not list((cache / "tmp").iterdir()), "a build folder outlived the process"

"""``asp bench mpk``: matrix powers and s-step CG against SciPy, in the same run, as ratios.

Cases (``--quick`` shrinks every problem for CI):

- As users call them: ``asp_mpk.matrix_powers(A, x, 8)`` (2-D Poisson 1000², variable
  coefficients, random banded SPD) and ``asp_mpk.cg(A, b, rtol=1e-8)`` (3-D Poisson 100³,
  2-D Poisson 700²), each in a new Python process with an empty ``ASP_CACHE_DIR``: the first
  call (analysis, compiles, tuning included) and the steady state, against SciPy in that
  same process.  For ``matrix_powers``, also the first call against SciPy's first computation
  of the same nine vectors, each alone in its own new process (both pay for fresh memory,
  which on a virtual machine can cost more than the products).
- k = 2, 4, 8, 16 powers on 2-D Poisson 1000² and 3-D Poisson 100³: ``matrix_powers`` and
  ``MatrixPowers.powers`` as users call them; rows labelled "kernel only" time the tuned PA1
  kernel into a preallocated ``out`` and the naive k-SpMV variant (matrix read k times), to
  show the kernel apart from the call.  SciPy's repeated ``A @ x`` is the anchor.  The naive
  k-SpMV memory roofline (CSR bytes x k / STREAM copy measured in this run) is printed.
- ``asp_mpk.spmv(A, x)`` on the same two matrices against its kernel only (the tuned product
  into a preallocated y) and SciPy's ``A @ x``.
- Small matrices (2-D Poisson 16² and 64²), 200 calls a timing: ``spmv`` and
  ``matrix_powers(A, x, 4)`` of the same matrix, and ``spmv`` with A's values changed in place
  before every call, against SciPy doing the same.
- For ``matrix_powers`` at k = 8 and for ``spmv``, a note gives what the public call costs
  beyond its own tuned kernel, from trimmed means of many calls in random order (a few percent
  is below what best-of-5 rows resolve).
- k = 4, 8 on 2-D linear elasticity (2x2 nodal blocks, nodes numbered in random order as an
  unstructured mesh would): PA1 over CSR and over BCSR register blocks (kernel only).
- CG to rtol 1e-8, steady state: ``asp_mpk.cg`` (s-step, or fused classical CG where that
  timed faster; the note gives the time per iteration of each mode) vs
  ``scipy.sparse.linalg.cg`` on 3-D Poisson 100³ and 2-D Poisson 700², and vs
  ``scipy.linalg.solve`` (dense, the paper's baseline) on a 4000 x 4000 2-D Poisson system.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["run_benchmarks", "naive_kspmv_bytes"]


def naive_kspmv_bytes(A: Any, k: int) -> float:
    """Bytes moved by k CSR products that each stream A, x and y once (8-byte values)."""
    n, nnz = A.shape[0], A.nnz
    return float(k * (nnz * (8 + 4) + (n + 1) * 4 + 2 * n * 8))


def _powers_cases(bench: Any, name: str, A: Any, ks: list[int],
                  formats: tuple[str, ...] = ()) -> None:
    """``formats``: variant-name prefixes (e.g. "csr-", "bcsr") also timed on their own."""
    import asp_mpk
    from asp_mpk.matrix import analysed
    from asp_mpk.powers import MatrixPowers

    n = A.shape[0]
    x = np.random.default_rng(0).standard_normal(n)
    stream = bench.stream_copy_gbs()
    for k in ks:
        t0 = time.perf_counter()
        mp = MatrixPowers(A, k, tune=True)
        setup = time.perf_counter() - t0
        out = np.empty((k + 1, n))
        coefs = np.zeros((3, k))
        coefs[0] = 1.0
        built = mp.variants()
        naive = next(fn for name, fn in built.items() if name.startswith("naive"))
        xs = x[None].copy()
        o3 = np.empty((1, k + 1, n))

        def scipy_powers(A: Any = A, k: int = k) -> np.ndarray:
            v = x
            for _ in range(k):
                v = A @ v
            return v

        def check(mp: MatrixPowers = mp, out: np.ndarray = out, k: int = k) -> bool:
            mp.powers(x, out=out)
            ref = scipy_powers()
            return bool(np.allclose(out[k], ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max()))

        nbytes = naive_kspmv_bytes(A, k)
        bench.note(f"{name} k={k}: variant {mp.variant} (analysis + tuning {setup:.2f} s); "
                   f"naive k-SpMV roofline {nbytes / (stream * 1e9) * 1e3:.2f} ms "
                   f"({nbytes / 1e6:.0f} MB at STREAM copy {stream:.1f} GB/s)")
        contenders = {
            "scipy A@x": scipy_powers,
            "asp matrix_powers": lambda k=k: asp_mpk.matrix_powers(A, x, k),
            "asp MatrixPowers": lambda mp=mp: mp.powers(x),
            "asp naive k-SpMV (kernel only)": lambda naive=naive, o3=o3, xs=xs, coefs=coefs:
                naive(xs, o3, coefs, None, "monomial"),
            "asp PA1 (kernel only)": lambda mp=mp, out=out: mp.powers(x, out=out),
        }
        for prefix in formats:
            vname = next((v for v in built if v.startswith(prefix)), None)
            if vname is not None:
                contenders[f"asp {vname} (kernel only)"] = lambda fn=built[vname], o3=o3, xs=xs, \
                    coefs=coefs: fn(xs, o3, coefs, None, "monomial")
        bench.compare(f"matrix powers {name} k={k}", contenders, anchor="scipy A@x",
                      bytes=nbytes, check=check)
        if k == 8:   # the functional form's own object, tuned: its kernel into a fixed out
            fmp = analysed(A).powers(k)
            fmp.tune()
            _overhead_note(bench, f"matrix_powers(A, x, {k}, out=V), {name}",
                           lambda k=k, out=out: asp_mpk.matrix_powers(A, x, k, out=out),
                           lambda fmp=fmp, out=out: fmp.powers(x, out=out), 120)


def _overhead_note(bench: Any, what: str, call: Any, kernel: Any, rounds: int) -> None:
    """Note what the public call costs beyond its own kernel, as a fraction of the kernel's
    time: both timed ``rounds`` times in random order, compared by their trimmed means (the
    middle 80 %).  A few percent is below what best-of-5 rows resolve.  Both write into the
    same ``out``: a result array of its own would also differ in what of it is in cache."""
    import random

    times: dict[str, list[float]] = {"call": [], "kernel": []}
    fns = {"call": call, "kernel": kernel}
    order = list(fns)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for key in order:
            t0 = time.perf_counter()
            fns[key]()
            times[key].append(time.perf_counter() - t0)
    cut = rounds // 10
    mean = {k: float(np.mean(np.sort(v)[cut:rounds - cut])) for k, v in times.items()}
    bench.note(f"{what}: {(mean['call'] / mean['kernel'] - 1) * 100:+.1f} % beyond its kernel "
               f"({mean['call'] * 1e3:.3f} against {mean['kernel'] * 1e3:.3f} ms, trimmed "
               f"means of {rounds} calls each, in random order)")


def _spmv_case(bench: Any, name: str, A: Any) -> None:
    """``asp_mpk.spmv(A, x)`` as users call it against its own kernel (the tuned k = 1
    kernel's product entry point into a preallocated y) and SciPy's ``A @ x``."""
    import asp_mpk
    from asp_mpk.matrix import analysed

    x = np.random.default_rng(0).standard_normal(A.shape[0])
    y = np.empty(A.shape[0])
    mp = analysed(A).powers(1)
    mp.tune()
    kern = mp._winner(1, "monomial")
    contenders = {"scipy A@x": lambda: A @ x, "asp spmv": lambda: asp_mpk.spmv(A, x)}
    if kern is not None and kern.has_spmv:
        contenders["asp spmv (kernel only)"] = lambda: kern.spmv(x, y)

    def check() -> bool:
        ref = A @ x
        return bool(np.allclose(asp_mpk.spmv(A, x), ref, rtol=1e-12,
                                atol=1e-14 * np.abs(ref).max()))

    bench.compare(f"spmv {name}", contenders, anchor="scipy A@x", check=check)
    if kern is not None and kern.has_spmv:
        _overhead_note(bench, f"spmv(A, x, out=y), {name}",
                       lambda: asp_mpk.spmv(A, x, out=y), lambda: kern.spmv(x, y), 600)


def _small_case(bench: Any, m: int) -> None:
    """A small matrix (2-D Poisson m²), each timing 200 calls: ``spmv`` and
    ``matrix_powers(A, x, 4)`` of the same matrix every call, steady state (specialised and
    tuned first: a loop of calls gets there after seconds, see :func:`_loop_case`), and
    ``spmv`` of a matrix whose values change in place before every call (new contents each
    call, as in a nonlinear solve), against SciPy doing the same.  Here what the call does
    around its kernel (recognising A, checks) is most of the time."""
    import asp_mpk
    from asp_mpk import gallery
    from asp_mpk.matrix import analysed

    A = gallery.poisson2d(m)
    x = np.random.default_rng(0).standard_normal(A.shape[0])
    calls = 200
    for k in (1, 4):   # the functional API's own objects, as earlier calls leave them
        asp_mpk.matrix_powers(A, x, k)
        analysed(A).powers(k).tune()

    def repeated(call: Any) -> Any:
        def run() -> None:
            for _ in range(calls):
                call()
        return run

    def scipy_powers() -> list[np.ndarray]:
        V = [x]
        for _ in range(4):
            V.append(A @ V[-1])
        return V

    def written(call: Any) -> Any:
        def run() -> Any:
            A.data *= 1.001
            return call()
        return run

    def check() -> bool:
        return bool(np.allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
                    and np.allclose(asp_mpk.matrix_powers(A, x, 4), scipy_powers(), rtol=1e-12))

    rows = A.shape[0]
    bench.compare(f"spmv 2-D Poisson {rows} rows, {calls} calls, steady state (tuned)", {
        "scipy A@x": repeated(lambda: A @ x),
        "asp spmv": repeated(lambda: asp_mpk.spmv(A, x))}, anchor="scipy A@x", check=check)
    bench.compare(f"matrix_powers k=4 2-D Poisson {rows} rows, {calls} calls, steady state "
                  "(tuned)", {
        "scipy A@x": repeated(scipy_powers),
        "asp matrix_powers": repeated(lambda: asp_mpk.matrix_powers(A, x, 4))},
        anchor="scipy A@x", check=check)
    bench.compare(f"spmv 2-D Poisson {rows} rows, values changed before each of {calls} calls", {
        "scipy A@x": repeated(written(lambda: A @ x)),
        "asp spmv": repeated(written(lambda: asp_mpk.spmv(A, x)))}, anchor="scipy A@x",
        check=check)


_LOOP = """\
import json, time
import numpy as np
from asp_mpk import gallery
A = gallery.poisson2d({m})
x = np.random.default_rng(0).standard_normal(A.shape[0])
if {asp}:
    import asp_mpk
    call = (lambda: asp_mpk.spmv(A, x)) if {k} == 1 else (lambda: asp_mpk.matrix_powers(A, x, {k}))
else:
    def call():
        v = x
        for _ in range({k}):
            v = A @ v
start = time.perf_counter()
for _ in range({calls}):
    call()
print(json.dumps(time.perf_counter() - start))
"""


def _loop_case(bench: Any, m: int, k: int, calls: int) -> None:
    """A loop of ``calls`` calls of ``spmv(A, x)`` (``k`` = 1) or ``matrix_powers(A, x, k)``
    of one small matrix (2-D Poisson m²), as a script runs it: in a new process with an
    empty cache, against SciPy's products in a new process (imports and the matrix outside
    the timing; two rounds, alternating)."""
    samples: dict[str, list[float]] = {"scipy A@x": [], "asp": []}
    for _ in range(2):
        for side in samples:
            script = _LOOP.format(m=m, k=k, calls=calls, asp=side == "asp")
            samples[side].append(float(_in_new_process(script)))
    what = "spmv" if k == 1 else f"matrix_powers k={k}"
    bench.record(f"{what} 2-D Poisson {m * m} rows, a loop of {calls} calls in a new process "
                 "(empty cache)", samples, anchor="scipy A@x")


def _cg_case(bench: Any, name: str, A: Any, repeats: int) -> None:
    import scipy.sparse.linalg as spla

    import asp_mpk
    from asp_mpk.cacg import last_stats

    b = np.random.default_rng(1).standard_normal(A.shape[0])
    nb = np.linalg.norm(b)
    asp_mpk.cg(A, b, rtol=1e-8)             # first call here: see the fresh-process rows
    counts = [0]

    def count(_: Any) -> None:
        counts[0] += 1

    _, info = spla.cg(A, b, rtol=1e-8, callback=count)
    x, info2 = asp_mpk.cg(A, b, rtol=1e-8)
    st = last_stats()
    per_it = {m: f"{t / max(st.s, 1) * 1e3:.2f} ms" for m, t in sorted(st.modes.items())}
    bench.note(f"CG {name}: scipy {counts[0]} iterations (info {info}); asp "
               f"s={st.s} {st.iterations} iterations ({st.steps_by_mode} by mode; time per "
               f"iteration by mode {per_it}), "
               f"{st.replacements} residual replacements (info {info2}); final rel. residual "
               f"{np.linalg.norm(b - A @ x) / nb:.1e}")

    def check() -> bool:
        return bool(info == 0 and info2 == 0 and np.linalg.norm(b - A @ x) < 1e-8 * nb)

    bench.compare(f"CG to rtol 1e-8 {name}", {
        "scipy cg": lambda: spla.cg(A, b, rtol=1e-8),
        "asp cg": lambda: asp_mpk.cg(A, b, rtol=1e-8),
    }, anchor="scipy cg", repeats=repeats, check=check)


#: what a fresh process runs (``{matrix}`` and ``{call}`` filled in): SciPy, then the first
#: asp call as a new user makes it (empty ASP_CACHE_DIR: analysis, compiles, tuning included),
#: then steady state interleaved with SciPy.  ``import asp_mpk`` is timed on its own (after
#: SciPy's imports, which both need): it loads the core, so a first call does not.  Prints one
#: JSON line.
_FRESH = """
import json, time
import numpy as np
import scipy.sparse.linalg as spla
t = time.perf_counter(); import asp_mpk; imported = time.perf_counter() - t
from asp_mpk import gallery
A = {matrix}
v = np.random.default_rng(1).standard_normal(A.shape[0])
def scipy_call():
    {scipy}
def asp_call():
    {call}
clock = time.perf_counter
t = clock(); scipy_call(); sc = [clock() - t]
t = clock(); asp_call(); first = clock() - t
steady = []
for _ in range({repeats}):
    t = clock(); asp_call(); steady.append(clock() - t)
    t = clock(); scipy_call(); sc.append(clock() - t)
print(json.dumps({{"scipy": min(sc), "import": imported, "first": first, "second": steady[0],
                  "steady": min(steady[-5:]), "calls37": min(steady[35:40] or [0])}}))
"""

_CALLS = {
    "cg": ("spla.cg(A, v, rtol=1e-8)", "asp_mpk.cg(A, v, rtol=1e-8)"),
    "powers": ("w = v\n    for _ in range(8): w = A @ w",
               "asp_mpk.matrix_powers(A, v, 8)"),
    "spmv": ("A @ v", "asp_mpk.spmv(A, v)"),
}
#: what each of :data:`_CALLS` computes, for the rows' labels
_CALL_NAMES = {"cg": "cg rtol 1e-8", "powers": "matrix_powers k=8", "spmv": "spmv"}


def fresh_process(matrix: str, call: str, repeats: int = 3) -> dict[str, float]:
    """Seconds of SciPy (best), of ``import asp_mpk``, of asp's first and second calls and of
    its steady state (best of the last 5 of ``repeats`` calls: tuning times variants on the
    first calls; ``calls37``: best of calls 37-41, 0 with fewer calls), measured in a new
    Python process with an empty ``ASP_CACHE_DIR``.
    ``matrix``: an expression over ``gallery``; ``call``: "cg" (rtol 1e-8), "powers" (k=8) or
    "spmv"."""
    scipy_call, asp_call = _CALLS[call]
    script = _FRESH.format(matrix=matrix, scipy=scipy_call, call=asp_call, repeats=repeats)
    return _in_new_process(script)


#: one first call alone in a new process (``{matrix}``, ``{call}`` filled in): the imports both
#: sides need, A and v built, then the call timed.  Prints its seconds.
_FIRST = """
import json, time
import numpy as np
import scipy.sparse.linalg as spla
import asp_mpk
from asp_mpk import gallery
A = {matrix}
v = np.random.default_rng(1).standard_normal(A.shape[0])
t = time.perf_counter()
{call}
print(json.dumps(time.perf_counter() - t))
"""

#: SciPy's way to what ``matrix_powers(A, v, 8)`` returns: all nine vectors kept (a list, so
#: no copy into one array is counted against SciPy)
_SCIPY_POWERS = "V = [v]\nfor _ in range(8): V.append(A @ V[-1])"


def first_calls(matrix: str, rounds: int = 3) -> dict[str, float]:
    """Median seconds of SciPy's first computation of ``[v, Av, ..., A^8 v]`` and of asp's
    first ``matrix_powers(A, v, 8)``, each alone in its own new process (empty
    ``ASP_CACHE_DIR``), ``rounds`` processes each, alternating.  What a first call costs
    against SciPy's first, both paying for fresh memory: in :func:`fresh_process` SciPy's
    figure is its best warm call, which discards the vectors it does not need next."""
    import statistics

    times: dict[str, list[float]] = {"scipy": [], "asp": []}
    for _ in range(rounds):
        for side, call in (("scipy", _SCIPY_POWERS),
                           ("asp", _CALLS["powers"][1])):
            script = _FIRST.format(matrix=matrix, call=call)
            times[side].append(float(_in_new_process(script)))
    return {side: statistics.median(ts) for side, ts in times.items()}


def _in_new_process(script: str) -> Any:
    """The JSON value the last line of ``script``'s output holds, run by a new Python with an
    empty ``ASP_CACHE_DIR``."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="asp-bench-cache-") as cache:
        env = {**os.environ, "ASP_CACHE_DIR": cache}
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"fresh-process benchmark failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fresh_case(bench: Any, label: str, matrix: str, call: str, repeats: int) -> None:
    """A fresh-process row: first call and steady state as ratios against SciPy."""
    r = fresh_process(matrix, call, repeats)
    what = _CALL_NAMES[call]
    mid = (f"; calls 37-41 {r['calls37']:.3f} s (x{r['scipy'] / r['calls37']:.2f}: while the "
           "variants are compiled and timed)" if r.get("calls37") and repeats > 45 else "")
    bench.note(f"{what} {label}, as users call it (new process, empty cache): SciPy "
               f"{r['scipy']:.3f} s; import asp_mpk {r['import']:.3f} s; asp first call "
               f"{r['first']:.3f} s (x{r['scipy'] / r['first']:.2f}), second {r['second']:.3f} s "
               f"(x{r['scipy'] / r['second']:.2f}), steady {r['steady']:.3f} s "
               f"(x{r['scipy'] / r['steady']:.2f}, best of calls {max(2, repeats - 3)}-"
               f"{repeats + 1}){mid}")
    if call == "powers":
        f = first_calls(matrix)
        bench.note(f"matrix_powers k=8 {label}, first call against SciPy's first "
                   f"[v, Av, ..., A^8 v] (each alone in a new process, median of 3): SciPy "
                   f"{f['scipy']:.3f} s, asp {f['asp']:.3f} s (x{f['scipy'] / f['asp']:.2f})")


def _dense_case(bench: Any, A: Any) -> None:
    import scipy.linalg

    import asp_mpk

    D = A.toarray()
    b = np.random.default_rng(2).standard_normal(A.shape[0])
    asp_mpk.cg(A, b, rtol=1e-8)

    def check() -> bool:
        x, info = asp_mpk.cg(A, b, rtol=1e-8)
        return bool(info == 0 and np.linalg.norm(b - A @ x) < 1e-8 * np.linalg.norm(b))

    bench.compare(f"solve {A.shape[0]}x{A.shape[1]} 2-D Poisson (paper baseline)", {
        "scipy.linalg.solve": lambda: scipy.linalg.solve(D, b, assume_a="pos"),
        "asp cg": lambda: asp_mpk.cg(A, b, rtol=1e-8),
    }, anchor="scipy.linalg.solve", check=check)


def run_benchmarks(bench: Any) -> None:
    """Entry point of ``asp bench mpk`` (``bench`` is an ``asp_bench.BenchContext``)."""
    from asp_mpk import gallery

    quick = bool(getattr(bench, "quick", False))
    # as users call them: a new process with an empty cache, first call and steady state
    m2, m3, mc = (300, 40, 150) if quick else (1000, 100, 700)
    for label, matrix in ((f"2-D Poisson {m2}²", f"gallery.poisson2d({m2})"),
                          (f"2-D variable coefficients {m2}²",
                           f"gallery.variable_poisson2d({m2})"),
                          (f"random banded SPD {m2 * m2} rows",
                           f"gallery.banded_spd({m2 * m2}, bandwidth=3)")):
        _fresh_case(bench, label, matrix, "powers", 80)
    _fresh_case(bench, f"3-D Poisson {m3}³", f"gallery.poisson3d({m3})", "cg", 2)
    _fresh_case(bench, f"2-D Poisson {mc}²", f"gallery.poisson2d({mc})", "cg", 2)
    # no diagonals or blocks to exploit: the CSR products race the tuned kernel
    nu, mu = (50_000, 120) if quick else (250_000, 250)
    unstructured = f"gallery.unstructured_spd({nu}, seed=1)"
    _fresh_case(bench, f"unstructured SPD {nu} rows", unstructured, "powers", 80)
    _fresh_case(bench, f"unstructured SPD {nu} rows", unstructured, "spmv", 400)
    _fresh_case(bench, f"2-D Poisson {mu}², nodes shuffled",
                f"gallery.shuffle_nodes(gallery.poisson2d({mu}), 1)", "cg", 2)
    p2 = gallery.poisson2d(300 if quick else 1000)
    p3 = gallery.poisson3d(40 if quick else 100)
    ks = [2, 8] if quick else [2, 4, 8, 16]
    _powers_cases(bench, f"2-D Poisson {p2.shape[0]} rows", p2, ks)
    _powers_cases(bench, f"3-D Poisson {p3.shape[0]} rows", p3, ks)
    _spmv_case(bench, f"2-D Poisson {p2.shape[0]} rows", p2)
    _spmv_case(bench, f"3-D Poisson {p3.shape[0]} rows", p3)
    for m in (16, 64):
        _small_case(bench, m)
        for k in (1, 4):
            for calls in (1000, 10_000 if quick else 100_000):
                _loop_case(bench, m, k, calls)
    el = gallery.shuffle_nodes(gallery.elasticity(120 if quick else 400), 2)
    _powers_cases(bench, f"2-D elasticity {el.shape[0]} rows, shuffled nodes", el,
                  [4] if quick else [4, 8], formats=("csr-", "bcsr"))
    _cg_case(bench, f"3-D Poisson {p3.shape[0]} rows", p3, repeats=1 if not quick else 3)
    q2 = gallery.poisson2d(150 if quick else 700)
    _cg_case(bench, f"2-D Poisson {q2.shape[0]} rows", q2, repeats=1 if not quick else 3)
    _dense_case(bench, gallery.poisson2d(40, 25) if quick else gallery.poisson2d(80, 50))

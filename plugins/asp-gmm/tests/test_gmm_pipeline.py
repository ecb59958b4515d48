"""The five phases as registered components: choices, reasons, passes, tuning, fallback."""

from __future__ import annotations

import numpy as np
import pytest
from asp_gmm import engine, reference
from asp_gmm.dast import Fused, LogDensity, Moments, find
from asp_gmm.programs import problem, variants_for

from asp_core import SpecializationWarning, get_registry
from asp_core.autotune import PerfDB

from .conftest import make_problem


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """Empty cache and perf database, fresh dispatchers (as a new process)."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    engine.reset()
    yield tmp_path / "cache"
    engine.reset()


def _events(op="em_step", options=None, kind=None):
    ctx = engine.dispatcher(op, options).last_context
    return [(e, d) for e, d in ctx.events if kind is None or e == kind]


def _platform(op="em_step", options=None):
    """The platform selection's typed decision for the last specialisation of ``op``."""
    chosen = engine.dispatcher(op, options).last_context.decision("platform_selection")
    assert chosen is not None
    return chosen


def test_all_five_phases_are_registered():
    phases = get_registry().phases("gmm")
    names = {phase: [c.name for c in comps] for phase, comps in phases.items()}
    assert names["frontend"] == ["em-call"]
    assert names["domain_optimization"] == ["em-passes"]
    assert set(names["platform_selection"]) == {"cuda", "openmp", "numpy"}
    assert set(names["platform_optimization"]) == {"cpu-variants", "cuda-variants"}
    assert set(names["backend"]) == {"openmp-c", "cuda-c", "numpy"}


def test_domain_passes_rewrite_the_dast():
    p = problem("em_step", 4, 3, "full")
    assert isinstance(p.steps[0], Fused)
    density = find(p, LogDensity)
    assert density.constants_folded and density.triangular
    assert find(p, Moments).center == "component"
    assert find(problem("em_step", 4, 3, "diag"), Moments).center == "component"


def test_variants_differ_in_parallel_strategy():
    from asp_core.hardware import query
    from asp_gmm.layout import layout_for
    from asp_gmm.variants import fused_blocks

    first, second = fused_blocks(layout_for(8, 4, "diag"), query().caches.get("L1d"))
    names = [v.name for v in variants_for("openmp", "em_step", 8, 4, "diag")]
    assert names == [f"fused-b{first}", f"fused-b{second}"]
    every = [v.name for v in variants_for("openmp", "em_step", 8, 4, "diag",
                                          options={"variants": "all"})]
    assert every == names + ["samples", "components", "dims"]
    without = variants_for("openmp", "em_step", 8, 4, "diag",
                           options={"disable_passes": ("fuse-em",)})
    assert [v.name for v in without] == ["samples", "components", "dims"]
    cuda = [v.name for v in variants_for("cuda", "em_step", 8, 4, "full")]
    assert cuda == ["fused-t128", "fused-t256", "samples", "components", "dims"]


def test_block_model_fits_the_l1_cache():
    """The first candidate is the largest block whose scratch fits L1; the second its half."""
    from asp_gmm.layout import layout_for
    from asp_gmm.variants import fused_blocks

    full = layout_for(32, 16, "full")  # 640 bytes per sample
    assert fused_blocks(full, 48 * 1024) == (64, 32)
    assert fused_blocks(full, 32 * 1024) == (32, 64)  # smallest size: the double is timed
    assert fused_blocks(full, 1 << 20) == (256, 128)
    assert fused_blocks(full, None) == fused_blocks(full, 32 * 1024)


def test_platform_choice_and_tuning_are_recorded_and_remembered(fresh):
    X, w, means, pc = make_problem(3000, 4, 3, "full", seed=11)
    ref = reference.em_step(X, w, means, pc, "full", 1e-6)
    calls = 0
    opts = {"variants": "all"}
    while calls == 0 or engine.tuning(options=opts):  # each variant timed on a real iteration
        got = engine.em_step(X, w, means, pc, "full", 1e-6, options=opts)
        np.testing.assert_allclose(got.means, ref.means, rtol=1e-10)
        calls += 1
        assert calls < 50, "tuning never finished"
    assert calls >= 5
    events = _events(options=opts)
    chosen = _platform(options=opts)
    assert chosen.choice == "openmp"
    assert dict(chosen.params["rejected"]).get("cuda")  # the reason CUDA was not used
    (tuned,) = [d for e, d in events if e == "autotune"]
    assert tuned["source"] == "tuned now"
    names = [d for e, d in events if e == "variants"][0]["names"]
    assert {t[0] for t in tuned["timings"]} == set(names)
    assert {"samples", "components", "dims"} < set(names)
    # one iteration each, one more for those within 10 % of the best (autotune.CLOSE)
    assert all(t[2] in (1, 2) for t in tuned["timings"])
    assert calls == sum(t[2] for t in tuned["timings"])
    assert len(PerfDB().summary()) == 1
    # a new process with a problem of the same shape class (order of magnitude of N) reuses
    # the winner
    engine.reset()
    X2, w2, means2, pc2 = make_problem(5000, 4, 3, "full", seed=12)
    engine.em_step(X2, w2, means2, pc2, "full", 1e-6, options=opts)
    (again,) = [d for e, d in _events(options=opts, kind="autotune")]
    assert again["source"] == "perf database" and again["winner"] == tuned["winner"]


def test_tied_and_spherical_run_on_numpy_platform(fresh):
    for cov in ("tied", "spherical"):
        X, w, means, pc = make_problem(200, 3, 2, cov, seed=1)
        got = engine.em_step(X, w, means, pc, cov, 1e-6)
        ref = reference.em_step(X, w, means, pc, cov, 1e-6)
        np.testing.assert_array_equal(got.means, ref.means)
        chosen = _platform()
        assert chosen.choice == "numpy"
        assert "openmp" in dict(chosen.params["rejected"])


def test_a_function_named_like_an_op_is_not_specialised_as_it(fresh):
    """The frontend matched the kernel by its name: a user's own ``em_step`` handed to the
    gmm specializer compiled asp_gmm's EM step in its place."""
    from asp_core import Dispatcher

    def em_step(X, weights, means, precisions_cholesky, covariance_type, reg_covar):
        return "mine"

    X, w, means, pc = make_problem(50, 2, 2, "diag", seed=3)
    with pytest.warns(SpecializationWarning, match="handles calls of asp_gmm.reference"):
        d = Dispatcher("gmm", em_step, instance=engine.GMMKernel("em_step"))
        assert d(X, w, means, pc, "diag", 1e-6) == "mine"


def test_user_can_choose_numpy_platform(fresh):
    X, w, means, pc = make_problem(200, 3, 2, "diag", seed=2)
    opts = {"platform_selection": "numpy"}
    got = engine.em_step(X, w, means, pc, "diag", 1e-6, options=opts)
    np.testing.assert_array_equal(got.means, reference.em_step(X, w, means, pc, "diag",
                                                               1e-6).means)
    assert _platform(options=opts).choice == "numpy"


def test_options_may_hold_lists(fresh):
    """Options as docs/configuration.md writes them (``disable_passes`` a list; here on the
    NumPy platform, so nothing compiles), nested or with names of mixed types: the engine's
    per-options tables key them (a list was unhashable), a list and a tuple of the same names
    sharing one dispatcher."""
    from asp_gmm import GMM, GaussianMixture

    X, w, means, pc = make_problem(200, 3, 2, "diag", seed=7)
    listed = {"platform_selection": "numpy", "disable_passes": ["fuse-em"]}
    GaussianMixture(2, covariance_type="diag", random_state=0, asp_options=listed).fit(X)
    GMM(2, 3, options=listed).train(X)
    got = engine.em_step(X, w, means, pc, "diag", 1e-6, options=listed,
                         wait_for_candidates=False)
    np.testing.assert_array_equal(got.means, reference.em_step(X, w, means, pc, "diag",
                                                               1e-6).means)
    tupled = {"disable_passes": ("fuse-em",), "platform_selection": "numpy"}
    assert engine.dispatcher("em_step", listed) is engine.dispatcher("em_step", tupled)
    mixed = {**listed, 1: {"nested": [1, {2}], 3.0: None}}
    assert engine.dispatcher("em_step", mixed) is engine.dispatcher("em_step", dict(mixed))
    assert engine.dispatcher("em_step", mixed) is not engine.dispatcher("em_step", listed)
    assert engine.compiled(3, 2, "diag", np.float64, mixed)
    with pytest.raises(TypeError, match="asp options must be"):
        engine.dispatcher("em_step", {"platform_selection": np.zeros(2)})


def test_disabling_fold_constants_moves_to_numpy(fresh):
    X, w, means, pc = make_problem(200, 3, 2, "full", seed=3)
    opts = {"disable_passes": ("fold-constants",)}
    engine.em_step(X, w, means, pc, "full", 1e-6, options=opts)
    chosen = _platform(options=opts)
    assert chosen.choice == "numpy"
    assert "fold-constants" in dict(chosen.params["rejected"])["openmp"]


def test_disabling_shift_moments_still_correct(fresh):
    X, w, means, pc = make_problem(500, 3, 2, "full", seed=4)
    opts = {"disable_passes": ("shift-moments",)}
    got = engine.em_step(X, w, means, pc, "full", 1e-6, options=opts)
    ref = reference.em_step(X, w, means, pc, "full", 1e-6)
    np.testing.assert_allclose(got.covariances, ref.covariances, rtol=1e-8)


def test_no_compiler_falls_back_to_numpy_with_warning(fresh, monkeypatch):
    from asp_core import toolchain

    monkeypatch.setenv("ASP_CC", "/nonexistent/cc")
    if hasattr(toolchain.find_toolchain, "cache_clear"):
        toolchain.find_toolchain.cache_clear()
    try:
        X, w, means, pc = make_problem(200, 3, 2, "full", seed=5)
        with pytest.warns(SpecializationWarning, match="runs in pure Python"):
            got = engine.em_step(X, w, means, pc, "full", 1e-6)
        np.testing.assert_array_equal(got.means, reference.em_step(X, w, means, pc, "full",
                                                                   1e-6).means)
    finally:
        monkeypatch.delenv("ASP_CC")
        if hasattr(toolchain.find_toolchain, "cache_clear"):
            toolchain.find_toolchain.cache_clear()


def test_python_mode_uses_reference(fresh, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "python")
    X, w, means, pc = make_problem(100, 2, 2, "diag", seed=6)
    got = engine.em_step(X, w, means, pc, "diag", 1e-6)
    np.testing.assert_array_equal(got.means, reference.em_step(X, w, means, pc, "diag",
                                                               1e-6).means)
    assert engine.dispatcher("em_step").last_context is None


def test_registration_module_imports_no_heavy_dependency():
    import subprocess
    import sys

    code = ("import sys, asp_gmm.plugin; "
            "print(sorted(m for m in ('numpy', 'scipy', 'sklearn', 'pycuda', 'cupy', 'mako') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_entry_point_is_installed():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="asp")}
    assert eps.get("gmm") == "asp_gmm.plugin"


def test_fit_drops_candidates_still_compiling(fresh, monkeypatch):
    """fit never waits for gcc to time a second candidate: while one still compiles in the
    background, the model's variant is kept for this process and nothing is stored."""
    from asp_gmm import backends

    monkeypatch.setattr(backends, "compiling", lambda: True)
    X, w, means, pc = make_problem(2000, 4, 3, "full", seed=13)
    engine.em_step(X, w, means, pc, "full", 1e-6, wait_for_candidates=False)
    assert not engine.tuning()
    events = _events()
    names = [d for e, d in events if e == "variants"][0]["names"]
    (excluded,) = [d for e, d in events if e == "autotune-excluded"]
    assert excluded["variant"] == names[1] and "compiling in the background" in excluded["reason"]
    assert [d["winner"] for e, d in events if e == "autotune"] == [names[0]]
    assert PerfDB().summary() == []
    # when nothing is compiling, the default engine call times every candidate
    engine.reset()
    monkeypatch.setattr(backends, "compiling", lambda: False)
    for _ in range(8):   # each candidate timed, close ones twice (the tuner's rule)
        engine.em_step(X, w, means, pc, "full", 1e-6, wait_for_candidates=False)
        if _events(kind="autotune"):
            break
    assert [d["source"] for e, d in _events(kind="autotune")] == ["tuned now"]


def test_bench_times_fit_in_a_fresh_process(tmp_path):
    """The benchmark's first-fit row: a new Python process with an empty cache runs two
    fits as a user writes them and reports both times."""
    from asp_gmm.bench import fit_in_subprocess

    got = fit_in_subprocess("asp", 400, 2, 2, "diag", str(tmp_path / "cache"))
    assert got["first"] > 0 and got["second"] > 0
    assert got["first_iterations"] >= 1 and np.isfinite(got["first_lower_bound"])
    # fits of milliseconds ran in NumPy, and their shape is not built at exit either
    assert not (tmp_path / "cache" / "code").exists()

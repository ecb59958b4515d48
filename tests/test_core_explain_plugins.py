"""``asp explain`` shows the GMM and MPK specializers' runs like any other kernel's: the five
phases' choices, the platform programs, the variants and compiles, from a plain user script
(asp-mpk's specialisation, which runs on a background thread while SciPy serves the first
calls, included), and with ``--platform cuda`` each kernel lowered for CUDA."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from asp_core import PHASES
from asp_core.cli import cli
from pytest_asp import requires_compiler

SCRIPT = """
import numpy as np
from asp_gmm import engine
from asp_mpk import MatrixPowers, gallery

X = np.random.default_rng(0).standard_normal((500, 3))
engine.em_step(X, np.full(2, 0.5), X[:2].copy(), np.ones((2, 3)), "diag", 1e-6)
mp = MatrixPowers(gallery.poisson2d(20), 3, tune=False)
mp.powers(np.ones(mp.n))
"""


@requires_compiler
def test_explain_shows_gmm_and_mpk_through_the_pipeline(tmp_path, fresh_cache, monkeypatch):
    pytest.importorskip("asp_gmm")
    pytest.importorskip("asp_mpk")
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    monkeypatch.delenv("ASP_MPK_COMPILE", raising=False)   # the default: in the background
    script = tmp_path / "fit_and_powers.py"
    script.write_text(SCRIPT)
    result = CliRunner().invoke(cli, ["explain", "--json", "--platform", "cuda", str(script)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    kernels = {k["kernel"]: k for k in json.loads(result.output)["kernels"]}
    gmm, gmm_cuda = kernels["asp_gmm.em_step"], kernels["asp_gmm.em_step [lowered for cuda]"]
    mpk = next(k for name, k in kernels.items() if name.startswith("MatrixPowers(n=400, k=3)")
               and "lowered" not in name)
    for rec in (gmm, mpk):
        assert rec["fallback"] is None
        assert {p["phase"] for p in rec["phases"]} == set(PHASES)
        assert rec["variants"] and rec["builds"] and rec["compiles"]
    chosen = {p["phase"]: p["component"] for p in mpk["phases"]}
    assert chosen["platform_optimization"] == "pa1-variants" and chosen["backend"] == "c"
    assert any(p["platform"] == "openmp variants" for p in mpk["program"])   # phase 4's plans
    platform = next(p for p in gmm_cuda["phases"] if p["phase"] == "platform_selection")
    assert platform["component"] == "cuda" and "named by the caller" in platform["reason"]
    assert "templates/em_cuda.cu.mako" in gmm_cuda["program"][0]["text"]
    assert gmm_cuda["variants"][0]["names"][0].startswith("fused-t")
    assert gmm_cuda["compiles"] == []   # lowered, never built
    mpk_cuda = kernels[mpk["kernel"] + " [lowered for cuda]"]
    assert "no platform 'cuda'" in mpk_cuda["phases"][-1]["reason"]


ITERATE_SCRIPT = """
import numpy as np
from asp_stencil import StencilGrid
from asp_stencil.temporal.bench import Heat
from asp_stencil.temporal import iterate
from asp_stencil.temporal.iterate import iterate_decision

iterate.BUILD_AFTER_COMPILES = 0.0   # build the blocked code at once (40^3 never pays for it)
k = Heat()
k.centre = -6.0
a, b = StencilGrid((40, 40, 40)), StencilGrid((40, 40, 40))
a.data[...] = np.random.default_rng(0).random(a.data.shape)
for _ in range(40):   # a dozen calls usually decide; more where the timings are close
    k.iterate(a, b, steps=64)
    if iterate_decision(k) is not None:
        break
"""


@requires_compiler
def test_explain_shows_the_blocked_iteration_through_all_five_phases(tmp_path, fresh_cache,
                                                                     monkeypatch):
    """``iterate``'s temporally blocked code is the stencil specializer's ``openmp-temporal``
    platform: its report shows the five phases, its program, variants and tuning winner."""
    pytest.importorskip("asp_stencil")
    from asp_core.cli.explain import render

    for name in ("ASP_STENCIL_TEMPORAL", "ASP_STENCIL_TEMPORAL_PARAMS", "ASP_AUTOTUNE",
                 "ASP_PLATFORM_SELECTION"):
        monkeypatch.delenv(name, raising=False)
    script = tmp_path / "heat_iterate.py"
    script.write_text(ITERATE_SCRIPT)
    result = CliRunner().invoke(cli, ["explain", "--json", str(script)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    kernels = {k["kernel"]: k for k in json.loads(result.output)["kernels"]}
    rec = kernels["Heat.kernel (iterate, temporal blocking)"]
    assert rec["fallback"] is None
    chosen = {p["phase"]: p["component"] for p in rec["phases"]}
    assert set(chosen) == set(PHASES)
    assert (chosen["platform_selection"], chosen["platform_optimization"],
            chosen["backend"]) == ("openmp-temporal", "temporal-params", "c-temporal")
    (program,) = rec["program"]
    assert program["platform"] == "openmp-temporal" and "_run(" in program["text"]
    names = rec["variants"][0]["names"]
    assert names and all(n.startswith("K") for n in names)
    assert rec["compiles"] and rec["builds"]
    winner = rec["autotune"][-1]["winner"]
    assert winner in ["plain", *names]
    text = render(rec)
    for phase in PHASES:
        assert f"  {phase}: {chosen[phase]} — " in text
    assert "--- platform program (openmp-temporal)" in text
    assert f"--- autotuning: winner {winner}" in text


@requires_compiler
def test_explain_says_why_a_matrix_used_once_was_not_specialised(tmp_path, fresh_cache):
    """``spmv``, ``matrix_powers`` and ``cg`` compute contents met the first time over A's own
    arrays and specialise nothing: ``asp explain`` printed "no kernel was specialised" for such
    a script and nothing about why.  Each call now has a report saying so."""
    pytest.importorskip("asp_mpk")
    from asp_mpk.matrix import clear_matrices

    clear_matrices()   # the script runs in this process: no matrix of an earlier test is known
    script = tmp_path / "once.py"
    script.write_text("import numpy as np\nimport asp_mpk\nfrom asp_mpk import gallery\n"
                      "x = np.ones(400)\n"
                      "asp_mpk.spmv(gallery.poisson2d(20), x)\n"
                      "asp_mpk.matrix_powers(2.0 * gallery.poisson2d(20), x, 3)\n"
                      "asp_mpk.cg(3.0 * gallery.poisson2d(20), x)\n")
    result = CliRunner().invoke(cli, ["explain", "--json", str(script)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    kernels = json.loads(result.output)["kernels"]
    assert [k["kernel"] for k in kernels] == ["spmv", "matrix_powers", "cg"]
    for k in kernels:
        (d,) = k["decisions"]
        assert d["what"] == "first sighting" and "next call" in d["reason"]
        # the next call analyses; the kernel waits for more calls ("the next call specialises
        # it" was read as a promise that a second call compiles)
        assert "SPECIALISE_AFTER_S" in d["reason"]
        assert not k["compiles"] and k["fallback"] is None


@requires_compiler
def test_explain_says_why_a_small_fit_ran_in_numpy(tmp_path, fresh_cache):
    """A small ``GaussianMixture.fit`` ends before its shape's library is worth compiling and
    runs every pass in NumPy: ``asp explain`` printed "no kernel was specialised" for such a
    script and nothing about why.  The fit now has a report saying how many passes ran in
    NumPy and why, under a heading without the "at :0" of a kernel that has no source."""
    pytest.importorskip("asp_gmm")
    from asp_gmm import engine

    engine.reset()   # the script runs in this process: no shape of an earlier test is built
    script = tmp_path / "small_fit.py"
    script.write_text("import numpy as np\nfrom asp_gmm import GaussianMixture\n"
                      "X = np.random.default_rng(0).standard_normal((300, 2))\n"
                      "GaussianMixture(2, covariance_type='diag', random_state=0).fit(X)\n")
    result = CliRunner().invoke(cli, ["explain", "--json", str(script)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (fit,) = json.loads(result.output)["kernels"]
    assert fit["kernel"] == "GaussianMixture.fit" and fit["fallback"] is None
    (d,) = fit["decisions"]
    assert d["what"] == "NumPy passes" and d["choice"].split()[0].isdigit()
    assert "once a fit's NumPy passes take or foresee 0.1 s" in d["reason"]
    text = CliRunner().invoke(cli, ["explain", str(script)], catch_exceptions=False).output
    assert "=== kernel GaussianMixture.fit (gmm)\n" in text

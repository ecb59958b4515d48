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

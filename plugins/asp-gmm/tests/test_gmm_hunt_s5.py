"""Regression tests from a hunt over copies, threads, refits, sampling and input layouts of
``GaussianMixture`` (see /work/notes/hunt_gmm_s5.md)."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from asp_gmm import GMM
from pytest_asp import requires_compiler

KMEANS_ON_A_SMALL_STACK = """
import threading

threading.stack_size(256 * 1024)   # as a thread's default under `ulimit -s unlimited` is small

import numpy as np

from asp_gmm import engine

D, M, N = 64, 1100, 100            # the centres: 563 kB; N * M * D past the hand-off threshold
rng = np.random.default_rng(0)
X = rng.standard_normal((N, D))
centers = rng.standard_normal((M, D))
out = engine.kmeans_assign(X, centers, "diag", np.full((N, 3), -1.0), np.zeros(M))
nearest = ((X[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
assert np.array_equal(out.labels, nearest)
assert engine.dispatcher("kmeans_assign").last_context is not None   # it ran specialised
print("KMEANS-OK")
"""


@requires_compiler
def test_compiled_kmeans_pass_with_many_components_does_not_overflow_the_stack(tmp_path):
    """The compiled k-means pass kept the centres' transpose (D * M doubles) on the stack of
    the thread running it: ``GaussianMixture(4500, covariance_type="diag").fit(X)`` with
    D = 256 (9 MB) killed the process with a segmentation fault, and with far fewer
    components where threads get 2 MB (``ulimit -s unlimited``). It is on the heap now; here
    the compiled-call thread is given 256 kB, and 1100 centres of 64 features need 563 kB."""
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(KMEANS_ON_A_SMALL_STACK)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ASP_CACHE_DIR": str(tmp_path / "cache"),
                              "ASP_MODE": "strict"})
    assert run.returncode == 0 and "KMEANS-OK" in run.stdout, (run.returncode, run.stderr)



@pytest.mark.parametrize("copier", [lambda g: pickle.loads(pickle.dumps(g)), copy.deepcopy],
                         ids=["pickle", "deepcopy"])
def test_paper_gmm_copies_keep_read_only_parameters(copier):
    """``asp_gmm.GMM`` keeps its parameters read-only so that a change in place cannot be
    silently ignored by the precision factors computed from them; an unpickled or
    deep-copied model's came back writeable, and ``copy.covars[0, 0] = 100`` was accepted and
    ignored by ``eval``."""
    X = np.random.default_rng(0).standard_normal((200, 3))
    gmm = GMM(2, 3, cvtype="diag")
    gmm.train(X)
    twin = copier(gmm)
    for name in ("weights", "means", "covars"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(twin, name)[0] = 100.0
    np.testing.assert_array_equal(twin.eval(X)[0], gmm.eval(X)[0])
    twin.covars = np.full((2, 3), 2.0)   # assigning a new array still works
    assert not np.allclose(twin.eval(X)[0], gmm.eval(X)[0])

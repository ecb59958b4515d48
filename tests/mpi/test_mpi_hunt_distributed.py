"""Regression tests from the bug hunt in the distributed paths of asp-mpk and asp-gmm
(see notes/hunt_distributed.md): each launches an inline script under ``mpiexec``."""

from __future__ import annotations

import pytest

from pytest_asp import requires_compiler, requires_mpi
from pytest_asp.mpi import assert_every_rank_prints, run_mpi


COMPLEX_ROWS = """
import sys
import warnings

import numpy as np
import scipy.sparse as sp

from asp_core.mpi import fatal_errors, world
from asp_mpk.distributed import DistributedMatrix, partition_rows

comm = world()
with fatal_errors(comm):
    n = 10
    A = (sp.identity(n, format="csr") * 4.0 + sp.eye(n, k=1) + sp.eye(n, k=-1)).tocsr()
    A = (A * (1 + 1j)).tocsr()
    lo, hi = (int(v) for v in partition_rows(n, comm.size)[comm.rank:comm.rank + 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a ComplexWarning is not an answer
        try:
            DistributedMatrix(A[lo:hi], comm, rows=(lo, hi))
        except ValueError as exc:
            assert "complex dtype" in str(exc), str(exc)
            print(f"RAISED-OK rank {comm.rank}", flush=True)
        else:
            raise AssertionError(f"no error on rank {comm.rank} for a complex row block")
"""


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_mpk_complex_row_block_raises_on_every_rank(nprocs, tmp_path):
    """``DistributedMatrix(A_rows, rows=(lo, hi))`` converted a complex block to float64,
    dropping the imaginary parts with only a ComplexWarning (a silently wrong matrix), where the
    whole-matrix path (``as_csr``) raises. Now every rank raises the same clear error."""
    assert_every_rank_prints(COMPLEX_ROWS, "RAISED-OK", nprocs, tmp_path, timeout=90)


GMM_DEFAULT_INIT = """
import warnings

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_gmm.distributed import DistributedGaussianMixture
from asp_gmm.estimator import GaussianMixture

warnings.simplefilter("ignore")
comm = world()
with fatal_errors(comm):
    rng = np.random.default_rng(3)
    n, d, m = 400, 3, 4
    X = np.concatenate([rng.standard_normal((n // m, d)) * 0.5 + 3 * i for i in range(m)])
    X = X[rng.permutation(n)]
    # uneven shards, one of them empty with 3 ranks
    cuts = [0, 150, n] if comm.size == 2 else [0, 1, 1, n]
    lo, hi = cuts[comm.rank], cuts[comm.rank + 1]
    for cov, n_init in (("diag", 1), ("full", 2)):
        kw = dict(covariance_type=cov, random_state=5, n_init=n_init, max_iter=50, tol=1e-8)
        ref = GaussianMixture(m, **kw).fit(X)
        dist = DistributedGaussianMixture(m, comm=comm, **kw).fit(X[lo:hi])
        for name in ("weights_", "means_", "covariances_", "lower_bound_"):
            a, b = np.asarray(getattr(dist, name)), np.asarray(getattr(ref, name))
            if not np.allclose(a, b, rtol=1e-10, atol=1e-12 * np.max(np.abs(b))):
                raise AssertionError(f"{cov}: {name} differs from one process on rank "
                                     f"{comm.rank}: {a} vs {b}")
        print(f"GMM-INIT-OK {cov} rank {comm.rank}", flush=True)
"""


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_gmm_default_init_equals_one_process_on_gathered_data(nprocs, tmp_path):
    """Without explicit initial parameters and with fewer samples than ``init_sample`` (the
    default 20000), rank 0 gathers ALL the data; yet it drew a sampling seed from
    ``random_state`` first, so its k-means start, and the fitted model, differed from the
    one-process fit with the same ``random_state`` on the gathered data. Now no draw is made
    when the sample is the whole data."""
    script = tmp_path / "gmm_init.py"
    script.write_text(GMM_DEFAULT_INIT)
    run = run_mpi(script, nprocs, timeout=120,
                  env={"ASP_CACHE_DIR": str(tmp_path / "cache"), "ASP_AUTOTUNE": "off"})
    assert run.ok, run.describe()
    for cov in ("diag", "full"):
        for r in range(nprocs):
            assert f"GMM-INIT-OK {cov} rank {r}" in run.stdout, run.describe()


GMM_BAD_INIT_ONE_RANK = """
import numpy as np

from asp_core.mpi import world
from asp_gmm.distributed import DistributedGaussianMixture

comm = world()
X = np.random.default_rng(comm.rank).standard_normal((50, 2))
means = [["a", "b"], ["c", "d"]] if comm.rank == 1 else [[0.0, 0.0], [1.0, 1.0]]
try:
    DistributedGaussianMixture(2, comm=comm, means_init=means, random_state=0).fit(X)
except ValueError as exc:
    assert "initial" in str(exc), str(exc)
    print(f"RAISED-OK rank {comm.rank}", flush=True)
else:
    raise AssertionError(f"no error on rank {comm.rank}")
"""


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_gmm_initial_parameters_that_are_not_numbers_on_one_rank(nprocs, tmp_path):
    """An initial parameter that cannot be converted to float64 on one rank only raised there,
    before the collective check of the hyperparameters: a caller who caught it left the other
    ranks waiting in that check forever. Every rank now raises the same error."""
    assert_every_rank_prints(GMM_BAD_INIT_ONE_RANK, "RAISED-OK", nprocs, tmp_path, timeout=90)


PYTHON_MODE_ON_ONE_RANK = """
import os
import warnings

import numpy as np
import scipy.sparse as sp

from asp_core.mpi import fatal_errors, world
from asp_gmm.distributed import DistributedGaussianMixture
from asp_mpk.distributed import DistributedMatrixPowers
from asp_stencil import StencilKernel
from asp_stencil.distributed import DistributedStencilGrid, distribute

comm = world()
if comm.rank == 1:
    os.environ["ASP_MODE"] = "python"


class Heat(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = 0.4 * a[x]
            for y in a.neighbors(x, 1):
                out[x] += 0.1 * a[y]


with fatal_errors(comm), warnings.catch_warnings():
    warnings.simplefilter("ignore")   # rank 0 is told every rank runs unspecialised
    a = DistributedStencilGrid((12, 12, 12), comm)
    b = DistributedStencilGrid(like=a)
    distribute(Heat()).iterate(a, b, steps=3)
    A = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(40, 40)).tocsr()
    mp = DistributedMatrixPowers(A, 3, comm)
    mp.powers(np.ones(mp.matrix.hi - mp.matrix.lo))
    X = np.random.default_rng(comm.rank).normal(size=(50, 2))
    DistributedGaussianMixture(2, comm=comm, random_state=0).fit(X)
    print(f"DONE rank {comm.rank}", flush=True)
"""


@requires_mpi
@requires_compiler
def test_python_mode_on_one_rank_falls_back_on_every_rank(tmp_path):
    """``ASP_MODE=python`` on one rank returned before the ranks' agreement on what to run:
    the stencil, MPK and GMM runners all hung, the other ranks waiting in it for good."""
    assert_every_rank_prints(PYTHON_MODE_ON_ONE_RANK, "DONE", 2, tmp_path, timeout=120)


ITERATE_WRITTEN_INPUT = """
import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.distributed import DistributedStencilGrid, distribute


class Acc(StencilKernel):
    def kernel(self, c, a, out):
        for x in out.interior_points():
            out[x] = 0.5 * a[x]
            for y in c.neighbors(x, 1):
                out[x] += 0.25 * c[y]
        for x in out.interior_points():
            c[x] = c[x] + out[x]


comm = world()
with fatal_errors(comm):
    rng = np.random.default_rng(3)
    init = [rng.random((12, 11)) for _ in range(3)]
    ref = [StencilGrid([12, 11]) for _ in range(3)]
    for g, v in zip(ref, init):
        g.data[...] = v
    last = Acc().iterate(*ref, steps=4)
    dc = DistributedStencilGrid((12, 11), comm, halo_depth=2)
    da, do = DistributedStencilGrid(like=dc), DistributedStencilGrid(like=dc)
    for g, v in zip((dc, da, do), init):
        g.load_global(v)
    got = distribute(Acc()).iterate(dc, da, do, steps=4)
    assert np.array_equal(got.allgather(), last.data), "the state differs"
    assert np.array_equal(dc.allgather(), ref[0].data), "the written input differs"
    print(f"EQUAL-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_iterate_exchanges_an_input_the_kernel_writes_every_step(nprocs, tmp_path):
    """``iterate`` sent the grids before the state once, as constants: a kernel writing one of
    them read stale halo values from the second step on (off by up to 0.81)."""
    assert_every_rank_prints(ITERATE_WRITTEN_INPUT, "EQUAL-OK", nprocs, tmp_path, timeout=120)


GATHER_ROOTS = """
import numpy as np
import scipy.sparse as sp

from asp_core.mpi import fatal_errors, world
from asp_mpk.distributed import DistributedMatrix

comm = world()
with fatal_errors(comm):
    A = sp.identity(10, format="csr") * 2.0
    dm = DistributedMatrix(A, comm)
    own = np.full(dm.hi - dm.lo, float(comm.rank))
    for root, says in ((comm.rank, "mismatched root"), (None if comm.rank else 0, "mismatched"),
                       (5, "root must be a rank in 0..")):
        try:
            dm.gather(own, root=root)
        except ValueError as exc:
            assert says in str(exc), str(exc)
        else:
            raise AssertionError(f"gather(root={root!r}) did not raise on rank {comm.rank}")
    whole = dm.gather(own, root=0)
    assert (whole is not None) == (comm.rank == 0)
    print(f"ROOTS-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_mpk_gather_to_another_root_on_each_rank_raises_on_every_rank(nprocs, tmp_path):
    """``DistributedMatrix.gather(x, root=comm.rank)`` hung (each rank waited for its own
    root), ``root=5`` of 2 ranks was a raw MPI error; as ``DistributedStencilGrid.gather``,
    the same ``ValueError`` on every rank now."""
    assert_every_rank_prints(GATHER_ROOTS, "ROOTS-OK", nprocs, tmp_path, timeout=90)


COMPILE_FAILS = """
import os
import warnings

import numpy as np

from asp_core import AspError, SpecializationWarning
from asp_core.mpi import fatal_errors, world
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.distributed import DistributedStencilGrid, distribute


class Heat(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = 0.6 * u[x]
            for y in u.neighbors(x, 1):
                out[x] += 0.1 * u[y]


class Odd(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            while False:
                pass
            out[x] = u[x]


os.environ["ASP_COMPILE_TIMEOUT"] = "0.001"   # gcc cannot finish: every compile fails
comm = world()
with fatal_errors(comm):
    init = np.random.default_rng(0).standard_normal((23, 21))
    ref, tmp = StencilGrid([23, 21]), StencilGrid([23, 21])
    ref.data[...] = init
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = Heat().iterate(ref, tmp, steps=4).data.copy()
    u = DistributedStencilGrid((23, 21), comm)
    out = DistributedStencilGrid(like=u)
    u.load_global(init)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = distribute(Heat()).iterate(u, out, steps=4)
    assert any(issubclass(w.category, SpecializationWarning)
               and "runs unspecialised on every rank" in str(w.message) for w in caught), \\
        [str(w.message) for w in caught]
    assert np.array_equal(got.allgather(), want)
    from asp_gmm.distributed import DistributedGaussianMixture
    from asp_gmm.estimator import GaussianMixture

    X = np.random.default_rng(comm.rank).standard_normal((400, 3)) + comm.rank
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gmm = DistributedGaussianMixture(2, comm=comm, random_state=0).fit(X)
    assert any("distributed EM runs unspecialised on every rank" in str(w.message)
               for w in caught), [str(w.message) for w in caught]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = GaussianMixture(2, random_state=0).fit(np.concatenate(comm.allgather(X)))
    np.testing.assert_allclose(np.sort(gmm.means_, axis=0), np.sort(one.means_, axis=0),
                               rtol=1e-8, atol=1e-8)
    os.environ["ASP_COMPILE_TIMEOUT"] = "60"
    if comm.rank == 0:
        os.environ["ASP_MODE"] = "strict"   # one rank only: every rank raises
    try:
        distribute(Odd()).kernel(u, out)
    except AspError as exc:
        assert "cannot be specialised" in str(exc), str(exc)
    else:
        raise AssertionError(f"no error on rank {comm.rank}")
    print(f"FALLBACK-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("nprocs", [2])
def test_mpi_a_compile_that_fails_on_the_ranks_falls_back_on_every_rank(nprocs, tmp_path):
    """Under ``ASP_COMPILE_TIMEOUT`` too short for gcc one process falls back to Python;
    distributed, the last variant left was bound unbuilt and every rank raised
    ``ToolchainError`` (a stencil sweep, a distributed GMM fit's EM step). ``ASP_MODE=strict`` on one rank only made that rank raise while the
    others ran Python (the job aborted, or hung where the error was caught)."""
    assert_every_rank_prints(COMPILE_FAILS, "FALLBACK-OK", nprocs, tmp_path, timeout=120)


EXCHANGE_ORDER = """
import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_stencil.distributed import DistributedStencilGrid, exchange

comm = world()
with fatal_errors(comm):
    da = DistributedStencilGrid((12, 10), comm)
    db = DistributedStencilGrid(like=da)
    for grids in ((da, db) if comm.rank == 0 else (db, da),
                  (da,) if comm.rank == 0 else (da, db),
                  (da, db) if comm.rank == 0 else (da, db.local)):   # not a grid, on one rank
        try:
            exchange(*grids)
        except ValueError as exc:
            assert "mismatched grids of exchange" in str(exc), str(exc)
        else:
            raise AssertionError(f"exchange of other grids on rank {comm.rank} went through")
    exchange(da, db)
    print(f"EXCHANGE-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
@pytest.mark.parametrize("nprocs", [2])
def test_mpi_exchange_of_other_grids_on_each_rank_raises_on_every_rank(nprocs, tmp_path):
    """``exchange(a, b)`` on one rank and ``exchange(b, a)`` on another filled ``a``'s halo with
    ``b``'s values without a word; a grid more on one rank was a raw MPI error on one rank
    while the other went on; a local grid on one rank was refused there while the others
    waited in the exchange."""
    assert_every_rank_prints(EXCHANGE_ORDER, "EXCHANGE-OK", nprocs, tmp_path, timeout=90)

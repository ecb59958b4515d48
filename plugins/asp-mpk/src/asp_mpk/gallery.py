"""Test and benchmark matrices (the issue's SPD set), built with SciPy only.

``elasticity`` uses ``pyamg.gallery.linear_elasticity`` when pyamg is installed and otherwise
assembles the same kind of problem itself (2-D plane-strain, bilinear Q1 elements, 2 unknowns per
node, clamped on one side), so tests never depend on pyamg.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["poisson2d", "poisson3d", "elasticity", "banded_spd", "shuffle_nodes", "variable_poisson2d",
           "unstructured_spd", "unstructured"]


def _lap1d(m: int) -> Any:
    import scipy.sparse as sp

    return sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1], format="csr")


def poisson2d(m: int, m2: int | None = None) -> Any:
    """5-point Laplacian on an m x m2 grid (Dirichlet; m2 = m by default), CSR, n = m*m2."""
    import scipy.sparse as sp

    m2 = m if m2 is None else m2
    A = (sp.kron(sp.identity(m2, format="csr"), _lap1d(m))
         + sp.kron(_lap1d(m2), sp.identity(m, format="csr"))).tocsr()
    A.eliminate_zeros()  # kron goes through BSR and keeps explicit zeros
    return A


def poisson3d(m: int) -> Any:
    """7-point Laplacian on an m x m x m grid (Dirichlet), CSR, n = m**3."""
    import scipy.sparse as sp

    T, eye = _lap1d(m), sp.identity(m, format="csr")
    A = (sp.kron(sp.kron(eye, eye), T) + sp.kron(sp.kron(eye, T), eye)
         + sp.kron(sp.kron(T, eye), eye)).tocsr()
    A.eliminate_zeros()
    return A


def _q1_stiffness(E: float = 1e5, nu: float = 0.3) -> np.ndarray:
    """8x8 plane-strain stiffness of the unit square element (2x2 Gauss)."""
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    D = np.array([[lam + 2 * mu, lam, 0], [lam, lam + 2 * mu, 0], [0, 0, mu]])
    g = 1 / np.sqrt(3)
    K = np.zeros((8, 8))
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    for xi in (-g, g):
        for eta in (-g, g):
            dN = np.array([[0.25 * c[0] * (1 + eta * c[1]) for c in corners],
                           [0.25 * c[1] * (1 + xi * c[0]) for c in corners]]) * 2.0
            B = np.zeros((3, 8))
            B[0, 0::2] = dN[0]
            B[1, 1::2] = dN[1]
            B[2, 0::2] = dN[1]
            B[2, 1::2] = dN[0]
            K += B.T @ D @ B * 0.25
    return K


def elasticity(m: int) -> Any:
    """2-D linear elasticity on an m x m element grid (SPD, 2x2 nodal blocks)."""
    try:
        from pyamg.gallery import linear_elasticity

        A, _ = linear_elasticity((m, m), format="csr")
        return A.tocsr()
    except ImportError:
        pass
    import scipy.sparse as sp

    K = _q1_stiffness()
    nx = m + 1
    rows, cols, vals = [], [], []
    for ey in range(m):
        for ex in range(m):
            nodes = [ey * nx + ex, ey * nx + ex + 1, (ey + 1) * nx + ex + 1, (ey + 1) * nx + ex]
            dofs = np.array([[2 * v, 2 * v + 1] for v in nodes]).ravel()
            rows.append(np.repeat(dofs, 8))
            cols.append(np.tile(dofs, 8))
            vals.append(K.ravel())
    n = 2 * nx * nx
    A = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n)).tocsr()
    fixed = np.array([2 * (j * nx) + c for j in range(nx) for c in (0, 1)])  # clamp x = 0
    keep = np.setdiff1d(np.arange(n), fixed)
    return A[keep][:, keep].tocsr()


def shuffle_nodes(A: Any, r: int, seed: int = 0) -> Any:
    """``A`` with its r x r nodal blocks in random order, as an unstructured mesh numbers them:
    no longer banded, still made of dense blocks (the BCSR test and benchmark case)."""
    nodes = np.random.default_rng(seed).permutation(A.shape[0] // r)
    perm = (r * nodes[:, None] + np.arange(r)).ravel()
    return A[perm][:, perm].tocsr()


def banded_spd(n: int, bandwidth: int = 5, seed: int = 0) -> Any:
    """Random symmetric banded matrix made SPD by diagonal dominance."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    diags, offs = [], []
    for o in range(1, bandwidth + 1):
        d = rng.uniform(-1, 1, n - o)
        diags += [d, d]
        offs += [o, -o]
    A = sp.diags(diags, offs, shape=(n, n), format="csr")
    rowsum = np.asarray(abs(A).sum(axis=1)).ravel()
    return (A + sp.diags(rowsum + rng.uniform(0.5, 1.5, n))).tocsr()


def unstructured(n: int, density: float = 0.01, seed: int = 0) -> Any:
    """Random nonsymmetric sparse matrix with a nonzero diagonal (general sparsity)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    A = sp.random(n, n, density=density, random_state=rng, format="csr",
                  data_rvs=lambda k: rng.uniform(-1, 1, k))
    return (A + sp.identity(n)).tocsr()


def unstructured_spd(n: int, degree: int = 6, seed: int = 0) -> Any:
    """Graph Laplacian + I of a random geometric-like graph on a shuffled numbering (SPD)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2))
    order = np.argsort(pts[:, 0])
    rows, cols = [], []
    for idx in range(n):
        i = order[idx]
        lo, hi = max(0, idx - 4 * degree), min(n, idx + 4 * degree)
        cand = order[lo:hi]
        d = np.linalg.norm(pts[cand] - pts[i], axis=1)
        near = cand[np.argsort(d)[1:degree // 2 + 1]]
        rows += [i] * len(near)
        cols += list(near)
    W = sp.coo_matrix((rng.uniform(0.5, 2.0, len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    W = W + W.T
    L = sp.diags(np.asarray(W.sum(axis=1)).ravel()) - W
    return (L + sp.identity(n)).tocsr()


def variable_poisson2d(m: int, seed: int = 0) -> Any:
    """-div(c grad u) on an m x m grid (5-point, Dirichlet) with a random coefficient in
    [0.1, 10] on every edge: SPD, banded, and no diagonal is constant."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n = m * m
    idx = np.arange(n).reshape(m, m)
    rows = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    cols = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    w = rng.uniform(0.1, 10.0, len(rows))
    W = sp.coo_matrix((w, (rows, cols)), shape=(n, n)).tocsr()
    W = W + W.T
    degree = np.asarray((W != 0).sum(axis=1)).ravel()
    diag = np.asarray(W.sum(axis=1)).ravel() + (4 - degree) * 1.0   # Dirichlet faces
    return (sp.diags(diag) - W).tocsr()

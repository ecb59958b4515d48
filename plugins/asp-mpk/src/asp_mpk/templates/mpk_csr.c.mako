<%doc>
PA1 matrix powers for general sparsity (CSR), after a graph partition of the rows.

Each block b owns rows B_b.  Its ghost closure R_0 ⊇ R_1 ⊇ ... ⊇ R_k = B_b (R_j-1 = R_j ∪ adj(R_j))
is numbered locally so that R_j is the prefix [0, m_j): level j is computed on that prefix from
level j-1, all inside per-thread buffers, and the block's local CSR (the rows R_1, columns in
local numbering) is read from memory once and from cache k-1 more times.

Template parameters: T (C type), monomial (bool), sym (bool: the local matrix is stored as its
upper triangle incl. diagonal; the lower part is applied by transposition), R (register block
size: with R > 1 every "row" is a block row of R scalar rows, every entry a dense R x R block
stored row-major (BCSR), and a block row's R sums stay in registers; R = 1 is plain CSR).
</%doc>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef ${T} real;
#define R ${R}

<%include file="_gram.c.mako"/>

/* Rows, ghost closures and local matrices below count block rows of R scalar rows (R = 1: rows).
   Blocks are described by concatenated arrays:
   meta[b*(k+2) + j] = m_j for j = 0..k (m_0 = |R_0|), meta[b*(k+2) + k + 1] = 1 if the owned
   rows are the contiguous global range starting at glob[gofs[b]] (lets the output be copied).
   glob[gofs[b] + i]: global row of local row i; rp[rofs[b] + i]: start of local row i in ci/va
   (m_1 + 1 entries per block, absolute positions). */
int mpk_csr(int64_t n, int64_t nvec, const real *x, int64_t k,
            const double *al, const double *be, const double *ga,
            real *out, int64_t nblk, const int64_t *meta, const int64_t *gofs,
            const int64_t *glob, const int64_t *rofs, const int64_t *rp,
            const int32_t *ci, const real *va, int nthreads, double *gram)
{
    int64_t wmax = 1;
    for (int64_t b = 0; b < nblk; ++b)
        if (meta[b * (k + 2)] > wmax) wmax = meta[b * (k + 2)];
    wmax *= R;   /* level-vector stride in scalars */
    const int64_t m = nvec * (k + 1);
    int failed = 0;
    if (gram) memset(gram, 0, sizeof(double) * (size_t)(m * m));
#pragma omp parallel num_threads(nthreads)
    {
        real *lev = (real *)malloc(sizeof(real) * (size_t)(nvec * (k + 1) * wmax));
        double *g = gram ? (double *)calloc((size_t)(m * m), sizeof(double)) : NULL;
        if (!lev || (gram && !g)) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblk; ++b) {
            if (failed) continue;
            const int64_t *mj = meta + b * (k + 2);
            const int64_t contiguous = mj[k + 1];
            const int64_t *gl = glob + gofs[b];
            const int64_t *rpb = rp + rofs[b];
            const int64_t nb = mj[k];
            for (int64_t v = 0; v < nvec; ++v) {
                real *L = lev + v * (k + 1) * wmax;
                const real *xv = x + v * n;
                for (int64_t i = 0; i < mj[0]; ++i)
                    for (int r = 0; r < R; ++r) L[i * R + r] = xv[gl[i] * R + r];
                for (int64_t j = 1; j <= k; ++j) {
                    const real *xp = L + (j - 1) * wmax;
                    const real *xq = j >= 2 ? L + (j - 2) * wmax : NULL;
                    real *y = L + j * wmax;
                    const int64_t mr = mj[j];
% if sym:
                    for (int64_t i = 0; i < mr; ++i) y[i] = (real)0;
                    for (int64_t i = 0; i < mr; ++i) {
                        real s = y[i];
                        const real xi = xp[i];
                        for (int64_t t = rpb[i]; t < rpb[i + 1]; ++t) {
                            const int64_t c = ci[t];
                            const real a = va[t];
                            s += a * xp[c];
                            if (c != i && c < mr) y[c] += a * xi;
                        }
                        y[i] = s;
                    }
% elif R == 1:
                    for (int64_t i = 0; i < mr; ++i) {
                        real s = (real)0;
                        for (int64_t t = rpb[i]; t < rpb[i + 1]; ++t) s += va[t] * xp[ci[t]];
                        y[i] = s;
                    }
% else:
                    for (int64_t i = 0; i < mr; ++i) {
                        ${" ".join(f"real s{a} = (real)0;" for a in range(R))}
                        for (int64_t t = rpb[i]; t < rpb[i + 1]; ++t) {
                            const real *a = va + t * (R * R);
                            const real *xc = xp + (int64_t)ci[t] * R;
% for a in range(R):
                            s${a} += ${" + ".join(f"a[{a * R + c}] * xc[{c}]" for c in range(R))};
% endfor
                        }
                        ${" ".join(f"y[i * R + {a}] = s{a};" for a in range(R))}
                    }
% endif
% if not monomial:
                    {
                        const real a1 = (real)al[j - 1], b1 = (real)be[j - 1], g1 = (real)ga[j - 1];
                        if (xq) {
#pragma omp simd
                            for (int64_t i = 0; i < mr * R; ++i) y[i] = a1 * y[i] + b1 * xp[i] + g1 * xq[i];
                        } else {
#pragma omp simd
                            for (int64_t i = 0; i < mr * R; ++i) y[i] = a1 * y[i] + b1 * xp[i];
                        }
                    }
% endif
                }
                real *ov = out + v * (k + 1) * n;
                for (int64_t j = 0; j <= k; ++j) {
                    const real *src = L + j * wmax;
                    real *dst = ov + j * n;
                    if (contiguous) memcpy(dst + gl[0] * R, src, sizeof(real) * (size_t)(nb * R));
                    else for (int64_t i = 0; i < nb; ++i)
                        for (int r = 0; r < R; ++r) dst[gl[i] * R + r] = src[i * R + r];
                }
            }
            /* the nvec level sets are adjacent in lev: stride wmax throughout */
            if (g) gram_rows(m, lev, wmax, 0, nb * R, g);
        }
        if (g) {
#pragma omp critical
            for (int64_t i = 0; i < m; ++i)
                for (int64_t j = i; j < m; ++j) gram[i * m + j] += g[i * m + j];
            free(g);
        }
        free(lev);
    }
    if (gram)
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < i; ++j) gram[i * m + j] = gram[j * m + i];
    return failed ? -1 : 0;
}

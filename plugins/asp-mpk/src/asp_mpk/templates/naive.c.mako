<%doc>
Baseline: k separate threaded CSR products (the matrix is read from memory k times), and the
plain SpMV.  Template parameters: T (C type), monomial (bool).
</%doc>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef ${T} real;

<%include file="_gram.c.mako"/>

static void csr_rows(int64_t n, const int64_t *rp, const int32_t *ci, const real *va,
                     const real *x, real *y, int64_t yb, int64_t a, int64_t b)
{
    (void)n;
    for (int64_t i = a; i < b; ++i) {
        real s = (real)0;
        for (int64_t t = rp[i]; t < rp[i + 1]; ++t) s += va[t] * x[ci[t]];
        y[i - yb] = s;
    }
}

<%include file="_cg.c.mako" args="params='const int64_t *rp, const int32_t *ci, const real *va', args='rp, ci, va', rows='csr_rows'"/>

<%include file="_spmv.c.mako" args="params='const int64_t *rp, const int32_t *ci, const real *va', args='rp, ci, va', rows='csr_rows', chunk=2048"/>

int mpk_naive(int64_t n, const int64_t *rp, const int32_t *ci, const real *va,
              int64_t nvec, const real *x, int64_t k,
              const double *al, const double *be, const double *ga,
              real *out, int nthreads, double *gram)
{
    for (int64_t v = 0; v < nvec; ++v) {
        real *ov = out + v * (k + 1) * n;
        memcpy(ov, x + v * n, sizeof(real) * (size_t)n);
        for (int64_t j = 1; j <= k; ++j) {
            const real *xp = ov + (j - 1) * n;
            const real *xq = j >= 2 ? ov + (j - 2) * n : NULL;
            real *y = ov + j * n;
% if monomial:
            (void)spmv(n, rp, ci, va, xp, y, nthreads);   /* x was checked by the caller */
            (void)xq;
% else:
            const real a1 = (real)al[j - 1], b1 = (real)be[j - 1], g1 = (real)ga[j - 1];
#pragma omp parallel for schedule(static, 2048) num_threads(nthreads)
            for (int64_t i = 0; i < n; ++i) {
                real s = (real)0;
                for (int64_t t = rp[i]; t < rp[i + 1]; ++t) s += va[t] * xp[ci[t]];
                s = a1 * s + b1 * xp[i];
                if (xq) s += g1 * xq[i];
                y[i] = s;
            }
% endif
        }
    }
    if (gram) {
        const int64_t m = nvec * (k + 1);
        memset(gram, 0, sizeof(double) * (size_t)(m * m));
        const int64_t CHR = 16384, nch = (n + CHR - 1) / CHR;
#pragma omp parallel num_threads(nthreads)
        {
            double *g = (double *)calloc((size_t)(m * m), sizeof(double));
#pragma omp for schedule(static)
            for (int64_t c = 0; c < nch; ++c) {
                const int64_t lo = c * CHR, hi = lo + CHR < n ? lo + CHR : n;
                if (g) gram_rows(m, out, n, lo, hi, g);
            }
#pragma omp critical
            if (g) for (int64_t i = 0; i < m * m; ++i) gram[i] += g[i];
            free(g);
        }
        for (int64_t a = 0; a < m; ++a)
            for (int64_t b = 0; b < a; ++b) gram[a * m + b] = gram[b * m + a];
    }
    return 0;
}

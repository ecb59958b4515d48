<%doc>
PA1 matrix powers for a matrix stored by diagonals (DIA), rows split into contiguous blocks.

A block [lo, hi) computes level j on [lo - (k-j)H, hi + (k-j)H) (H = the largest |offset|), so
level k is exact on the owned rows; the ghost rows are recomputed redundantly by the neighbours.
Each block's diagonals and level vectors stay in cache across the k levels, so the matrix is read
from memory once per call instead of k times.  The "-wave" variants sweep each of a few big
blocks as a wavefront instead (see wave_block): no ghost row is computed twice inside a block.

Template parameters: T (C type), offsets (sorted list of ints), monomial (bool), kinds (one
per diagonal: ("full", row of dv) - stored values; ("mask", row of mk, C) - the constant C where
the uint8 mask is 1, else 0; ("const", C) - the constant C on the whole diagonal; ("mirror",
row of dv, o) - a symmetric matrix's diagonal o < 0, read from the stored diagonal -o at i + o).  Compressed
diagonals cut the matrix bytes 8x (constant-coefficient stencils: Poisson, graph Laplacians), so
a block's share of A stays in cache at larger block sizes.  C is a C99 hex literal: exact.
</%doc>
<%
nd = len(offsets)
minoff = min(offsets)
maxoff = max(offsets)
def coef(d):
    kind = kinds[d]
    if kind[0] == "full":
        return f"dv[(int64_t){kind[1]} * n + i]"
    if kind[0] == "mask":
        return f"((real)mk[(int64_t){kind[1]} * n + i] * (real){kind[2]})"
    if kind[0] == "mirror":
        return f"dv[(int64_t){kind[1]} * n + i + ({kind[2]})]"
    return f"(real){kind[1]}"
%>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif

typedef ${T} real;
<%
sfx = "pd" if T == "double" else "ps"
isas = [("__AVX512F__", "_mm512", 64), ("__AVX__", "_mm256", 32), ("__SSE2__", "_mm", 16)]
%>
/* dst[0, len) = src[0, len); with nt, in streaming (non-temporal) stores from the first
   vector-aligned element: the basis vectors are written once and not read back by this call,
   so they need not pass through the cache (which would first read each line for ownership:
   the output is most of this kernel's memory traffic).  Whether that pays is the tuner's
   call (the "-nt" variants). */
static void copy_out(real *restrict dst, const real *restrict src, int64_t len, int nt)
{
% for i, (macro, pre, vb) in enumerate(isas):
#${"if" if i == 0 else "elif"} defined(${macro})
    if (nt) {
        int64_t i = 0;
        for (; i < len && ((uintptr_t)(dst + i) & ${vb - 1}); ++i) dst[i] = src[i];
        for (; i + ${vb} / (int64_t)sizeof(real) <= len; i += ${vb} / (int64_t)sizeof(real))
            ${pre}_stream_${sfx}(dst + i, ${pre}_loadu_${sfx}(src + i));
        for (; i < len; ++i) dst[i] = src[i];
        return;
    }
% endfor
#endif
    memcpy(dst, src, sizeof(real) * (size_t)len);
}

/* whether p[0, len) holds a value that is not finite (inf or nan) */
static int nonfinite(const real *restrict p, int64_t len)
{
    real z = (real)0;   /* x - x is 0 for a finite x, nan for inf and nan */
#pragma omp simd reduction(+:z)
    for (int64_t i = 0; i < len; ++i) z += p[i] - p[i];
    return z != (real)0;
}

/* copy_out, also telling whether src holds a value that is not finite: the check of the
   starting vectors comes with the copy every call makes, while they are in cache, instead of
   a separate pass over them before the call */
static int copy_checked(real *restrict dst, const real *restrict src, int64_t len, int nt)
{
    copy_out(dst, src, len, nt);
    return nonfinite(src, len);
}

/* orders this thread's streaming stores before what follows (the caller reading the result) */
static void stores_done(void)
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

/* Rows [a, b) of one level: y[i - yb] = sum_d dv[d*n + i] * xp[i + off_d - xb], then the basis
   recurrence (xq: level j-2, NULL for none).  y2 (if not NULL) receives the same values at
   y2[i] (the owned output rows). */
static __attribute__((noinline)) void level_rows(int64_t n, const real *restrict dv, const uint8_t *restrict mk,
                              const real *restrict xp,
                              int64_t xb, const real *restrict xq, int64_t qb,
                              real *restrict y, int64_t yb, real *restrict y2,
                              int64_t a, int64_t b, real al, real be, real ga)
{
    if (a >= b) return;
% if not monomial:
    if (!xq) {   /* no level j-2 (j = 1): its term with a zero coefficient, from cache */
        xq = xp; qb = xb; ga = (real)0;
    }
% endif
    int64_t ia = a > ${-minoff} ? a : ${-minoff};
    int64_t ib = b < n - ${maxoff} ? b : n - ${maxoff};
    if (ia > b) ia = b;
    if (ib < ia) ib = ia;
    /* boundary rows: guard each diagonal */
    for (int64_t seg = 0; seg < 2; ++seg) {
        int64_t s0 = seg == 0 ? a : ib, s1 = seg == 0 ? ia : b;
        for (int64_t i = s0; i < s1; ++i) {
            real s = (real)0;
% for d, o in enumerate(offsets):
            if (i + (${o}) >= 0 && i + (${o}) < n) s += ${coef(d)} * xp[i + (${o}) - xb];
% endfor
% if not monomial:
            s = al * s + be * xp[i - xb] + ga * xq[i - qb];
% endif
            y[i - yb] = s;
        }
    }
    /* interior rows: every diagonal in range, no guards, vectorised (one loop: each costs
       the compiler ~0.25 s, which the first call of a new matrix waits for) */
#pragma omp simd
    for (int64_t i = ia; i < ib; ++i) {
        real s = ${" + ".join(f"{coef(d)} * xp[i + ({o}) - xb]" for d, o in enumerate(offsets))};
% if not monomial:
        s = al * s + be * xp[i - xb] + ga * xq[i - qb];
% endif
        y[i - yb] = s;
    }
    /* the owned rows' copy, from cache (one loop body less for the compiler to vectorise) */
    if (y2) memcpy(y2 + a, y + (a - yb), sizeof(real) * (size_t)(b - a));
}

<%include file="_gram.c.mako"/>

/* y[i - yb] = (A x)[i] for the rows i in [a, b) */
static void dia_rows(int64_t n, const real *dv, const uint8_t *mk, const real *x, real *y,
                     int64_t yb, int64_t a, int64_t b)
{
    level_rows(n, dv, mk, x, 0, NULL, 0, y, yb, NULL, a, b, (real)1, (real)0, (real)0);
}

<%include file="_spmv.c.mako" args="params='const real *dv, const uint8_t *mk', args='dv, mk', rows='dia_rows'"/>

<%include file="_cg.c.mako" args="params='const real *dv, const uint8_t *mk', args='dv, mk', rows='dia_rows', halo=max(-minoff, maxoff)"/>

/* Wavefront PA1 over the rows [P, Q) of one block, for one starting vector xv (out: ov, k+1
   rows of n).  Level j is computed on [P - (k-j)H, Q + (k-j)H) like a PA1 block, but all k
   levels advance together, level j up to H rows behind level j-1, so each of those rows is
   computed once (a PA1 block recomputes its neighbours' ghost rows: +30 % of the work at
   cache-sized blocks), and the matrix rows the levels read stay in cache between them.
   Level j keeps a window of W rows (buf + (j-1)W, first row base[j]) that slides forward,
   keeping what levels j+1 (rows from done[j+1] - H) and j+2 (from done[j+2]) still read.
   lv, base, done, F: k+1 entries of scratch.  Returns 1 when a level below k overflowed,
   -2 if no level could advance (a window too small: a bug, reported rather than a hang). */
static int wave_block(int64_t n, const real *dv, const uint8_t *mk, const real *xv, int64_t k,
                      const double *al, const double *be, const double *ga, real *ov,
                      int64_t P, int64_t Q, int64_t chunk, int64_t W, real *buf,
                      const real **lv, int64_t *base, int64_t *done, int64_t *F, int nt)
{
    const int64_t H = ${max(-minoff, maxoff)};
    int overflow = 0;
    lv[0] = xv; base[0] = 0; done[0] = n; F[0] = n;
    for (int64_t j = 1; j <= k; ++j) {
        base[j] = done[j] = P - (k - j) * H > 0 ? P - (k - j) * H : 0;
        F[j] = Q + (k - j) * H < n ? Q + (k - j) * H : n;
        lv[j] = buf + (j - 1) * W;
    }
    while (done[k] < F[k]) {
        int moved = 0;
        for (int64_t j = 1; j <= k; ++j) {
            int64_t lim = j == 1 ? done[1] + chunk : done[j - 1] >= F[j - 1] ? F[j]
                        : done[j - 1] - H;
            if (lim > F[j]) lim = F[j];
            if (lim <= done[j]) continue;
            real *y = (real *)lv[j];
            if (lim - base[j] > W) {   /* slide the window */
                int64_t keep = done[j];
                if (j + 1 <= k && done[j + 1] - H < keep) keep = done[j + 1] - H;
                if (j + 2 <= k && done[j + 2] < keep) keep = done[j + 2];
                if (keep < base[j]) keep = base[j];
                memmove(y, y + (keep - base[j]), sizeof(real) * (size_t)(done[j] - keep));
                base[j] = keep;
                if (lim - base[j] > W) lim = base[j] + W;
                if (lim <= done[j]) continue;
            }
            level_rows(n, dv, mk, lv[j - 1], base[j - 1], j >= 2 ? lv[j - 2] : NULL,
                       j >= 2 ? base[j - 2] : 0, y, base[j], NULL, done[j], lim,
                       ${"(real)1" if monomial else "(real)al[j - 1]"},
                       ${"(real)0" if monomial else "(real)be[j - 1]"},
                       ${"(real)0" if monomial else "(real)ga[j - 1]"});
            int64_t c0 = done[j] > P ? done[j] : P, c1 = lim < Q ? lim : Q;
            if (c1 > c0) {   /* the owned rows, from cache */
                copy_out(ov + j * n + c0, y + (c0 - base[j]), c1 - c0, nt);
                if (j < k && nonfinite(y + (c0 - base[j]), c1 - c0)) overflow = 1;
            }
            done[j] = lim;
            moved = 1;
        }
        if (!moved) return -2;
    }
    return overflow;
}

/* The k+1 basis vectors of nvec starting vectors: out[v][j] (each n long) = P_j(A) x[v].
   P_j+1 = al_j A P_j + be_j P_j + ga_j P_j-1 (monomial: al = 1, be = ga = 0).
   bounds: nblk+1 row boundaries.  gram (m*m, m = nvec*(k+1)) if not NULL receives V^T V.
   nt: write out with streaming stores (see copy_out; not with gram, which reads it back).
   wave > 0: each block is swept as a wavefront (wave_block) advancing wave rows per step;
   not with gram (it needs every level of a row at once).
   xbad (if not NULL) receives 1 when x holds a value that is not finite, else 0.
   Returns -1 when a work buffer could not be allocated, -2 on a wavefront that stalled,
   1 when a level below k overflowed (holds inf or nan: the stored zeros of the diagonals then
   make 0 * inf = nan where A's sparse product has no entry, so the caller recomputes by that
   product), else 0. */
int mpk_dia(int64_t n, const real *dv, const uint8_t *mk, int64_t nvec, const real *x, int64_t k,
            const double *al, const double *be, const double *ga,
            real *out, int64_t nblk, const int64_t *bounds, int nthreads, double *gram, int nt,
            int64_t wave, int *xbad)
{
    const int64_t H = ${max(-minoff, maxoff)};
    if (wave > 0 && !gram && k > 0) {
        const int64_t W = 2 * H + 16 * wave;   /* rows per level window: slides every ~16 steps */
        int failed = 0, bad = 0, overflow = 0;
#pragma omp parallel num_threads(nthreads)
        {
            real *buf = (real *)malloc(sizeof(real) * (size_t)(k * W));
            const real **lv = (const real **)malloc(sizeof(real *) * (size_t)(k + 1));
            int64_t *st = (int64_t *)malloc(sizeof(int64_t) * (size_t)(3 * (k + 1)));
            if (!buf || !lv || !st) {
#pragma omp atomic write
                failed = -1;
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t b = 0; b < nblk; ++b) {
                if (failed) continue;
                const int64_t P = bounds[b], Q = bounds[b + 1];
                for (int64_t v = 0; v < nvec && P < Q; ++v) {
                    real *ov = out + v * (k + 1) * n;
                    if (!xbad) {
                        copy_out(ov + P, x + v * n + P, Q - P, nt);
                    } else if (copy_checked(ov + P, x + v * n + P, Q - P, nt)) {
#pragma omp atomic write
                        bad = 1;
                    }
                    int rc = wave_block(n, dv, mk, x + v * n, k, al, be, ga, ov, P, Q, wave, W,
                                        buf, lv, st, st + (k + 1), st + 2 * (k + 1), nt);
                    if (rc < 0) {
#pragma omp atomic write
                        failed = rc;
                    } else if (rc) {
#pragma omp atomic write
                        overflow = 1;
                    }
                }
            }
            free(st);
            free(lv);
            free(buf);
            if (nt) stores_done();
        }
        if (xbad) *xbad = bad;
        return failed ? failed : overflow;
    }
    int64_t wmax = 0;
    for (int64_t b = 0; b < nblk; ++b) {
        int64_t lo = bounds[b] - k * H, hi = bounds[b + 1] + k * H;
        if (lo < 0) lo = 0;
        if (hi > n) hi = n;
        if (hi - lo > wmax) wmax = hi - lo;
    }
    const int64_t m = nvec * (k + 1);
    int failed = 0, bad = 0, overflow = 0;
    if (gram) memset(gram, 0, sizeof(double) * (size_t)(m * m));
#pragma omp parallel num_threads(nthreads)
    {
        real *ring = (real *)malloc(sizeof(real) * (size_t)(3 * (wmax > 0 ? wmax : 1)));
        double *g = gram ? (double *)calloc((size_t)(m * m), sizeof(double)) : NULL;
        if (!ring || (gram && !g)) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblk; ++b) {
            if (failed) continue;
            int64_t lo = bounds[b], hi = bounds[b + 1];
            int64_t L0 = lo - k * H > 0 ? lo - k * H : 0;
            for (int64_t v = 0; v < nvec; ++v) {
                const real *xv = x + v * n;
                real *ov = out + v * (k + 1) * n;
                if (!xbad) {
                    copy_out(ov + lo, xv + lo, hi - lo, nt);
                } else if (copy_checked(ov + lo, xv + lo, hi - lo, nt)) {
#pragma omp atomic write
                    bad = 1;
                }
                const real *p1 = xv; int64_t b1 = 0;      /* level j-1 and its base row */
                const real *p2 = NULL; int64_t b2 = 0;    /* level j-2 */
                for (int64_t j = 1; j <= k; ++j) {
                    int64_t a = lo - (k - j) * H, e = hi + (k - j) * H;
                    if (a < 0) a = 0;
                    if (e > n) e = n;
                    real *y = ring + (j % 3) * wmax;
                    real *oj = ov + j * n;
                    real alj = ${"(real)1" if monomial else "(real)al[j - 1]"};
                    real bej = ${"(real)0" if monomial else "(real)be[j - 1]"};
                    real gaj = ${"(real)0" if monomial else "(real)ga[j - 1]"};
                    if (j < k) {
                        level_rows(n, dv, mk, p1, b1, p2, b2, y, L0, NULL, a, lo, alj, bej, gaj);
                        level_rows(n, dv, mk, p1, b1, p2, b2, y, L0, nt ? NULL : oj, lo, hi,
                                   alj, bej, gaj);
                        level_rows(n, dv, mk, p1, b1, p2, b2, y, L0, NULL, hi, e, alj, bej, gaj);
                        if (nt) copy_out(oj + lo, y + (lo - L0), hi - lo, 1);
                        if (nonfinite(y + (lo - L0), hi - lo)) {   /* owned rows, from cache */
#pragma omp atomic write
                            overflow = 1;
                        }
                    } else if (nt) {
                        /* last level: only the owned rows, through the ring (from cache) */
                        level_rows(n, dv, mk, p1, b1, p2, b2, y, L0, NULL, lo, hi, alj, bej, gaj);
                        copy_out(oj + lo, y + (lo - L0), hi - lo, 1);
                    } else {
                        /* last level: only the owned rows, straight into the output */
                        level_rows(n, dv, mk, p1, b1, p2, b2, oj, 0, NULL, lo, hi, alj, bej, gaj);
                    }
                    p2 = p1; b2 = b1;
                    p1 = y; b1 = L0;
                }
            }
            if (g) gram_rows(m, out, n, lo, hi, g);
        }
        if (g) {
#pragma omp critical
            for (int64_t i = 0; i < m; ++i)
                for (int64_t j = i; j < m; ++j) gram[i * m + j] += g[i * m + j];
            free(g);
        }
        free(ring);
        if (nt) stores_done();
    }
    if (gram)
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < i; ++j) gram[i * m + j] = gram[j * m + i];
    if (xbad) *xbad = bad;
    return failed ? -1 : overflow;
}

/* Streaming basis for s-step CG ("recompute" variant, Hoemmen 2010): the basis of the nvec
   vectors in x is computed block by block and never written to memory.
   gram != NULL: G = V^T V (m*m, m = nvec*(k+1)) is accumulated.
   C != NULL: with V's owned rows still in cache, xo[i] += C[0,:] V[:,i], ro[i] = C[1,:] V[:,i],
   po[i] = C[2,:] V[:,i] (ro/po must not alias x: neighbours still read x's ghost rows).
   One call per use reads x and writes at most three vectors, instead of writing and re-reading
   all m basis vectors. */
int mpk_dia_stream(int64_t n, const real *dv, const uint8_t *mk, int64_t nvec, const real *x,
                   int64_t k, const double *al, const double *be, const double *ga,
                   int64_t nblk, const int64_t *bounds, int nthreads, double *gram,
                   const double *C, real *xo, real *ro, real *po)
{
    const int64_t H = ${max(-minoff, maxoff)};
    int64_t wmax = 0, bmax = 1;
    for (int64_t b = 0; b < nblk; ++b) {
        int64_t lo = bounds[b] - k * H, hi = bounds[b + 1] + k * H;
        if (lo < 0) lo = 0;
        if (hi > n) hi = n;
        if (hi - lo > wmax) wmax = hi - lo;
        if (bounds[b + 1] - bounds[b] > bmax) bmax = bounds[b + 1] - bounds[b];
    }
    const int64_t m = nvec * (k + 1);
    int failed = 0;
    if (gram) memset(gram, 0, sizeof(double) * (size_t)(m * m));
#pragma omp parallel num_threads(nthreads)
    {
        real *ring = (real *)malloc(sizeof(real) * (size_t)(3 * (wmax > 0 ? wmax : 1)));
        real *L = (real *)malloc(sizeof(real) * (size_t)(m * bmax));
        double *g = gram ? (double *)calloc((size_t)(m * m), sizeof(double)) : NULL;
        if (!ring || !L || (gram && !g)) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblk; ++b) {
            if (failed) continue;
            int64_t lo = bounds[b], hi = bounds[b + 1];
            int64_t L0 = lo - k * H > 0 ? lo - k * H : 0;
            for (int64_t v = 0; v < nvec; ++v) {
                const real *xv = x + v * n;
                real *Lv = L + v * (k + 1) * bmax;
                memcpy(Lv, xv + lo, sizeof(real) * (size_t)(hi - lo));
                const real *p1 = xv; int64_t b1 = 0;
                const real *p2 = NULL; int64_t b2 = 0;
                for (int64_t j = 1; j <= k; ++j) {
                    int64_t a = lo - (k - j) * H, e = hi + (k - j) * H;
                    if (a < 0) a = 0;
                    if (e > n) e = n;
                    real *y = ring + (j % 3) * wmax;
                    real *oj = Lv + j * bmax - lo;   /* indexed by global row */
                    real alj = (real)al[j - 1], bej = (real)be[j - 1], gaj = (real)ga[j - 1];
                    if (j < k) {
                        level_rows(n, dv, mk, p1, b1, p2, b2, y, L0, NULL, a, lo, alj, bej, gaj);
                        level_rows(n, dv, mk, p1, b1, p2, b2, y, L0, oj, lo, hi, alj, bej, gaj);
                        level_rows(n, dv, mk, p1, b1, p2, b2, y, L0, NULL, hi, e, alj, bej, gaj);
                    } else {
                        level_rows(n, dv, mk, p1, b1, p2, b2, oj, 0, NULL, lo, hi, alj, bej, gaj);
                    }
                    p2 = p1; b2 = b1;
                    p1 = y; b1 = L0;
                }
            }
            if (g) gram_rows(m, L, bmax, 0, hi - lo, g);
            if (C) {
                enum { CB = 256 };
                for (int64_t c0 = 0; c0 < hi - lo; c0 += CB) {
                    const int64_t len = c0 + CB < hi - lo ? CB : hi - lo - c0;
                    double sx[CB], sr[CB], sp[CB];
                    for (int64_t i = 0; i < len; ++i) { sx[i] = 0.0; sr[i] = 0.0; sp[i] = 0.0; }
                    for (int64_t jv = 0; jv < m; ++jv) {
                        const real *Vj = L + jv * bmax + c0;
                        const double cx = C[jv], cr = C[m + jv], cp = C[2 * m + jv];
#pragma omp simd
                        for (int64_t i = 0; i < len; ++i) {
                            const double vv = (double)Vj[i];
                            sx[i] += cx * vv; sr[i] += cr * vv; sp[i] += cp * vv;
                        }
                    }
                    const int64_t r0 = lo + c0;
                    for (int64_t i = 0; i < len; ++i) {
                        xo[r0 + i] = (real)((double)xo[r0 + i] + sx[i]);
                        ro[r0 + i] = (real)sr[i];
                        po[r0 + i] = (real)sp[i];
                    }
                }
            }
        }
        if (g) {
#pragma omp critical
            for (int64_t i = 0; i < m; ++i)
                for (int64_t j = i; j < m; ++j) gram[i * m + j] += g[i * m + j];
            free(g);
        }
        free(L);
        free(ring);
    }
    if (gram)
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < i; ++j) gram[i * m + j] = gram[j * m + i];
    return failed ? -1 : 0;
}

<%doc>
  Temporally blocked Jacobi iteration of one stencil kernel (see asp_stencil/temporal/codegen.py).

  Frame: the grid is viewed as N0 x N1 x N2 (1-D and 2-D grids padded with size-1 dimensions).
  A *block* advances the state K time levels (K odd) from level t, read from x[t % 2], to level
  t + K, written to x[(t + 1) % 2]: the other array, whose written points hold the no longer
  needed level t - 1, so tiles never write what another tile reads. Inside a block, each work
  unit (a chunk of planes along dimension 0 times a tile of rows along dimension 1) sweeps a
  wavefront along dimension 0: at outer step i it computes level k on plane i - (k - 1) * R0,
  keeping the last 2 R0 + 1 planes of every intermediate level in a per-thread ring buffer that
  stays in cache. Rows of level k extend R1 * (K - k) beyond the tile (overlapped tiling, a
  little redundant work instead of synchronisation), planes R0 * (K - k) beyond the chunk.
  Units also tile rows into segments of B2 points, extended R2 * (K - k) on each side at level
  k: the ring then holds only segments (compact rows of RS points), small enough for the cache
  however long the rows are.
  Points no loop writes ("untouched") keep, at level k, the value of array x[k % 2]: they are
  copied from there into the ring buffer so every read sees exactly what the plain sweep sees.
  The schedule runs blocks of odd depth up to K for steps - 1 levels, then one plain sweep, so
  at the end x[steps % 2] holds level steps and x[(steps - 1) % 2] level steps - 1, as in the
  plain ping-pong.
  Wavefront tiles (`wt`, 3-D: planes of several rows) remove the redundant rows: one thread
  sweeps the tiles of its chunk in order, and tile ti computes at level k the rows
  [c - (k - 1) R1, e - (k - 1) R1) (skewed back one radius per level; the first tile starts at
  row 0, the last ends at N1). The 2 R1 rows it lacks at the left edge of each level-k plane
  were computed by tile ti - 1, which left them in a per-thread halo buffer (one slot per level
  and plane of the chunk); each tile copies them into its ring and leaves its own right edge
  there for the next tile. Rows are computed once; only the dimension-0 chunk edges overlap.
</%doc>\
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#define N0 ${n0}L
#define N1 ${n1}L
#define N2 ${n2}L
#define G0 ${g0}L
#define G1 ${g1}L
#define G2 ${g2}L
#define R0 ${r0}L
#define R1 ${r1}L
#define R2 ${r2}L
#define SLOTS (2L * R0 + 1L)
/* slots of a ring level: two planes per pass (jam == 2) keep one plane more alive */
#define ASP_SLOTS(jam) (SLOTS + ((jam) == 2))

${helpers}

static inline long asp_lmin(long a, long b) { return a < b ? a : b; }
static inline long asp_lmax(long a, long b) { return a > b ? a : b; }

/* Is row (p, y) inside the interior box along the two outer dimensions? */
static inline int asp_row_interior(long p, long y) {
    return p >= G0 && p < N0 - G0 && y >= G1 && y < N1 - G1;
}

/* Copy [lo, hi) of a row (nothing if empty). The ghost ends of interior rows are a point or
   two: copied inline, not through a libc call per row. */
static inline void asp_copy(double *restrict out, const double *restrict from, long lo, long hi) {
    const long n = hi - lo;
    if (n <= 0) return;
    if (n <= 2) {
        out[lo] = from[lo];
        if (n == 2) out[lo + 1] = from[lo + 1];
    } else {
        memcpy(out + lo, from + lo, sizeof(double) * (size_t)n);
    }
}

/* Copy the points no loop writes of row (p, y), segment [lo, hi), from `from` (the array of
   this level's parity). */
static inline void asp_row_untouched(double *restrict out, const double *restrict from, long p,
                                     long y, long lo, long hi) {
% if untouched == "none":
    (void)out; (void)from; (void)p; (void)y; (void)lo; (void)hi;
% elif untouched == "border":
    if (!asp_row_interior(p, y) || G2 >= N2 - G2) {
        asp_copy(out, from, lo, hi);
    } else {
        asp_copy(out, from, lo, asp_lmin(G2, hi));
        asp_copy(out, from, asp_lmax(N2 - G2, lo), hi);
    }
% else:
    if (asp_row_interior(p, y) && G2 < N2 - G2)
        asp_copy(out, from, asp_lmax(G2, lo), asp_lmin(N2 - G2, hi));
% endif
}

/* Copy n doubles with non-temporal (streaming) stores where the ISA has them: the block never
   reads what it writes to the destination array, so those lines need not be fetched first nor
   displace the working set from the cache. Unaligned head and short tail use plain stores. */
static inline void asp_stream_row(double *restrict dst, const double *restrict src, long n) {
    long i = 0;
#if defined(__AVX512F__)
    while (i < n && ((uintptr_t)(dst + i) & 63)) { dst[i] = src[i]; ++i; }
    for (; i + 8 <= n; i += 8) _mm512_stream_pd(dst + i, _mm512_loadu_pd(src + i));
#elif defined(__AVX__)
    while (i < n && ((uintptr_t)(dst + i) & 31)) { dst[i] = src[i]; ++i; }
    for (; i + 4 <= n; i += 4) _mm256_stream_pd(dst + i, _mm256_loadu_pd(src + i));
#elif defined(__SSE2__)
    while (i < n && ((uintptr_t)(dst + i) & 15)) { dst[i] = src[i]; ++i; }
    for (; i + 2 <= n; i += 2) _mm_stream_pd(dst + i, _mm_loadu_pd(src + i));
#endif
    for (; i < n; ++i) dst[i] = src[i];
}

static inline void asp_store_fence(void) {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

static inline void asp_stream_seg(double *restrict dst, const double *restrict buf, long lo,
                                  long hi) {
    if (lo < hi) asp_stream_row(dst + lo, buf + lo, hi - lo);
}

/* Stream the points a sweep writes of row (p, y), segment [lo, hi), from the row buffer into
   the global row. */
static inline void asp_row_stream(double *restrict dst, const double *restrict buf, long p,
                                  long y, long lo, long hi) {
% if untouched == "none":
    (void)p; (void)y;
    asp_stream_seg(dst, buf, lo, hi);
% elif untouched == "border":
    if (asp_row_interior(p, y) && G2 < N2 - G2)
        asp_stream_seg(dst, buf, asp_lmax(G2, lo), asp_lmin(N2 - G2, hi));
% else:
    if (!asp_row_interior(p, y) || G2 >= N2 - G2) {
        asp_stream_seg(dst, buf, lo, hi);
    } else {
        asp_stream_seg(dst, buf, lo, asp_lmin(G2, hi));
        asp_stream_seg(dst, buf, asp_lmax(N2 - G2, lo), hi);
    }
% endif
}

/* Points of a ring row: whole rows, or for segments of B2 < N2 points the widest level's
   segment rounded up to whole cache lines (row kernels take the row stride as `ys`). */
static inline long asp_ring_row(long K, long B2) {
    return B2 >= N2 ? N2 : asp_lmin(N2, (B2 + 2 * R2 * K + 7) / 8 * 8);
}

/* Doubles of per-thread scratch: K-1 ring levels of up to SLOTS + 1 planes of W1 rows, then a
   row buffer (two rows) for streaming stores. */
static inline long asp_ring_doubles(long K, long B1, long B2) {
    return K > 1 ? (K - 1) * (SLOTS + 1) * (B1 + 2 * R1 * K) * asp_ring_row(K, B2) : 0;
}

/* Row stride of wavefront-tile rings: whole rows padded to an odd number of cache lines, so
   the rows a point reads (and the row it writes) do not all fall into the same cache sets when
   rows are a power of two long. */
#define WRS ((N2 + 7L) / 8L % 2L ? (N2 + 7L) / 8L * 8L : (N2 + 7L) / 8L * 8L + 8L)
/* Offset of the ring in the (cache-line aligned) scratch that puts the first interior point
   x = G2 of every ring row on a cache line: the row kernels' loads at x and stores then do not
   split cache lines (only the loads at x +- 1 do). */
#define WSHIFT ((8L - G2 % 8L) % 8L)

/* Wavefront tiles: K-1 ring levels of up to SLOTS + 1 planes of B1 + K R1 whole rows, then the
   halo buffer (K-1 levels of B0 + 2 R0 (K-1) planes of 2 R1 rows), each rounded to a cache line. */
static inline long asp_wring_doubles(long K, long B1) {
    return K > 1 ? ((K - 1) * (SLOTS + 1) * (B1 + R1 * K) * WRS + 7) / 8 * 8 : 0;
}

static inline long asp_whalo_doubles(long K, long B0) {
    return K > 1 ? ((K - 1) * (B0 + 2 * R0 * (K - 1)) * 2 * R1 * WRS + 7) / 8 * 8 : 0;
}

/* The deepest block wavefront tiles of B1 rows take: tile 0 shrinks by R1 rows a level and
   must keep 2 R1 rows for tile 1 at every level but the last (odd, at least 1). */
static inline long asp_wdepth(long K, long B1) {
    if (R1 > 0 && K * R1 > B1) K = asp_lmax(1, B1 / R1);
    return K % 2 ? K : K - 1;
}


/* The halo exchange of wavefront tiles for one plane of one level: ring plane `rp`, halo slot
   `h` (the 2 R1 edge rows, `hrows` doubles). With `take`, the rows tile ti - 1 left in the slot
   go to ring row `below` (under this tile's rows); with `give`, this tile's right edge, from
   ring row `edge`, takes their place for tile ti + 1. */
static inline void asp_whalo_swap(double *restrict rp, double *restrict h, long hrows,
                                  long below, long edge, int take, int give) {
    if (take) memcpy(rp + below * WRS, h, sizeof(double) * (size_t)hrows);
    if (give) memcpy(h, rp + edge * WRS, sizeof(double) * (size_t)hrows);
}

<%def name="halo_exchange(take, give)">\
                  for (long dp = 0; dp <= zj; ++dp) {
                    const long p = i - (k - 1) * R0 + dp;
                    if (p < asp_lmax(0, a - R0 * (K - k)) || p >= asp_lmin(N0, b + R0 * (K - k)))
                        continue;
                    asp_whalo_swap(ring + ((k - 1) * slots + p % slots) * plane,
                                   halo + ((k - 1) * hplanes + (p - pbase)) * hrows, hrows,
                                   (K - k - 1) * R1, e - (k + 1) * R1 - y0, ${take}, ${give});
                  }
</%def>\
<%def name="level_rows(sfx)">\
                    /* rows [ylo, yhi) of level k, plane p: into the ring (k < K) or dst */
                    double *lvl = k < K ? ring + ((k - 1) * slots + p % slots) * plane : NULL;
                    const double *from = (k % 2 == 0) ? src : dst;
                    for (long y = ylo; y < yhi;) {
                        /* jam: rows y and y + 1 in one pass where both are left */
                        const long two = jam == 1 && y + 1 < yhi;
                        const double *s[${max(len(dzs), 1)}];
% for j, dz in enumerate(dzs):
                        {
                            const long q = p + (${dz});
                            s[${j}] = (q < 0 || q >= N0) ? NULL
                                : k == 1 ? src + (q * N1 + y) * N2
                                : ring + ((k - 2) * slots + (q + slots) % slots) * plane
                                       + (y - y0) * RS - xo;
                        }
% endfor
% if not dzs:
                        s[0] = NULL;
% endif
                        double *out = k < K ? lvl + (y - y0) * RS - xo
                                    : nt ? rowbuf : dst + (p * N1 + y) * N2;
                        const long os = k < K ? RS : N2;  /* output row stride */
                        double *out1 = out + os;
                        if (two)
                            ${row_all2_calls[sfx]};
                        else
                            ${row_all_calls[sfx]};
                        for (long r = 0; r <= two; ++r) {
                            const long yr = y + r;
                            if (k < K)
                                asp_row_untouched(out + r * os, from + (p * N1 + yr) * N2, p,
                                                  yr, xlo, xhi);
                            else if (nt)
                                asp_row_stream(dst + (p * N1 + yr) * N2, rowbuf + r * os, p, yr,
                                               xlo, xhi);
                        }
                        y += 1 + two;
                    }
</%def>\
<%def name="planes(sfx)">\
                    if (zj && p0 >= plo && p0 + 1 < phi) {
${level_pair(sfx)}\
                    } else {
                      for (long p = asp_lmax(p0, plo); p <= asp_lmin(p0 + zj, phi - 1); ++p) {
${level_rows(sfx)}\
                      }
                    }
</%def>\
<%def name="level_pair(sfx)">\
                    /* row y of planes p0 and p0 + 1 of level k in one pass */
                    double *lvl = k < K ? ring + ((k - 1) * slots + p0 % slots) * plane : NULL;
                    double *lvl1 = k < K ? ring + ((k - 1) * slots + (p0 + 1) % slots) * plane
                                 : NULL;
                    const double *from = (k % 2 == 0) ? src : dst;
                    const long p = p0, p1 = p0 + 1;
                    for (long y = ylo; y < yhi; ++y) {
                        const double *sz[${len(zdzs)}];
% for j, dz in enumerate(zdzs):
                        {
                            const long q = p + (${dz});
                            sz[${j}] = (q < 0 || q >= N0) ? NULL
                                : k == 1 ? src + (q * N1 + y) * N2
                                : ring + ((k - 2) * slots + (q + slots) % slots) * plane
                                       + (y - y0) * RS - xo;
                        }
% endfor
                        double *out = k < K ? lvl + (y - y0) * RS - xo
                                    : nt ? rowbuf : dst + (p * N1 + y) * N2;
                        double *out1 = k < K ? lvl1 + (y - y0) * RS - xo
                                     : nt ? rowbuf + N2 : dst + (p1 * N1 + y) * N2;
                        ${row_allz_calls[sfx]};
                        if (k < K) {
                            asp_row_untouched(out, from + (p * N1 + y) * N2, p, y, xlo, xhi);
                            asp_row_untouched(out1, from + (p1 * N1 + y) * N2, p1, y, xlo, xhi);
                        } else if (nt) {
                            asp_row_stream(dst + (p * N1 + y) * N2, rowbuf, p, y, xlo, xhi);
                            asp_row_stream(dst + (p1 * N1 + y) * N2, rowbuf + N2, p1, y, xlo,
                                           xhi);
                        }
                    }
</%def>\
<%def name="engine(sfx)">\
${row_functions[sfx]}

/* Compute the written points of row (p, y), segment [xlo, xhi), of one level into `out`
   (pointing at x = 0 of the row).
   `s[j]` points at row y of plane p + dz_j of the previous level, wherever it is stored. */
static inline void asp_row_all${sfx}(double *restrict out, const double *const *s,
% for decl in const_params:
                               ${decl},
% endfor
                               long p, long y, long ys, long xlo, long xhi, long xs) {
    const int inner = asp_row_interior(p, y);
% for rk in rows:
    {   /* loop ${rk.index}: ${rk.region} points */
% if rk.region == "interior":
        if (inner && G2 < N2 - G2)
            ${rk.calls[sfx]["interior"]};
% else:
        if (!inner) {
            ${rk.calls[sfx]["whole"]};
        } else {
            ${rk.calls[sfx]["left"]};
            ${rk.calls[sfx]["right"]};
        }
% endif
    }
% endfor
}

/* Rows y and y + 1 of one level into `out` and `out + os`: interior loops in one pass over
   both rows (the input rows they share loaded once), the rest row by row. */
static inline void asp_row_all2${sfx}(double *restrict out, double *restrict out1,
                                const double *const *s,
% for decl in const_params:
                                ${decl},
% endfor
                                long p, long y, long ys, long xlo, long xhi, long xs) {
    const long y1 = y + 1;
    const double *s1[${max(len(dzs), 1)}];
    for (int j = 0; j < ${max(len(dzs), 1)}; ++j) s1[j] = s[j] ? s[j] + ys : NULL;
    const int inner = asp_row_interior(p, y), inner1 = asp_row_interior(p, y1);
% for rk in rows:
    {   /* loop ${rk.index}: ${rk.region} points */
% if rk.region == "interior":
        if (inner && inner1 && G2 < N2 - G2) {
            ${rk.calls[sfx]["pair"]};
        } else if (G2 < N2 - G2) {
            if (inner) ${rk.calls[sfx]["interior"]};
            if (inner1) ${rk.calls[sfx]["next_interior"]};
        }
% else:
        if (!inner) {
            ${rk.calls[sfx]["whole"]};
        } else {
            ${rk.calls[sfx]["left"]};
            ${rk.calls[sfx]["right"]};
        }
        if (!inner1) {
            ${rk.calls[sfx]["next_whole"]};
        } else {
            ${rk.calls[sfx]["next_left"]};
            ${rk.calls[sfx]["next_right"]};
        }
% endif
    }
% endfor
}

/* Row y of planes p and p + 1 of one level into `out` and `out1` (`sz[j]` points at row y of
   plane p + zdz_j of the previous level): interior loops in one pass over both rows (the
   input rows they share loaded once), the rest row by row. */
static inline void asp_row_allz${sfx}(double *restrict out, double *restrict out1,
                                const double *const *sz,
% for decl in const_params:
                                ${decl},
% endfor
                                long p, long y, long ys, long xlo, long xhi, long xs) {
    const long p1 = p + 1;
    const int inner = asp_row_interior(p, y), inner1 = asp_row_interior(p1, y);
% for rk in rows:
    {   /* loop ${rk.index}: ${rk.region} points */
% if rk.region == "interior":
        if (inner && inner1 && G2 < N2 - G2) {
            ${rk.calls[sfx]["zpair"]};
        } else if (G2 < N2 - G2) {
            if (inner) ${rk.calls[sfx]["z0_interior"]};
            if (inner1) ${rk.calls[sfx]["z1_interior"]};
        }
% else:
        if (!inner) {
            ${rk.calls[sfx]["z0_whole"]};
        } else {
            ${rk.calls[sfx]["z0_left"]};
            ${rk.calls[sfx]["z0_right"]};
        }
        if (!inner1) {
            ${rk.calls[sfx]["z1_whole"]};
        } else {
            ${rk.calls[sfx]["z1_left"]};
            ${rk.calls[sfx]["z1_right"]};
        }
% endif
    }
% endfor
}

/* One block: levels t+1 .. t+K (K odd) from src = x[t%2] into dst = x[(t+1)%2]. */
static void asp_block${sfx}(const double *restrict src, double *restrict dst,
% for decl in const_params:
                      ${decl},
% endfor
                      long K, long B0, long B1, long B2, long sk, long jam, long nt, long xs,
                      double *const *scratch) {
    const long nch = (N0 + B0 - 1) / B0, nti = (N1 + B1 - 1) / B1, nxi = (N2 + B2 - 1) / B2;
    const long W1 = B1 + 2 * R1 * K;
    const long RS = asp_ring_row(K, B2);
    const long plane = W1 * RS;
    const long zj = jam == 2, slots = ASP_SLOTS(jam);  /* two planes per pass */
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (long ci = 0; ci < nch; ++ci) {
        for (long ti = 0; ti < nti; ++ti) {
          for (long xi = 0; xi < nxi; ++xi) {
            const long a = ci * B0, b = asp_lmin(a + B0, N0);
            const long c = ti * B1, e = asp_lmin(c + B1, N1);
            const long xa = xi * B2, xe = asp_lmin(xa + B2, N2);
            const long y0 = c - R1 * K;
            /* ring rows hold [xo, xo + RS); their pointers are offset so x stays absolute */
            const long xo = RS == N2 ? 0 : xa - R2 * K;
            /* x = G2 of the first ring row, and of the row buffer, on a cache line (WSHIFT) */
            double *ring = scratch[omp_get_thread_num()] + (8 - ((G2 - xo) % 8 + 8) % 8) % 8;
            double *rowbuf = scratch[omp_get_thread_num()] + 8
                             + (asp_ring_doubles(K, B1, B2) + 7) / 8 * 8 + WSHIFT;
            /* sk: rows skewed too — at (i, j) level k computes row j - (k - 1) R1 of its plane,
               right after level k - 1 produced the row it needs last (still in L1) */
            const long jlo = sk ? c - R1 * (K - 1) : 0, jhi = sk ? e + R1 * (K - 1) : 1;
            for (long i = a - R0 * (K - 1); i < b + R0 * (K - 1); i += 1 + zj) {
              for (long j = jlo; j < jhi; ++j) {
                for (long k = 1; k <= K; ++k) {
                    const long p0 = i - (k - 1) * R0;  /* planes p0 .. p0 + zj */
                    const long plo = asp_lmax(0, a - R0 * (K - k));
                    const long phi = asp_lmin(N0, b + R0 * (K - k));
                    if (p0 + zj < plo || p0 >= phi) continue;
                    long ylo = k == K ? c : asp_lmax(0, c - R1 * (K - k));
                    long yhi = k == K ? e : asp_lmin(N1, e + R1 * (K - k));
                    if (sk) {
                        const long yk = j - (k - 1) * R1;
                        ylo = asp_lmax(ylo, yk);
                        yhi = asp_lmin(yhi, yk + 1);
                    }
                    const long xlo = k == K ? xa : asp_lmax(0, xa - R2 * (K - k));
                    const long xhi = k == K ? xe : asp_lmin(N2, xe + R2 * (K - k));
                    const long ys = k == 1 ? N2 : RS;  /* row stride of the previous level */
${planes(sfx)}                }
              }
            }
            if (nt) asp_store_fence();
          }
        }
    }
}

/* One block of wavefront tiles (see the top): levels t+1 .. t+K from src into dst, chunks of
   B0 planes in parallel, the tiles of B1 rows of a chunk in order by one thread. With `sk`, rows
   are skewed level by level as in asp_block: at (i, j) level k computes row j - (k - 1) R1,
   right after level k - 1 produced the row of plane p + R0 it reads last. */
static void asp_wblock${sfx}(const double *restrict src, double *restrict dst,
% for decl in const_params:
                       ${decl},
% endfor
                       long K, long B0, long B1, long sk, long jam, long nt, long xs,
                       double *const *scratch) {
    const long nch = (N0 + B0 - 1) / B0, nti = (N1 + B1 - 1) / B1;
    const long RS = WRS, xo = 0;  /* ring row stride, x of a ring row's first point */
    const long plane = (B1 + R1 * K) * RS;  /* doubles of one ring plane */
    const long hplanes = B0 + 2 * R0 * (K - 1), hrows = 2 * R1 * RS;
    const long zj = jam == 2, slots = ASP_SLOTS(jam);  /* two planes per pass */
#pragma omp parallel for schedule(dynamic, 1)
    for (long ci = 0; ci < nch; ++ci) {
        double *ring = scratch[omp_get_thread_num()] + WSHIFT;
        double *halo = ring + asp_wring_doubles(K, B1);
        double *rowbuf = halo + asp_whalo_doubles(K, B0);
        const long a = ci * B0, b = asp_lmin(a + B0, N0);
        const long pbase = a - R0 * (K - 1);
        for (long ti = 0; ti < nti; ++ti) {
            const long c = ti * B1, e = asp_lmin(c + B1, N1);
            const int first = ti == 0, last = ti == nti - 1;
            const long y0 = c - R1 * K;  /* ring row 0 */
            /* skewed, level k's rows [ylo, yhi) are j - (k - 1) R1 for j in [jlo, jhi) */
            const long jlo = sk && !first ? c : 0;
            const long jhi = !sk ? 1 : last ? N1 + (K - 1) * R1 : e;
            for (long i = a - R0 * (K - 1); i < b + R0 * (K - 1); i += 1 + zj) {
                /* skewed levels interleave row by row: the rows of tile ti - 1's right edge of
                   every level's plane of this step before any level runs (the ring slot they
                   go to held a plane no level reads any more); unskewed, each level exchanges
                   its own right after it ran (below) */
                for (long k = 1; k < K && sk && !first && hrows; ++k)
${halo_exchange("1", "0")}                for (long j = jlo; j < jhi; ++j) {
                  for (long k = 1; k <= K; ++k) {
                    const long p0 = i - (k - 1) * R0;  /* planes p0 .. p0 + zj */
                    const long plo = asp_lmax(0, a - R0 * (K - k));
                    const long phi = asp_lmin(N0, b + R0 * (K - k));
                    if (p0 + zj < plo || p0 >= phi) continue;
                    long ylo = first ? 0 : c - (k - 1) * R1;
                    long yhi = last ? N1 : e - (k - 1) * R1;
                    if (sk) {
                        ylo = asp_lmax(ylo, j - (k - 1) * R1);
                        yhi = asp_lmin(yhi, j - (k - 1) * R1 + 1);
                    }
                    const long ys = k == 1 ? N2 : RS, xlo = 0, xhi = N2;  /* whole rows */
${planes(sfx)}\
                    /* unskewed: level k's planes of this step are done; their halo slots
                       trade tile ti - 1's edge rows for this tile's, each slot's lines
                       fetched once (both copies while they are in L1) */
                    if (!sk && k < K && hrows)
${halo_exchange("!first", "!last")}\
                  }
                }
                /* skewed: this tile's right edge of every level's plane of this step, for
                   tile ti + 1 */
                for (long k = 1; k < K && sk && !last && hrows; ++k)
${halo_exchange("0", "1")}            }
        }
        if (nt) asp_store_fence();
    }
}
</%def>\
${engine("")}
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
/* The same engine compiled for full-width AVX-512 vectors: gcc's default on these CPUs is
   256-bit vectors (kinder to the clock of mixed code); the blocked loops are compute-bound, so
   the tuner times both. */
#define ASP_WIDE 1
#pragma GCC push_options
#pragma GCC target("prefer-vector-width=512")
${engine("_w512")}
#pragma GCC pop_options
#else
#define ASP_WIDE 0
#endif

/* 1 if this library has the full-width engine (`wide` != 0 in _run selects it), else 0. */
long ${prefix}_wide(void) {
    return ASP_WIDE;
}

/* The scratch a thread needs for blocks of depth up to K with tiles of B1 rows and segments
   of B2 points, in doubles. */
long ${prefix}_scratch_doubles(long K, long B0, long B1, long B2, long wt) {
    /* the last, plain sweep of a run runs asp_block with K = 1 whatever `wt` says */
    const long plain = 8 + (asp_ring_doubles(K, B1, B2) + 7) / 8 * 8 + WSHIFT + 2 * N2;
    if (wt)
        return asp_lmax(plain,
                        WSHIFT + asp_wring_doubles(K, B1) + asp_whalo_doubles(K, B0) + 2 * N2);
    return plain;
}

/* `steps` Jacobi sweeps: x0 holds level 0 (the state grid), x1 is the output grid; `wt` != 0
   runs wavefront tiles (whole rows; B2 is ignored then); `jam` != 0 computes two rows per
   pass (where a level's rows are not skewed one at a time); `nt` != 0
   writes each block's last level with streaming stores, `wide` != 0 runs the full-width engine
   where the library has one (2: with its x-shifted rows, where the kernel has them). Returns 0,
   or -1 if the scratch could not be allocated (nothing was written then). */
int ${prefix}_run(double *x0, double *x1,
% for decl in const_params:
                  ${decl},
% endfor
                  long steps, long K, long B0, long B1, long B2, long sk, long jam, long wt,
                  long nt, long wide) {
    if (steps <= 0) return 0;
    if (K < 1) K = 1;
    if (K % 2 == 0) K -= 1;
    if (B0 < 1 || B0 > N0) B0 = N0;
    if (B1 < 1 || B1 > N1) B1 = N1;
    if (B2 < 1 || B2 > N2) B2 = N2;
    if (wt) K = asp_wdepth(K, B1);
    const long xs = wide == 2;   /* the full-width engine's x-shifted rows */
    const int nthreads = omp_get_max_threads();
    double **scratch = (double **)calloc((size_t)nthreads, sizeof(double *));
    if (!scratch) return -1;
    const size_t bytes = (size_t)${prefix}_scratch_doubles(K, B0, B1, B2, wt) * sizeof(double);
    int failed = 0;
    for (int t = 0; t < nthreads; ++t) {
        scratch[t] = (double *)aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!scratch[t]) failed = 1;
    }
    if (!failed) {
        double *x[2] = {x0, x1};
        long t = 0;
        while (steps - t > 1) {
            long k = asp_lmin(K, steps - 1 - t);
            if (k % 2 == 0) k -= 1;
#if ASP_WIDE
            if (wide && wt) ${wblock_calls["_w512"]}; else
            if (wide) ${block_calls["_w512"]["k"]}; else
#endif
            if (wt) ${wblock_calls[""]}; else
            ${block_calls[""]["k"]};
            t += k;
        }
#if ASP_WIDE
        if (wide) ${block_calls["_w512"]["1"]}; else
#endif
        ${block_calls[""]["1"]};
    }
    for (int t = 0; t < nthreads; ++t) free(scratch[t]);
    free(scratch);
    return failed ? -1 : 0;
}

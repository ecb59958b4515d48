<%doc>
  One EM iteration (and the E-step alone) for a Gaussian mixture, specialised on the number of
  components M, the number of features D, the covariance type and the input dtype, so every loop
  over D or over the components has a compile-time trip count and gcc can keep the accumulators
  in vector registers.

  Template arguments (asp_gmm.lowering): M, D, DP (D padded to VW), MP (M padded to VK), VW
  (lanes of vectors over features), VK (lanes of vectors over components), cov ("full" |
  "diag"), strategy ("fused" | "samples" | "components" | "dims"), unroll (samples per register
  tile in the full E-step), rows (covariance rows per register tile in the full M-step),
  qchunk (component vectors per register tile in the diag kernels), triangular (skip the zero
  blocks of the triangular precision factors). The same numbers, as C macros, and the
  exported extern "C" entry points asp_gmm_em_step / asp_gmm_log_prob are platform-AST nodes
  printed around this text.

  Parameter packing (asp_gmm.packing):
    full: pa = L (M x DP x DP, upper-triangular precision Cholesky, zero padded),
          pb = c = mu_k @ L_k (M x DP), pc = log w + log det L - D/2 log 2pi (M),
          shift = old means (M x DP)
    diag: pa = means transposed (D x MP), pb = precision Cholesky transposed (D x MP),
          pc = constants (MP, -inf in padded lanes), shift = D x MP (lane k: component k's
          point; one common point in every lane where all components are well conditioned
          about it, which the kernels see and take the cheaper scalar loop for)
  Output (out, NSTAT doubles): S0 (MP) | S1 (full: M x DP, diag: D x MP) |
    S2 (full: M x DP x DP upper triangle, diag: D x MP) | sum of log-sum-exp (1).
  S1 and S2 are moments of (x - shift): Python turns them into sklearn's means/covariances.
</%doc>
<%
    NV = DP // VW
    NQ = MP // VK
    full = cov == "full"
    XS = DP if full else D
    if full:
        S1SIZE = M * DP
        S2SIZE = M * DP * DP
    else:
        S1SIZE = D * MP
        S2SIZE = D * MP
    NSTAT = MP + S1SIZE + S2SIZE + 1
    NSTATP = (NSTAT + 7) // 8 * 8
%>\
${prelude}
#ifdef _OPENMP
#include <omp.h>
#else  /* a compiler without OpenMP (asp_core.toolchain probes it): one thread */
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif
/* the threads of a loop over `n` blocks: no more than the blocks (at least one) */
static inline int team_for(int64_t n)
{
    int nt = omp_get_max_threads();
    return n < nt ? (n > 0 ? (int)n : 1) : nt;
}
/* kernel bodies: the constants (M, D, DP, MP, VW, VK, NV, NQ, XS, BLOCK, offsets), the
   input type `xtype` and the exported entry points come from the platform AST around this text */
typedef double vd __attribute__((vector_size(VW * 8)));
typedef double vdu __attribute__((vector_size(VW * 8), aligned(8), may_alias));
typedef double vk __attribute__((vector_size(VK * 8)));
typedef double vku __attribute__((vector_size(VK * 8), aligned(8), may_alias));

#define LDD(p) (*(const vdu *)(p))
#define STD(p, v) (*(vdu *)(p) = (v))
#define LDK(p) (*(const vku *)(p))
#define STK(p, v) (*(vku *)(p) = (v))

/* exp(x) to ~1 ulp for x in [-708, 709]; 0 below -708 (the responsibilities of such terms are
   below 1e-307 of the largest one).  Written branch-free so `omp simd` loops vectorise it. */
static inline double asp_exp(double x)
{
    const double magic = 6755399441055744.0; /* 1.5 * 2^52: rounds to an integer */
    double under = x < -708.0 ? 0.0 : 1.0;
    x = x < -708.0 ? -708.0 : x;
    x = x > 709.0 ? 709.0 : x;
    double t = x * 1.4426950408889634 + magic;
    double n = t - magic;
    double r = x - n * 0.6931471803691238;
    r = r - n * 1.9082149292705877e-10;
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t bits;
    memcpy(&bits, &t, 8);
    bits = (bits - (int64_t)0x4338000000000000LL + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, 8);
    return p * scale * under;
}

static inline double hsum_d(vd v)
{
    double s = v[0];
    for (int l = 1; l < VW; ++l) s += v[l];
    return s;
}

/* rows [n0, n0 + nb) of X as doubles, row stride XS, padded columns zero */
static void load_block(const xtype *restrict X, int64_t n0, int nb, double *restrict xb)
{
    for (int b = 0; b < nb; ++b) {
        const xtype *xr = X + (n0 + b) * (int64_t)D;
        double *o = xb + (int64_t)b * XS;
        for (int j = 0; j < D; ++j) o[j] = (double)xr[j];
        for (int j = D; j < XS; ++j) o[j] = 0.0;
    }
}

% if full:
/* log-sum-exp over the components of each row of lp (stride MP), turning lp into the
   responsibilities in place (r = exp(lp - max) / sum, one exp per entry); returns the sum of
   the log-sum-exps */
static double normalise_block(double *restrict lp, int nb)
{
    double total = 0.0;
    for (int b = 0; b < nb; ++b) {
        double *row = lp + (int64_t)b * MP;
        double mx = row[0];
#pragma omp simd reduction(max : mx)
        for (int k = 1; k < M; ++k) mx = row[k] > mx ? row[k] : mx;
        if (!isfinite(mx)) mx = 0.0; /* a row of -inf: lse -inf, as numpy's (not -inf - -inf) */
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int k = 0; k < MP; ++k) {
            double e = asp_exp(row[k] - mx);
            row[k] = e;
            s += e;
        }
        total += mx + log(s);
        const double inv = 1.0 / s;
#pragma omp simd
        for (int k = 0; k < MP; ++k) row[k] *= inv;
    }
    return total;
}
% else:
/* asp_exp on a vector of VK components: the same operations lane by lane, in explicit vector
   types, so the compiler keeps the full vector width (the `omp simd` loop over a row ran on
   half-width vectors with AVX-512, and the exponentials were the EM iteration's largest
   part: 29% of a diag iteration at N=200k D=16 M=32, measured with perf) */
typedef long long vkl __attribute__((vector_size(VK * 8)));
#define VSEL(t, a, b) ((vk)(((vkl)(a) & (t)) | ((vkl)(b) & ~(t))))

static inline vk asp_exp_v(vk x)
{
    const vk magic = (vk){0} + 6755399441055744.0, lo = (vk){0} - 708.0,
             hi = (vk){0} + 709.0;
    const vkl under = x < lo;
    x = VSEL(under, lo, x);
    x = VSEL(x > hi, hi, x);
    vk t = x * 1.4426950408889634 + magic;
    vk n = t - magic;
    vk r = x - n * 0.6931471803691238;
    r = r - n * 1.9082149292705877e-10;
    vk p = (vk){0} + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    vk scale = (vk)((((vkl)t) - 0x4338000000000000LL + 1023) << 52);
    return (vk)((vkl)(p * scale) & ~under);
}

/* log-sum-exp over the components of each row of lp (stride MP), turning lp into the
   responsibilities in place (r = exp(lp - max) / sum, one exp per entry); returns the sum of
   the log-sum-exps. The padded lanes hold -inf: they do not change the maximum and their
   exponentials are 0. */
static double normalise_block(double *restrict lp, int nb)
{
    double total = 0.0;
    vkl lanes;
    for (int l = 0; l < VK; ++l) lanes[l] = l;
    for (int b = 0; b < nb; ++b) {
        double *row = lp + (int64_t)b * MP;
        vk m = LDK(row);
        for (int q = 1; q < NQ; ++q) {
            const vk v = LDK(row + q * VK);
            m = VSEL(v > m, v, m);
        }
        /* the lanes' maximum and sum by halving (the lane loops compiled to scalar chains) */
        for (int w = VK / 2; w >= 1; w /= 2) {
            const vk t = __builtin_shuffle(m, lanes ^ w);
            m = VSEL(t > m, t, m);
        }
        const double mx = isfinite(m[0]) ? m[0] : 0.0; /* a row of -inf: lse -inf */
        vk sv = (vk){0};
        for (int q = 0; q < NQ; ++q) {
            const vk e = asp_exp_v(LDK(row + q * VK) - mx);
            STK(row + q * VK, e);
            sv += e;
        }
        for (int w = VK / 2; w >= 1; w /= 2) sv += __builtin_shuffle(sv, lanes ^ w);
        const double s = sv[0];
        total += mx + log(s);
        const double inv = 1.0 / s;
        for (int q = 0; q < NQ; ++q) STK(row + q * VK, LDK(row + q * VK) * inv);
    }
    return total;
}
% endif

% if full:
/* weighted log-probabilities of components [k0, k1) for a block:
   lp[b][k] = pc[k] - 1/2 |x_b L_k - c_k|^2  (upper-triangular L_k, so row i of L_k only touches
   the vectors v >= i / VW: the loop nest is emitted per vector segment with constant bounds) */
static void logp_block(const double *restrict xb, int nb, const double *restrict L,
                       const double *restrict c, const double *restrict cst,
                       double *restrict lp, int k0, int k1)
{
    for (int k = k0; k < k1; ++k) {
        const double *Lk = L + (int64_t)k * DP * DP;
        const double *ck = c + (int64_t)k * DP;
        int b = 0;
        for (; b + ${unroll} <= nb; b += ${unroll}) {
            vd y[${unroll}][NV];
            for (int u = 0; u < ${unroll}; ++u)
                for (int v = 0; v < NV; ++v) y[u][v] = -LDD(ck + v * VW);
% for vs in range(NV):
            for (int i = ${vs * VW}; i < ${min(D, vs * VW + VW)}; ++i) {
                vd l[NV];
                for (int v = ${vs if triangular else 0}; v < NV; ++v) l[v] = LDD(Lk + i * DP + v * VW);
                for (int u = 0; u < ${unroll}; ++u) {
                    double xi = xb[(int64_t)(b + u) * DP + i];
                    for (int v = ${vs if triangular else 0}; v < NV; ++v) y[u][v] += xi * l[v];
                }
            }
% endfor
            for (int u = 0; u < ${unroll}; ++u) {
                vd s = y[u][0] * y[u][0];
                for (int v = 1; v < NV; ++v) s += y[u][v] * y[u][v];
                lp[(int64_t)(b + u) * MP + k] = cst[k] - 0.5 * hsum_d(s);
            }
        }
        for (; b < nb; ++b) {
            vd y[NV];
            for (int v = 0; v < NV; ++v) y[v] = -LDD(ck + v * VW);
% for vs in range(NV):
            for (int i = ${vs * VW}; i < ${min(D, vs * VW + VW)}; ++i) {
                double xi = xb[(int64_t)b * DP + i];
                for (int v = ${vs if triangular else 0}; v < NV; ++v) y[v] += xi * LDD(Lk + i * DP + v * VW);
            }
% endfor
            vd s = y[0] * y[0];
            for (int v = 1; v < NV; ++v) s += y[v] * y[v];
            lp[(int64_t)b * MP + k] = cst[k] - 0.5 * hsum_d(s);
        }
    }
}

/* sufficient statistics of component k over a block: S0 += sum r, S1 += sum r d,
   S2 (upper triangle) += sum r d d^T with d = x - shift_k.  d and w = r d are staged in
   scratch so the rank-B update runs as register-tiled FMAs over `rows` rows at a time. */
static void stats_block_k(const double *restrict xb, int nb, const double *restrict r,
                          int rstride, int k, const double *restrict shift,
                          double *restrict acc, double *restrict d, double *restrict w)
{
    const double *sk = shift + (int64_t)k * DP;
    vd sh[NV], e[NV];
    for (int v = 0; v < NV; ++v) {
        sh[v] = LDD(sk + v * VW);
        e[v] = LDD(acc + S1OFF + (int64_t)k * DP + v * VW);
    }
    double s0 = 0.0;
    for (int b = 0; b < nb; ++b) {
        double rb = r[(int64_t)b * rstride];
        s0 += rb;
        for (int v = 0; v < NV; ++v) {
            vd dv = LDD(xb + (int64_t)b * DP + v * VW) - sh[v];
            vd wv = rb * dv;
            STD(d + (int64_t)b * DP + v * VW, dv);
            STD(w + (int64_t)b * DP + v * VW, wv);
            e[v] += wv;
        }
    }
    acc[k] += s0;
    for (int v = 0; v < NV; ++v) STD(acc + S1OFF + (int64_t)k * DP + v * VW, e[v]);
    double *S2 = acc + S2OFF + (int64_t)k * DP * DP;
% for vs in range(NV):
    for (int i0 = ${vs * VW}; i0 < ${min(DP, vs * VW + VW)}; i0 += ${rows}) {
        vd a[${rows}][NV];
        for (int ii = 0; ii < ${rows}; ++ii)
            for (int v = ${vs if triangular else 0}; v < NV; ++v) a[ii][v] = LDD(S2 + (i0 + ii) * DP + v * VW);
        for (int b = 0; b < nb; ++b) {
            vd dv[NV];
            for (int v = ${vs if triangular else 0}; v < NV; ++v) dv[v] = LDD(d + (int64_t)b * DP + v * VW);
            for (int ii = 0; ii < ${rows}; ++ii) {
                double wi = w[(int64_t)b * DP + i0 + ii];
                for (int v = ${vs if triangular else 0}; v < NV; ++v) a[ii][v] += wi * dv[v];
            }
        }
        for (int ii = 0; ii < ${rows}; ++ii)
            for (int v = ${vs if triangular else 0}; v < NV; ++v) STD(S2 + (i0 + ii) * DP + v * VW, a[ii][v]);
    }
% endfor
}

static void stats_block(const double *restrict xb, int nb, const double *restrict r,
                        const double *restrict shift, double *restrict acc,
                        double *restrict d, double *restrict w)
{
    for (int k = 0; k < M; ++k) stats_block_k(xb, nb, r + k, MP, k, shift, acc, d, w);
}

/* the "over dimensions" unit of work: row i of every component's S2 (and S0, S1 when
   i == 0) over all samples, read from the materialised responsibilities */
static void stats_row(const xtype *restrict X, int64_t N, const double *restrict resp, int i,
                      const double *restrict shift, double *restrict acc)
{
    double xr[DP] __attribute__((aligned(64)));
    for (int j = D; j < DP; ++j) xr[j] = 0.0;
    for (int64_t n = 0; n < N; ++n) {
        for (int j = 0; j < D; ++j) xr[j] = (double)X[n * D + j];
        const double *rn = resp + n * MP;
        for (int k = 0; k < M; ++k) {
            const double *sk = shift + (int64_t)k * DP;
            double *S2 = acc + S2OFF + ((int64_t)k * DP + i) * DP;
            double wi = rn[k] * (xr[i] - sk[i]);
            for (int v = ${"i / VW" if triangular else "0"}; v < NV; ++v)
                STD(S2 + v * VW, LDD(S2 + v * VW) + wi * (LDD(xr + v * VW) - LDD(sk + v * VW)));
            if (i == 0) {
                double *S1 = acc + S1OFF + (int64_t)k * DP;
                acc[k] += rn[k];
                for (int v = 0; v < NV; ++v)
                    STD(S1 + v * VW, LDD(S1 + v * VW) +
                                         rn[k] * (LDD(xr + v * VW) - LDD(sk + v * VW)));
            }
        }
    }
}
#define UNITS D
#define STATS_UNIT(X, N, resp, u, shift, acc) stats_row(X, N, resp, u, shift, acc)

% else:
/* diag: vectors run over the components (VK lanes), so no horizontal sums are needed.
   lp[b][k] = pc[k] - 1/2 sum_j ((x_bj - mu_kj) p_kj)^2 for the components of [q0, q1) vectors */
static void logp_block_q(const double *restrict xb, int nb, const double *restrict muT,
                         const double *restrict pT, const double *restrict cst,
                         double *restrict lp, int q0, int q1)
{
    for (int qc = q0; qc < q1; qc += ${qchunk}) {
        int qn = q1 - qc < ${qchunk} ? q1 - qc : ${qchunk};
        if (qn == ${qchunk}) {
            for (int b = 0; b < nb; ++b) {
                vk a[${qchunk}];
                for (int q = 0; q < ${qchunk}; ++q) a[q] = (vk){0};
                for (int j = 0; j < D; ++j) {
                    double xj = xb[(int64_t)b * D + j];
                    for (int q = 0; q < ${qchunk}; ++q) {
                        vk t = (xj - LDK(muT + j * MP + (qc + q) * VK)) *
                               LDK(pT + j * MP + (qc + q) * VK);
                        a[q] += t * t;
                    }
                }
                for (int q = 0; q < ${qchunk}; ++q)
                    STK(lp + (int64_t)b * MP + (qc + q) * VK,
                        LDK(cst + (qc + q) * VK) - 0.5 * a[q]);
            }
        } else {
            for (int b = 0; b < nb; ++b) {
                for (int q = qc; q < q1; ++q) {
                    vk a = (vk){0};
                    for (int j = 0; j < D; ++j) {
                        double xj = xb[(int64_t)b * D + j];
                        vk t = (xj - LDK(muT + j * MP + q * VK)) * LDK(pT + j * MP + q * VK);
                        a += t * t;
                    }
                    STK(lp + (int64_t)b * MP + q * VK, LDK(cst + q * VK) - 0.5 * a);
                }
            }
        }
    }
}

static void logp_block(const double *restrict xb, int nb, const double *restrict muT,
                       const double *restrict pT, const double *restrict cst,
                       double *restrict lp, int k0, int k1)
{
    /* component ranges are handled in whole vectors of VK components */
    logp_block_q(xb, nb, muT, pT, cst, lp, k0 / VK, (k1 + VK - 1) / VK);
}

/* whether every row of the shift holds one point in all its lanes (each component's moments
   about the same point; a shared point fills the padding lanes too, so the rows compare in a
   few vector ops) */
static inline int shift_shared(const double *restrict shift)
{
    int same = 1;
    for (int j = 0; j < D; ++j)
        for (int k = 1; k < MP; ++k) same &= shift[j * MP + k] == shift[j * MP];
    return same;
}

/* S1[j][k] += r x'_j, S2[j][k] += r x'_j^2 with x'_j = x_j - shift[j][k] (each component's own
   point) for the component vectors [q0, q1); kept out of line, so the shared point's loop
   below compiles as it does alone */
__attribute__((noinline)) static void stats_lanes_q(const double *restrict xb, int nb, const double *restrict r, int j,
                          const double *restrict shift, double *restrict acc, int q0, int q1)
{
    for (int q = q0; q < q1; ++q) {
        const vk c = LDK(shift + j * MP + q * VK);
        vk a1 = LDK(acc + S1OFF + j * MP + q * VK), a2 = LDK(acc + S2OFF + j * MP + q * VK);
        for (int b = 0; b < nb; ++b) {
            const vk d = xb[(int64_t)b * D + j] - c;
            const vk rd = LDK(r + (int64_t)b * MP + q * VK) * d;
            a1 += rd;
            a2 += rd * d;
        }
        STK(acc + S1OFF + j * MP + q * VK, a1);
        STK(acc + S2OFF + j * MP + q * VK, a2);
    }
}

/* S0[k] += r, S1[j][k] += r x'_j, S2[j][k] += r x'_j^2 with x' = x - shift, for the
   component vectors [q0, q1) */
static void stats_block_q(const double *restrict xb, int nb, const double *restrict r,
                          const double *restrict shift, double *restrict acc, int q0, int q1)
{
    for (int q = q0; q < q1; ++q) {
        vk s0 = LDK(acc + q * VK);
        for (int b = 0; b < nb; ++b) s0 += LDK(r + (int64_t)b * MP + q * VK);
        STK(acc + q * VK, s0);
    }
    if (!shift_shared(shift)) {
        for (int j = 0; j < D; ++j) stats_lanes_q(xb, nb, r, j, shift, acc, q0, q1);
        return;
    }
    for (int j = 0; j < D; ++j) {
        const double sj = shift[j * MP];
        for (int qc = q0; qc < q1; qc += ${qchunk}) {
            int qn = q1 - qc < ${qchunk} ? q1 - qc : ${qchunk};
            double *s1 = acc + S1OFF + j * MP + qc * VK;
            double *s2 = acc + S2OFF + j * MP + qc * VK;
            if (qn == ${qchunk}) {
                vk a1[${qchunk}], a2[${qchunk}];
                for (int q = 0; q < ${qchunk}; ++q) {
                    a1[q] = LDK(s1 + q * VK);
                    a2[q] = LDK(s2 + q * VK);
                }
                for (int b = 0; b < nb; ++b) {
                    double xj = xb[(int64_t)b * D + j] - sj;
                    double xj2 = xj * xj;
                    for (int q = 0; q < ${qchunk}; ++q) {
                        vk rb = LDK(r + (int64_t)b * MP + (qc + q) * VK);
                        a1[q] += rb * xj;
                        a2[q] += rb * xj2;
                    }
                }
                for (int q = 0; q < ${qchunk}; ++q) {
                    STK(s1 + q * VK, a1[q]);
                    STK(s2 + q * VK, a2[q]);
                }
            } else {
                for (int q = 0; q < qn; ++q) {
                    vk a1 = LDK(s1 + q * VK), a2 = LDK(s2 + q * VK);
                    for (int b = 0; b < nb; ++b) {
                        double xj = xb[(int64_t)b * D + j] - sj;
                        vk rb = LDK(r + (int64_t)b * MP + (qc + q) * VK);
                        a1 += rb * xj;
                        a2 += rb * (xj * xj);
                    }
                    STK(s1 + q * VK, a1);
                    STK(s2 + q * VK, a2);
                }
            }
        }
    }
}

static void stats_block(const double *restrict xb, int nb, const double *restrict r,
                        const double *restrict shift, double *restrict acc,
                        double *restrict d, double *restrict w)
{
    (void)d;
    (void)w;
    stats_block_q(xb, nb, r, shift, acc, 0, NQ);
}

/* the "over dimensions" unit: feature j's S1 and S2 for every component over all samples
   (S0 with j == 0) */
static void stats_dim(const xtype *restrict X, int64_t N, const double *restrict resp, int j,
                      const double *restrict shift, double *restrict acc)
{
    const double *sh = shift + j * MP;
    const int same = shift_shared(shift);
    for (int64_t n = 0; n < N; ++n) {
        const double xn = (double)X[n * D + j];
        const double *rn = resp + n * MP;
        if (same) {
            const double xj = xn - sh[0], xj2 = xj * xj;
#pragma omp simd
            for (int k = 0; k < MP; ++k) {
                acc[S1OFF + j * MP + k] += rn[k] * xj;
                acc[S2OFF + j * MP + k] += rn[k] * xj2;
            }
        } else {
#pragma omp simd
            for (int k = 0; k < MP; ++k) {
                const double rd = rn[k] * (xn - sh[k]);
                acc[S1OFF + j * MP + k] += rd;
                acc[S2OFF + j * MP + k] += rd * (xn - sh[k]);
            }
        }
        if (j == 0) {
#pragma omp simd
            for (int k = 0; k < MP; ++k) acc[k] += rn[k];
        }
    }
}
#define UNITS D
#define STATS_UNIT(X, N, resp, u, shift, acc) stats_dim(X, N, resp, u, shift, acc)
% endif

/* per-thread scratch for one block */
typedef struct {
    double *xb, *lp, *d, *w;
} scratch_t;

static int scratch_alloc(scratch_t *s)
{
    size_t nx = (size_t)BLOCK * XS, nl = (size_t)BLOCK * MP, nd = (size_t)BLOCK * DP;
    s->xb = (double *)aligned_alloc(64, ((nx * 8 + 63) / 64) * 64);
    s->lp = (double *)aligned_alloc(64, ((nl * 8 + 63) / 64) * 64);
    s->d = (double *)aligned_alloc(64, ((nd * 8 + 63) / 64) * 64);
    s->w = (double *)aligned_alloc(64, ((nd * 8 + 63) / 64) * 64);
    return s->xb && s->lp && s->d && s->w;
}

static void scratch_free(scratch_t *s)
{
    free(s->xb);
    free(s->lp);
    free(s->d);
    free(s->w);
}

/* sums the accumulators (groups or threads) into out in index order */
static void reduce_threads(const double *acc, int nt, double *out)
{
    for (int i = 0; i < NSTAT; ++i) out[i] = 0.0;
    for (int t = 0; t < nt; ++t)
        for (int i = 0; i < NSTAT; ++i) out[i] += acc[(size_t)t * NSTATP + i];
}

static int log_prob_impl(const xtype *restrict X, int64_t N, const double *restrict pa,
                         const double *restrict pb, const double *restrict pc,
                         double *restrict out)
{
    int fail = 0;
    int64_t nblocks = (N + BLOCK - 1) / BLOCK;
    /* no more threads than blocks: a batch of a few samples started the whole team and waited
       at its barrier for a thread with no core when another process held one (3-70x) */
    int nt = team_for(nblocks);
#pragma omp parallel num_threads(nt)
    {
        scratch_t s;
        int ok = scratch_alloc(&s);
        if (!ok) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int64_t ib = 0; ib < nblocks; ++ib) {
            if (!ok) continue;
            int64_t n0 = ib * BLOCK;
            int nb = (int)(N - n0 < BLOCK ? N - n0 : BLOCK);
            load_block(X, n0, nb, s.xb);
            logp_block(s.xb, nb, pa, pb, pc, s.lp, 0, M);
            for (int b = 0; b < nb; ++b)
                memcpy(out + (n0 + b) * M, s.lp + (int64_t)b * MP, sizeof(double) * M);
        }
        scratch_free(&s);
    }
    return fail;
}

/* per row of a block's weighted log-probabilities (stride MP): the log-sum-exp, the most
   probable component (the first on ties, as numpy.argmax) and, when asked, the responsibilities
   exp(lp - lse); each output may be NULL.  Returns the sum of the log-sum-exps. */
static double rows_block(double *restrict lp, int nb, int64_t n0, double *restrict resp,
                         double *restrict lse, int64_t *restrict labels)
{
    double total = 0.0;
    for (int b = 0; b < nb; ++b) {
        double *row = lp + (int64_t)b * MP;
        double mx = row[0];
        int arg = 0;
        for (int k = 1; k < M; ++k)
            if (row[k] > mx) {
                mx = row[k];
                arg = k;
            }
        if (!isfinite(mx)) mx = 0.0; /* a row of -inf: lse -inf, as numpy's (not -inf - -inf) */
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int k = 0; k < M; ++k) {
            double e = asp_exp(row[k] - mx);
            row[k] = e;
            s += e;
        }
        const double l = mx + log(s);
        total += l;
        if (lse) lse[n0 + b] = l;
        if (labels) labels[n0 + b] = arg;
        if (resp) {
            const double inv = 1.0 / s;
            double *out = resp + (n0 + b) * (int64_t)M;
#pragma omp simd
            for (int k = 0; k < M; ++k) out[k] = row[k] * inv;
        }
    }
    return total;
}

/* The E-step alone (predict, predict_proba, score_samples, score, fit_predict's labels):
   pc holds the weighted constants (log w folded in); total[0] gets the sum of the
   log-sum-exps, so score() needs no per-sample array. */
static int e_step_impl(const xtype *restrict X, int64_t N, const double *restrict pa,
                       const double *restrict pb, const double *restrict pc,
                       double *restrict resp, double *restrict lse, int64_t *restrict labels,
                       double *restrict total)
{
    int fail = 0;
    double sum = 0.0;
    int64_t nblocks = (N + BLOCK - 1) / BLOCK;
    int nt = team_for(nblocks);
#pragma omp parallel num_threads(nt) reduction(+ : sum)
    {
        scratch_t s;
        int ok = scratch_alloc(&s);
        if (!ok) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int64_t ib = 0; ib < nblocks; ++ib) {
            if (!ok) continue;
            int64_t n0 = ib * BLOCK;
            int nb = (int)(N - n0 < BLOCK ? N - n0 : BLOCK);
            load_block(X, n0, nb, s.xb);
            logp_block(s.xb, nb, pa, pb, pc, s.lp, 0, M);
            sum += rows_block(s.lp, nb, n0, resp, lse, labels);
        }
        scratch_free(&s);
    }
    total[0] = sum;
    return fail;
}

/* hard assignments: the statistics of the samples whose label is k in [0, M) (others, e.g.
   label -1, belong to no component); d = x - shift as in stats_block */
static void labels_block(const double *restrict xb, int nb, const int64_t *restrict lab,
                         const double *restrict shift, double *restrict acc,
                         double *restrict kt)
{
    for (int b = 0; b < nb; ++b) {
        const int64_t k = lab[b];
        if (k < 0 || k >= M) continue;
        const double *x = xb + (int64_t)b * XS;
        acc[k] += 1.0;
% if full:
        const double *sk = shift + k * DP;
        double *S1 = acc + S1OFF + k * DP;
        double *S2 = acc + S2OFF + k * DP * DP;
        double d[DP] __attribute__((aligned(64)));
#pragma omp simd
        for (int j = 0; j < DP; ++j) d[j] = x[j] - sk[j];
#pragma omp simd
        for (int j = 0; j < DP; ++j) S1[j] += d[j];
        for (int i = 0; i < D; ++i) {
            const double di = d[i];
#pragma omp simd
            for (int j = 0; j < DP; ++j) S2[i * DP + j] += di * d[j];
        }
        (void)kt;
% else:
        /* component-major (kt: S1 row then S2 row per component, contiguous, so vector adds;
           the statistics' feature-major layout made these 2 D scattered scalar updates) */
        double *t = kt + k * 2 * D;
        const double *sk = kt + (int64_t)M * 2 * D + k * D;
#pragma omp simd
        for (int j = 0; j < D; ++j) {
            const double dj = x[j] - sk[j];
            t[j] += dj;
            t[D + j] += dj * dj;
        }
% endif
    }
}

% if not full:
/* adds labels_block's component-major sums kt into the statistics acc and clears kt */
static void labels_flush(double *restrict kt, double *restrict acc)
{
    for (int k = 0; k < M; ++k)
        for (int j = 0; j < D; ++j) {
            acc[S1OFF + j * MP + k] += kt[k * 2 * D + j];
            acc[S2OFF + j * MP + k] += kt[k * 2 * D + D + j];
        }
    memset(kt, 0, (size_t)M * 2 * D * 8);
}
% endif

/* The M-step from given responsibilities (the initialisation's): either dense resp (N x M)
   or hard labels (N, -1 = none); writes the statistics vector of em_step_impl (moments of
   x - shift, the log-sum-exp slot zero). */
static int m_step_impl(const xtype *restrict X, int64_t N, const double *restrict resp,
                       const int64_t *restrict labels, const double *restrict shift,
                       double *restrict out)
{
    int nt = omp_get_max_threads();
    int64_t nblocks = (N + BLOCK - 1) / BLOCK;
    int64_t G = 2 * (int64_t)nt > 16 ? 2 * (int64_t)nt : 16;
    if (G > nblocks) G = nblocks > 0 ? nblocks : 1;
    if (nt > G) nt = (int)G;   /* no more threads than groups (see log_prob_impl) */
    double *acc = (double *)aligned_alloc(64, (size_t)G * NSTATP * 8);
    if (!acc) return 1;
    memset(acc, 0, (size_t)G * NSTATP * 8);
    int fail = 0;
#pragma omp parallel num_threads(nt)
    {
        scratch_t s;
        int ok = scratch_alloc(&s);
% if full:
        double *kt = NULL;
% else:
        /* component-major sums (2 D a component), then the shift component-major (D each) */
        double *kt = labels ? (double *)calloc((size_t)M * 3 * D, 8) : NULL;
        if (labels && !kt) ok = 0;
        for (int k = 0; kt && k < M; ++k)
            for (int j = 0; j < D; ++j) kt[(int64_t)M * 2 * D + k * D + j] = shift[j * MP + k];
% endif
        if (!ok) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t g = 0; g < G; ++g) {
            if (!ok) continue;
            double *ga = acc + (size_t)g * NSTATP;
            for (int64_t ib = nblocks * g / G; ib < nblocks * (g + 1) / G; ++ib) {
                int64_t n0 = ib * BLOCK;
                int nb = (int)(N - n0 < BLOCK ? N - n0 : BLOCK);
                load_block(X, n0, nb, s.xb);
                if (labels) {
                    labels_block(s.xb, nb, labels + n0, shift, ga, kt);
                    continue;
                }
                for (int b = 0; b < nb; ++b) {
                    double *row = s.lp + (int64_t)b * MP;
                    const double *rin = resp + (n0 + b) * (int64_t)M;
                    for (int k = 0; k < M; ++k) row[k] = rin[k];
                    for (int k = M; k < MP; ++k) row[k] = 0.0;
                }
                stats_block(s.xb, nb, s.lp, shift, ga, s.d, s.w);
            }
% if not full:
            if (kt) labels_flush(kt, ga);
% endif
        }
        free(kt);
        scratch_free(&s);
    }
    if (!fail) reduce_threads(acc, (int)G, out);
    free(acc);
    return fail;
}

static int em_step_impl(const xtype *restrict X, int64_t N, const double *restrict pa,
                        const double *restrict pb, const double *restrict pc,
                        const double *restrict shift, double *restrict out,
                        double *restrict work)
{
    int nt = omp_get_max_threads();
    int64_t nblocks = (N + BLOCK - 1) / BLOCK;
    /* sample-parallel loops run over G fixed groups of consecutive blocks, each with its own
       accumulator, scheduled dynamically (robust when a core is busy with something else)
       and reduced in group order: the result does not depend on which thread ran what */
    int64_t G = 2 * (int64_t)nt > 16 ? 2 * (int64_t)nt : 16;
    if (G > nblocks) G = nblocks > 0 ? nblocks : 1;
    if (nt > G) nt = (int)G;   /* no more threads than groups (see log_prob_impl) */
    int64_t nacc = G > nt ? G : nt;
    double *acc = (double *)aligned_alloc(64, (size_t)nacc * NSTATP * 8);
    if (!acc) return 1;
    memset(acc, 0, (size_t)nacc * NSTATP * 8);
    int fail = 0;
    (void)work;
#pragma omp parallel num_threads(nt)
    {
        double *my = acc + (size_t)omp_get_thread_num() * NSTATP;
        scratch_t s;
        int ok = scratch_alloc(&s);
        if (!ok) {
#pragma omp atomic write
            fail = 1;
        }
        double lpn = 0.0;
% if strategy == "fused":
        /* blocked, fused E+M: each block's responsibilities live only in s.lp */
#pragma omp for schedule(dynamic, 1)
        for (int64_t g = 0; g < G; ++g) {
            if (!ok) continue;
            double *ga = acc + (size_t)g * NSTATP;
            for (int64_t ib = nblocks * g / G; ib < nblocks * (g + 1) / G; ++ib) {
                int64_t n0 = ib * BLOCK;
                int nb = (int)(N - n0 < BLOCK ? N - n0 : BLOCK);
                load_block(X, n0, nb, s.xb);
                logp_block(s.xb, nb, pa, pb, pc, s.lp, 0, M);
                ga[LPNOFF] += normalise_block(s.lp, nb);
                stats_block(s.xb, nb, s.lp, shift, ga, s.d, s.w);
            }
        }
% else:
        /* E-step into the materialised N x MP responsibility matrix `work` */
%   if strategy == "components":
        /* parallel over components: each thread computes whole columns */
#pragma omp for schedule(dynamic, 1)
        for (int kk = 0; kk < ${M if full else NQ}; ++kk) {
            if (!ok) continue;
            for (int64_t ib = 0; ib < nblocks; ++ib) {
                int64_t n0 = ib * BLOCK;
                int nb = (int)(N - n0 < BLOCK ? N - n0 : BLOCK);
                load_block(X, n0, nb, s.xb);
%     if full:
                logp_block(s.xb, nb, pa, pb, pc, work + n0 * MP, kk, kk + 1);
%     else:
                logp_block_q(s.xb, nb, pa, pb, pc, work + n0 * MP, kk, kk + 1);
%     endif
            }
        }
#pragma omp for schedule(static)
        for (int64_t ib = 0; ib < nblocks; ++ib) {
            if (!ok) continue;
            int64_t n0 = ib * BLOCK;
            int nb = (int)(N - n0 < BLOCK ? N - n0 : BLOCK);
            lpn += normalise_block(work + n0 * MP, nb);
        }
%   else:
#pragma omp for schedule(dynamic, 1)
        for (int64_t g = 0; g < G; ++g) {
            if (!ok) continue;
            double *ga = acc + (size_t)g * NSTATP;
            for (int64_t ib = nblocks * g / G; ib < nblocks * (g + 1) / G; ++ib) {
                int64_t n0 = ib * BLOCK;
                int nb = (int)(N - n0 < BLOCK ? N - n0 : BLOCK);
                load_block(X, n0, nb, s.xb);
                logp_block(s.xb, nb, pa, pb, pc, work + n0 * MP, 0, M);
                ga[LPNOFF] += normalise_block(work + n0 * MP, nb);
            }
        }
%   endif
        /* M-step from the materialised responsibilities */
%   if strategy == "samples":
#pragma omp for schedule(dynamic, 1)
        for (int64_t g = 0; g < G; ++g) {
            if (!ok) continue;
            double *ga = acc + (size_t)g * NSTATP;
            for (int64_t ib = nblocks * g / G; ib < nblocks * (g + 1) / G; ++ib) {
                int64_t n0 = ib * BLOCK;
                int nb = (int)(N - n0 < BLOCK ? N - n0 : BLOCK);
                load_block(X, n0, nb, s.xb);
                stats_block(s.xb, nb, work + n0 * MP, shift, ga, s.d, s.w);
            }
        }
%   elif strategy == "components":
#pragma omp for schedule(dynamic, 1)
        for (int kk = 0; kk < ${M if full else NQ}; ++kk) {
            if (!ok) continue;
            for (int64_t ib = 0; ib < nblocks; ++ib) {
                int64_t n0 = ib * BLOCK;
                int nb = (int)(N - n0 < BLOCK ? N - n0 : BLOCK);
                load_block(X, n0, nb, s.xb);
%     if full:
                stats_block_k(s.xb, nb, work + n0 * MP + kk, MP, kk, shift, my, s.d, s.w);
%     else:
                stats_block_q(s.xb, nb, work + n0 * MP, shift, my, kk, kk + 1);
%     endif
            }
        }
%   else:
        /* over dimensions: one unit per covariance row (full) or feature (diag) */
#pragma omp for schedule(dynamic, 1)
        for (int u = 0; u < UNITS; ++u) {
            if (!ok) continue;
            STATS_UNIT(X, N, work, u, shift, my);
        }
%   endif
% endif
        my[LPNOFF] += lpn;
        scratch_free(&s);
    }
    if (!fail) reduce_threads(acc, (int)nacc, out);
    free(acc);
    return fail;
}

/* k-means as scikit-learn's KMeans runs it for init_params="kmeans" (asp_gmm.kmeans drives
   the loops and the random draws; these are its passes over the samples). X is row-major
   N x D (unpadded). The samples are split into chunks of KM_CHUNK consecutive samples
   (asp_gmm.reference.KMEANS_CHUNK, defined in the prelude), handed out dynamically (a core
   that another process holds does not hold up the pass, as a static split did: 3-7x slower
   passes under load).
   The clusters' sums (M x D) and counts (M) are summed per chunk in sample order from zero,
   then the chunks' sums added in chunk order, as asp_gmm.reference.cluster_sums sums them
   (np.bincount per chunk): the sums depend neither on the number of threads nor on whether
   this pass or the NumPy one ran, or labels were re-decided (asp_gmm.binding), so the k-means
   does not either (per-thread partial sums had made the centres differ in their last bits,
   and so the labels of samples tied between two centres). The pass keeps each chunk's sums
   (KM_PARTIALS bytes at most; an ordered merge after each chunk made threads wait for each
   other: N=1M D=2 M=8 fits 15-30 % slower); past that, km_sums sums them in a pass of its own. */
#define KM_PARTIALS ((size_t)64 << 20)

/* The chunked sums described above in a pass of their own, parallel over blocks of 8
   features (a cache line of each sum row); part holds a chunk's sums of 8 features. */
static int km_sums(const xtype *restrict X, int64_t N, const int64_t *restrict labels,
                   double *restrict sums, double *restrict counts)
{
    int fail = 0;
    memset(sums, 0, (size_t)M * D * 8);
    memset(counts, 0, (size_t)M * 8);
#pragma omp parallel for schedule(static) reduction(| : fail)
    for (int k0 = 0; k0 < D; k0 += 8) {
        const int k1 = k0 + 8 < D ? k0 + 8 : D;
        double *part = (double *)malloc((size_t)M * 8 * 8);
        if (!part) {
            fail = 1;
            continue;
        }
        for (int64_t c0 = 0; c0 < N; c0 += KM_CHUNK) {
            const int64_t c1 = c0 + KM_CHUNK < N ? c0 + KM_CHUNK : N;
            memset(part, 0, (size_t)M * 8 * 8);
            for (int64_t i = c0; i < c1; ++i) {
                const xtype *x = X + i * D;
                double *s = part + labels[i] * 8;
                for (int k = k0; k < k1; ++k) s[k - k0] += x[k];
            }
            for (int j = 0; j < M; ++j)
                for (int k = k0; k < k1; ++k) sums[j * D + k] += part[j * 8 + k - k0];
        }
        free(part);
    }
    for (int64_t i = 0; i < N; ++i) counts[labels[i]] += 1.0;
    return fail;
}

/* What kmeans_assign_impl returns (besides 0, and 1 when out of memory) when some sample's
   bounds do not separate its least distance from the next (the kernel sets them 2 e apart, e
   its rounding bound): the caller labels those samples as the NumPy pass labels them. */
#define KM_NEAR 2

/* One Lloyd assignment: labels[i] = argmin_j |c_j|^2 - 2 x_i.c_j (the first on ties, as
   scikit-learn's strict <), and, when sums is not NULL, the per-cluster sums of the samples
   (M x D) and their counts (M), summed chunk by chunk (KM_CHUNK). KM_NB samples at a time: their dot
   products with the
   centres, held in vectors of KM_W lanes, are D broadcasts and FMAs each; the argmin
   is taken in the vectors (least distance per lane, then halving the lanes, the smaller index
   on equal distances), without the data-dependent branch of a scalar search, which cost more
   than the dot products (measured: 2.3x on AVX-512, 1.5x on AVX2). The library is built
   with -ffp-contract=off; this function alone contracts its multiply-adds into FMAs, as the
   BLAS of scikit-learn's distances does: half the instructions of the dot products, 1.35x
   faster passes on AVX-512 (measured).
   Hamerly's bounds skip the distances of samples whose label cannot change: bounds (N x 3,
   kept by the caller between the passes of one k-means) holds per sample an upper bound on
   its distance to its centre, a lower bound on its distance to every other centre, and its
   label (-1: unknown); moved[j] is how far centre j moved since the pass that wrote them.
   The bounds grow and shrink by those moves; a sample whose bounds stay apart by more than
   the rounding of the computed distances (l^2 - u^2 > 2 e; e bounds the error of one
   |c|^2 - 2 x.c + |x|^2, KM_ERR (|x| + max |c|)^2, four times over the (D + 3) roundings of
   at most 2^-53 (|x| + |c|)^2 each) keeps its label: the computed argmin would be it, so the
   labels are the ones computing every distance gives. The others are computed, and their
   bounds set from the least and second least distances. After the first passes most
   samples keep their label: 5.4 -> 2 ms per pass (N=200k D=16 M=32, one thread). */
#define KM_ERR (4.0 * (D + 4) * 0x1p-52)
#define KM_SLACK (1.0 + 1e-12)  /* for the rounding of the bounds' own arithmetic */
/* lanes of the centre vectors: the wider of the layout's two vector widths (full covariance
   keeps VK = 2 and vectors over the features, VW, instead) */
#define KM_W (VK > VW ? VK : VW)
typedef double kmv __attribute__((vector_size(KM_W * 8)));
typedef long long vki __attribute__((vector_size(KM_W * 8)));
#define KM_NB 4
#define KM_SEL(t, a, b) (((a) & (t)) | ((b) & ~(t)))
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=fast")))
#endif
static int kmeans_assign_impl(const xtype *restrict X, int64_t N,
                              const double *restrict centers, const double *restrict moved,
                              int64_t *restrict labels, double *restrict sums,
                              double *restrict counts, double *restrict bounds)
{
    enum { NVK = (M + KM_W - 1) / KM_W };  /* padded here: full covariance has MP = M */
    int nt = omp_get_max_threads();
    int64_t G = (N + KM_CHUNK - 1) / KM_CHUNK;
    const size_t nacc = (size_t)M * D + M;  /* a chunk's sums, then its counts */
    double *acc = sums && (size_t)G * nacc * 8 <= KM_PARTIALS
        ? (double *)malloc((size_t)G * nacc * 8) : NULL;
    /* the centres' transpose on the heap: D * M doubles outgrow a thread's stack (8 MB with
       D = 256, M = 4100; 2 MB under `ulimit -s unlimited`), which crashed the process */
    kmv (*ct)[NVK] = (kmv (*)[NVK])aligned_alloc(64, ((size_t)D * NVK * sizeof(kmv) + 63)
                                                   / 64 * 64);
    if (!ct) {
        free(acc);
        return 1;
    }
    kmv csq[NVK];
    vki lane, perm[8];
    double cmax = 0.0, dmax = 0.0;
    for (int l = 0; l < KM_W; ++l) lane[l] = l;
    for (int h = 0, w = KM_W / 2; w >= 1; ++h, w /= 2)
        for (int l = 0; l < KM_W; ++l) perm[h][l] = l ^ w;
    for (int j = 0; j < NVK * KM_W; ++j) {
        double s = 0.0;
        for (int k = 0; k < D; ++k) {
            double c = j < M ? centers[j * D + k] : 0.0;
            ct[k][j / KM_W][j % KM_W] = c;
            s += c * c;
        }
        csq[j / KM_W][j % KM_W] = j < M ? s : INFINITY;  /* padded lanes never win */
        cmax = s > cmax ? s : cmax;
    }
    cmax = sqrt(cmax) * KM_SLACK;
    for (int j = 0; j < M; ++j) dmax = moved[j] > dmax ? moved[j] : dmax;
    int near = 0;  /* some sample's two least distances lie within rounding (KM_NEAR) */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) reduction(| : near)
    for (int64_t g = 0; g < G; ++g) {
        double *as = acc ? acc + (size_t)g * nacc : NULL;
        if (as) memset(as, 0, nacc * 8);
        int64_t iend = (g + 1) * KM_CHUNK < N ? (g + 1) * KM_CHUNK : N;
        for (int64_t i0 = g * KM_CHUNK; i0 < iend; i0 += KM_NB) {
            int nb = iend - i0 < KM_NB ? (int)(iend - i0) : KM_NB;
            int need = 0;
            for (int b = 0; b < nb; ++b) {
                const int64_t i = i0 + b;
                double *bd = bounds + 3 * i;
                if (bd[2] >= 0.0) {  /* a label from the last pass and bounds around it */
                    const int a = (int)bd[2];
                    const double u = (bd[0] + moved[a]) * KM_SLACK;
                    const double l = (bd[1] - dmax) / KM_SLACK;
                    /* |x| <= |c_a| + u */
                    const double xr = u + 2.0 * cmax;
                    if (l > u && l * l - u * u > 2.0 * KM_ERR * xr * xr) {
                        labels[i] = a;
                        bd[0] = u;
                        bd[1] = l;
                        continue;
                    }
                }
                need |= 1 << b;
            }
            if (need) {
                kmv dot[KM_NB][NVK];
                for (int b = 0; b < KM_NB; ++b)
                    for (int v = 0; v < NVK; ++v) dot[b][v] = (kmv){0};
                for (int k = 0; k < D; ++k)
                    for (int b = 0; b < KM_NB; ++b) {
                        double xk = b < nb ? (double)X[(i0 + b) * D + k] : 0.0;
                        for (int v = 0; v < NVK; ++v) dot[b][v] += xk * ct[k][v];
                    }
                for (int b = 0; b < nb; ++b) {
                    if (!(need >> b & 1)) continue;
                    kmv m = csq[0] + -2.0 * dot[b][0];
                    vki mi = lane;
                    for (int v = 1; v < NVK; ++v) {
                        kmv d = csq[v] + -2.0 * dot[b][v];
                        vki lt = d < m;
                        m = (kmv)KM_SEL(lt, (vki)d, (vki)m);
                        mi = KM_SEL(lt, lane + KM_W * v, mi);
                    }
                    for (int h = 0, w = KM_W / 2; w >= 1; ++h, w /= 2) {
                        kmv m2 = __builtin_shuffle(m, perm[h]);
                        vki i2 = __builtin_shuffle(mi, perm[h]);
                        vki t = (m2 < m) | ((m2 == m) & (i2 < mi));
                        m = (kmv)KM_SEL(t, (vki)m2, (vki)m);
                        mi = KM_SEL(t, i2, mi);
                    }
                    int best = (int)mi[0];
                    best = best < M ? best : 0;  /* NaN distances: no lane wins */
                    labels[i0 + b] = best;
                    /* the second least distance: the bound on the other centres */
                    kmv s = (kmv){0} + INFINITY;
                    for (int v = 0; v < NVK; ++v) {
                        kmv d = csq[v] + -2.0 * dot[b][v];
                        vki other = (lane + KM_W * v) != best;
                        d = (kmv)KM_SEL(other, (vki)d, (vki)((kmv){0} + INFINITY));
                        vki lt = d < s;
                        s = (kmv)KM_SEL(lt, (vki)d, (vki)s);
                    }
                    for (int h = 0; KM_W >> h > 1; ++h) {
                        kmv s2 = __builtin_shuffle(s, perm[h]);
                        vki lt = s2 < s;
                        s = (kmv)KM_SEL(lt, (vki)s2, (vki)s);
                    }
                    const xtype *x = X + (i0 + b) * D;
                    double n2 = 0.0;
                    for (int k = 0; k < D; ++k) n2 += (double)x[k] * x[k];
                    const double err = 2.0 * KM_ERR * (n2 + cmax * cmax);  /* (a+b)^2 <= 2a^2+2b^2 */
                    const double up = m[0] + n2 + err, lo = s[0] + n2 - err;
                    double *bd = bounds + 3 * (i0 + b);
                    bd[0] = sqrt(up > 0.0 ? up : 0.0) * KM_SLACK;
                    bd[1] = sqrt(lo > 0.0 ? lo : 0.0) / KM_SLACK;
                    bd[2] = best;
                    near |= bd[1] <= bd[0];
                }
            }
            if (as) {
                for (int b = 0; b < nb; ++b) {
                    const int64_t best = labels[i0 + b];
                    const xtype *x = X + (i0 + b) * D;
                    double *sb = as + best * D;
                    for (int k = 0; k < D; ++k) sb[k] += x[k];
                    as[M * D + best] += 1.0;
                }
            }
        }
    }
    free(ct);
    if (sums && !acc && km_sums(X, N, labels, sums, counts)) return 1;
    if (!acc) return near ? KM_NEAR : 0;
    /* the chunks' sums added in chunk order, element by element */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t q = 0; q < nacc; ++q) {
        double t = 0.0;
        for (int64_t g = 0; g < G; ++g) t += acc[(size_t)g * nacc + q];
        if (q < (size_t)M * D) sums[q] = t;
        else counts[q - (size_t)M * D] = t;
    }
    free(acc);
    return near ? KM_NEAR : 0;
}

/* The k-means++ seeding (scikit-learn's _kmeans_plusplus) from its first chosen centres, in one
   call: asp_gmm.kmeans draws the first centre and every step's uniforms (uniforms[t] of step s
   at s * KM_TRIALS + t), and this function runs the steps. Each step is one parallel pass over
   the samples, in lanes of 8: lane 0 is the centre chosen last, lanes 1..KM_TRIALS the step's
   candidates. For sample i the pass folds lane 0 into closest_i (its squared distance to the
   nearest centre) and sums, per block of SEED_BLK samples, d_li = min(closest_i,
   |x_i - x_cand_l|^2) for each lane (the squared distance as scikit-learn's
   euclidean_distances computes it: (-2 x.y + |y|^2) + |x|^2, clipped at 0), keeping a flag per
   lane that came closer than closest_i. The block sums in order give each candidate's
   potential (the first least is chosen, as NumPy's argmin) and the running sums at the block
   starts; each of the next step's draws u * potential is then searched as np.searchsorted
   searches the cumulative sum: in the block whose running sum reaches it, summing that
   block's d_best,i from its start (recomputed with the same function where the flag is set).
   This is np.cumsum's search except that the sums restart at each block from the sum of the
   earlier blocks (rounded in another order: a draw within about 1e-16 relative of a running
   sum may land one sample over), and it replaces a sequential pass over N per step, which
   took as long as the parallel one. */
#define KMP ((KM_TRIALS + 1 + 7) / 8 * 8)
#define KMV (KMP / 8)
#define SEED_BLK 1024
typedef double kv8 __attribute__((vector_size(64)));
typedef long long kvi8 __attribute__((vector_size(64)));
typedef signed char kb8 __attribute__((vector_size(8)));
#if defined(__GNUC__) && !defined(__clang__)
#define KM_SEED_FN __attribute__((optimize("O2", "fp-contract=fast"), noinline))
#else
#define KM_SEED_FN __attribute__((noinline))
#endif

/* the lane distances d[b] of the KM_NB consecutive samples at x (|x|^2 = yi[b], nearest
   centre so far ci[b]) to the transposed candidates cx (|c_l|^2 = cxx). KM_NB samples a
   call: their dot products are independent chains of vector FMAs (one sample's chain alone
   is latency-bound: 2.5x slower passes, measured on AVX-512). The pass and the search call
   this one (not inlined) function, the search with the sample in the first row of a
   zero-padded block, so the distance they compute for a sample is the same number.
   At -O3 gcc 12 unrolls the lane loops completely and then vectorises the sample loop with
   gathers of x[k], twice as slow as -O2's code on AVX-512 (measured): these functions are
   compiled at -O2. */
KM_SEED_FN
static void seed_lanes(const xtype *restrict x, const kv8 (*restrict cx)[KMV],
                       const kv8 *restrict cxx, const double *restrict yi,
                       const double *restrict ci, kv8 (*restrict d)[KMV])
{
    /* the sample and lane loops unrolled (as -O2 does not), so dot stays in registers */
    kv8 dot[KM_NB][KMV];
#pragma GCC unroll 16
    for (int b = 0; b < KM_NB; ++b)
#pragma GCC unroll 4
        for (int v = 0; v < KMV; ++v) dot[b][v] = (kv8){0};
    for (int k = 0; k < D; ++k)
#pragma GCC unroll 16
        for (int b = 0; b < KM_NB; ++b) {
            double xk = (double)x[b * D + k];
#pragma GCC unroll 4
            for (int v = 0; v < KMV; ++v) dot[b][v] += xk * cx[k][v];
        }
#pragma GCC unroll 16
    for (int b = 0; b < KM_NB; ++b)
#pragma GCC unroll 4
        for (int v = 0; v < KMV; ++v) {
            kv8 val = (-2.0 * dot[b][v] + cxx[v]) + yi[b];
            kvi8 neg = val < 0.0;
            val = (kv8)((kvi8)val & ~neg);  /* clipped at +0; NaN stays NaN */
            kv8 c = ci[b] - (kv8){0};
            kvi8 lt = c < val;
            d[b][v] = (kv8)KM_SEL(lt, (kvi8)c, (kvi8)val);
        }
}

/* the lanes' samples transposed and padded to vectors of lanes, so one sample's distances to
   all of them are D vector FMAs */
static void seed_centres(const xtype *restrict X, const int64_t *restrict cand,
                         kv8 (*restrict cx)[KMV], kv8 *restrict cxx)
{
    for (int l = 0; l < KMP; ++l) {
        double s = 0.0;
        for (int k = 0; k < D; ++k) {
            double v = l <= KM_TRIALS ? X[cand[l] * D + k] : 0.0;
            cx[k][l / 8][l % 8] = v;
            s += v * v;
        }
        cxx[l / 8][l % 8] = s;
    }
}

/* one step's pass (see above): closest folds in lane 0; part[blk * KMP + l] is block blk's
   sum of d_l; byte l of nearer[i * KMP] is nonzero where lane l is nearer than closest_i.
   The blocks are handed out dynamically, so a thread that loses its core to another process
   leaves its blocks to the others. */
static void seed_pass(const xtype *restrict X, int64_t N, const double *restrict xx,
                      double *restrict closest, const kv8 (*restrict cx)[KMV],
                      const kv8 *restrict cxx, double *restrict part, int8_t *restrict nearer)
{
    int64_t nblocks = (N + SEED_BLK - 1) / SEED_BLK;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
        kv8 acc[KMV], d[KM_NB][KMV];
        xtype pad[KM_NB * D];
        double yi[KM_NB], ci[KM_NB];
        for (int v = 0; v < KMV; ++v) acc[v] = (kv8){0};
        int64_t iend = N - blk * SEED_BLK < SEED_BLK ? N : (blk + 1) * SEED_BLK;
        for (int64_t i0 = blk * SEED_BLK; i0 < iend; i0 += KM_NB) {
            int nb = iend - i0 < KM_NB ? (int)(iend - i0) : KM_NB;
            const xtype *x = X + i0 * D;
            if (nb < KM_NB) {  /* the last samples, in a zero-padded block */
                memset(pad, 0, sizeof pad);
                memcpy(pad, x, (size_t)nb * D * sizeof(xtype));
                x = pad;
            }
            for (int b = 0; b < KM_NB; ++b) {
                yi[b] = b < nb ? xx[i0 + b] : 0.0;
                ci[b] = b < nb ? closest[i0 + b] : 0.0;
            }
            seed_lanes(x, cx, cxx, yi, ci, d);
            for (int b = 0; b < nb; ++b) {
                const double cl = d[b][0][0];
                const kv8 clv = cl - (kv8){0};
                /* the comparisons narrowed to a byte per lane (one instruction with
                   AVX-512; gathering bits lane by lane was a fifth of the pass) */
                for (int v = 0; v < KMV; ++v) {
                    kvi8 lt = d[b][v] < clv;
                    acc[v] += (kv8)KM_SEL(lt, (kvi8)d[b][v], (kvi8)clv);
                    kb8 m = __builtin_convertvector(lt, kb8);
                    memcpy(nearer + (i0 + b) * KMP + v * 8, &m, 8);
                }
                closest[i0 + b] = cl;
            }
        }
        for (int l = 0; l < KMP; ++l) part[blk * KMP + l] = acc[l / 8][l % 8];
    }
}

/* d_lane of sample i after the pass: closest_i, or its candidate's distance where nearer */
static double seed_distance(const xtype *restrict X, int64_t i, const double *restrict xx,
                            const double *restrict closest, const int8_t *restrict nearer,
                            const kv8 (*restrict cx)[KMV], const kv8 *restrict cxx, int lane)
{
    if (!nearer[i * KMP + lane]) return closest[i];
    xtype pad[KM_NB * D];
    double yi[KM_NB] = {0}, ci[KM_NB] = {0};
    kv8 d[KM_NB][KMV];
    memset(pad, 0, sizeof pad);
    memcpy(pad, X + i * D, D * sizeof(xtype));
    yi[0] = xx[i];
    ci[0] = closest[i];
    seed_lanes(pad, cx, cxx, yi, ci, d);
    return d[0][lane / 8][lane % 8];
}

static int kmeans_seed_impl(const xtype *restrict X, int64_t N, const double *restrict xx,
                            const double *restrict uniforms, int64_t *restrict indices,
                            double *restrict closest)
{
    int c = 0;
    while (c < M && indices[c] >= 0) ++c;
    if (c < 1) return 1;
    int64_t nblocks = (N + SEED_BLK - 1) / SEED_BLK;
    double *part = (double *)malloc((size_t)(nblocks > 0 ? nblocks : 1) * KMP * 8);
    double *start = (double *)malloc((size_t)(nblocks + 1) * 8);
    int8_t *nearer = (int8_t *)malloc((size_t)(N > 0 ? N : 1) * KMP);
    if (!part || !start || !nearer) {
        free(part);
        free(start);
        free(nearer);
        return 1;
    }
    kv8 cx[D][KMV], cxx[KMV];
    int64_t cand[KM_TRIALS + 1];
    /* the first pass has no candidates: the last chosen centre's distances alone */
    for (int l = 0; l <= KM_TRIALS; ++l) cand[l] = indices[c - 1];
    int lane = 0, first = 1;
    for (;;) {
        seed_centres(X, cand, cx, cxx);
        seed_pass(X, N, xx, closest, cx, cxx, part, nearer);
        if (!first) {
            /* each candidate's potential, summed over the blocks in order; NumPy's argmin:
               the first least, or the first NaN */
            double best_pot = 0.0;
            for (int l = 1; l <= KM_TRIALS; ++l) {
                double s = 0.0;
                for (int64_t blk = 0; blk < nblocks; ++blk) s += part[blk * KMP + l];
                if (l == 1 || (!isnan(best_pot) && (s < best_pot || isnan(s)))) {
                    best_pot = s;
                    lane = l;
                }
            }
            indices[c++] = cand[lane];
        }
        if (c == M) break;
        first = 0;
        /* the running sum of the searched lane at each block's start; start[nblocks] is the
           potential the draws scale */
        start[0] = 0.0;
        for (int64_t blk = 0; blk < nblocks; ++blk)
            start[blk + 1] = start[blk] + part[blk * KMP + lane];
        const double pot = start[nblocks];
        int64_t next[KM_TRIALS];
        for (int t = 0; t < KM_TRIALS; ++t) {
            const double r = uniforms[t] * pot;
            int64_t blk = 0;
            while (blk < nblocks && !(start[blk + 1] >= r)) ++blk;
            int64_t pick = N - 1;  /* past the end: np.clip(searchsorted, None, N - 1) */
            double run = blk < nblocks ? start[blk] : 0.0;
            for (int64_t i = blk * SEED_BLK; i < N; ++i) {
                run += seed_distance(X, i, xx, closest, nearer, cx, cxx, lane);
                if (run >= r) {
                    pick = i;
                    break;
                }
            }
            next[t] = pick;
        }
        uniforms += KM_TRIALS;
        cand[0] = indices[c - 1];
        for (int t = 0; t < KM_TRIALS; ++t) cand[t + 1] = next[t];
    }
    /* the distances to the last centre chosen, folded into closest */
    if (lane > 0) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N; ++i)
            if (nearer[i * KMP + lane])
                closest[i] = seed_distance(X, i, xx, closest, nearer, cx, cxx, lane);
    }
    free(part);
    free(start);
    free(nearer);
    return 0;
}

${exports}

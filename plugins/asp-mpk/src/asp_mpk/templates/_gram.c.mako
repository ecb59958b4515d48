<%doc>
Register-tiled partial Gram matrix, shared by the PA1 templates: 4x4 tiles of G = V Vᵀ so each
loaded element feeds four FMAs (a plain pairwise loop is load-bound: two loads per FMA).
Rows are processed in short chunks so the m vectors' chunk stays in L1/L2.
</%doc>
/* g (m*m, upper triangle) += V[:, rows] V[:, rows]^T, V[a] = V + a*ldv, rows [lo, hi). */
static void gram_rows(int64_t m, const real *V, int64_t ldv, int64_t lo, int64_t hi, double *g)
{
    enum { CH = 256 };
    static const real zero[CH] = {0};
    for (int64_t c0 = lo; c0 < hi; c0 += CH) {
        const int64_t len = c0 + CH < hi ? CH : hi - c0;
        for (int64_t a0 = 0; a0 < m; a0 += 4) {
            const real *A[4];
            for (int t = 0; t < 4; ++t) A[t] = a0 + t < m ? V + (a0 + t) * ldv + c0 : zero;
            for (int64_t b0 = a0; b0 < m; b0 += 4) {
                const real *B[4];
                for (int t = 0; t < 4; ++t) B[t] = b0 + t < m ? V + (b0 + t) * ldv + c0 : zero;
                double s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
                double s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
                const real *restrict a_0 = A[0], *restrict a_1 = A[1], *restrict a_2 = A[2],
                           *restrict a_3 = A[3];
                const real *restrict b_0 = B[0], *restrict b_1 = B[1], *restrict b_2 = B[2],
                           *restrict b_3 = B[3];
#pragma omp simd reduction(+:s00,s01,s02,s03,s10,s11,s12,s13,s20,s21,s22,s23,s30,s31,s32,s33)
                for (int64_t i = 0; i < len; ++i) {
                    const double x0 = a_0[i], x1 = a_1[i], x2 = a_2[i], x3 = a_3[i];
                    const double y0 = b_0[i], y1 = b_1[i], y2 = b_2[i], y3 = b_3[i];
                    s00 = fma(x0, y0, s00); s01 = fma(x0, y1, s01); s02 = fma(x0, y2, s02); s03 = fma(x0, y3, s03);
                    s10 = fma(x1, y0, s10); s11 = fma(x1, y1, s11); s12 = fma(x1, y2, s12); s13 = fma(x1, y3, s13);
                    s20 = fma(x2, y0, s20); s21 = fma(x2, y1, s21); s22 = fma(x2, y2, s22); s23 = fma(x2, y3, s23);
                    s30 = fma(x3, y0, s30); s31 = fma(x3, y1, s31); s32 = fma(x3, y2, s32); s33 = fma(x3, y3, s33);
                }
                const double S[4][4] = {{s00, s01, s02, s03}, {s10, s11, s12, s13},
                                        {s20, s21, s22, s23}, {s30, s31, s32, s33}};
                for (int ta = 0; ta < 4; ++ta)
                    for (int tb = 0; tb < 4; ++tb) {
                        const int64_t a = a0 + ta, b = b0 + tb;
                        if (a < m && b < m && b >= a) g[a * m + b] += S[ta][tb];
                    }
            }
        }
    }
}

/* One pass over the basis V (m vectors, stride ldv) producing q combinations:
   Y[o] = (acc[o] ? Y[o] : 0) + sum_j C[o*m + j] V[j].  s-step CG rebuilds x, r and p with it. */
int combine(int64_t n, int64_t m, const real *V, int64_t ldv, int64_t q, const double *C,
            real **Y, const int32_t *acc, int nthreads)
{
    enum { CB = 512 };
    const int64_t nch = (n + CB - 1) / CB;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t c = 0; c < nch; ++c) {
        const int64_t a = c * CB, len = a + CB < n ? CB : n - a;
        for (int64_t o = 0; o < q; ++o) {
            double buf[CB];
            real *restrict y = Y[o] + a;
            const double *co = C + o * m;
            if (acc[o]) for (int64_t i = 0; i < len; ++i) buf[i] = (double)y[i];
            else for (int64_t i = 0; i < len; ++i) buf[i] = 0.0;
            for (int64_t j = 0; j < m; ++j) {
                const double cj = co[j];
                if (cj == 0.0) continue;
                const real *restrict vj = V + j * ldv + a;
#pragma omp simd
                for (int64_t i = 0; i < len; ++i) buf[i] += cj * (double)vj[i];
            }
            for (int64_t i = 0; i < len; ++i) y[i] = (real)buf[i];
        }
    }
    return 0;
}

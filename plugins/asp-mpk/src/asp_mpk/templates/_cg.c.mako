<%page args="params, args, rows, halo=None"/>
<%doc>
The passes of classical CG, each fused so that a chunk's vectors are reused from cache (the
s-step method's rival when the machine is compute-bound on the Gram matrix).  An iteration in
steady state is two passes over ten vector streams instead of three over eleven: cg_update
(r and r.r only), then cg_direction_apply, which applies the x update left out, and forms the new
direction p = r + beta p together with q = A p, computed as A r + beta q (linearity: the product
reads r, which this pass does not write, so no wavefront between chunks is needed).  cg_apply_dot and cg_direction start and
end a run of iterations where q = A p is not at hand.
Shared by the templates whose kernels hold the whole matrix (DIA, CSR baseline): ``params`` is
their matrix parameter list, ``args`` the names to pass on, ``rows`` a function
``name(args, x, y, yb, a, b)`` computing ``y[i - yb] = (A x)[i]`` for i in [a, b).

``halo`` (the DIA kernels: the largest |offset|, so row i of A x reads x in [i - halo, i + halo])
makes cg_steps run each iteration in ONE pass (cg_fused): r -= alpha q ahead of the product by
a wavefront of halo rows, then x, p and q = A r + beta q behind it, with beta from
||r - alpha q||^2 = r.r - 2 alpha r.q + alpha^2 q.q (dots of the previous pass: one reduction
per iteration, as Chronopoulos and Gear's CG has).  Each vector is read and written once per
iteration instead of r and q twice (68 instead of 84 bytes a row on 3-D Poisson).
</%doc>
enum { CG_CHUNK = 8192 };

/* y = A x; returns x . y */
double cg_apply_dot(int64_t n, ${params}, const real *x, real *y, int nthreads)
{
    const int64_t nch = (n + CG_CHUNK - 1) / CG_CHUNK;
    double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+:s) num_threads(nthreads)
    for (int64_t c = 0; c < nch; ++c) {
        const int64_t a = c * CG_CHUNK, b = a + CG_CHUNK < n ? a + CG_CHUNK : n;
        ${rows}(n, ${args}, x, y, 0, a, b);
        double t = 0.0;
#pragma omp simd reduction(+:t)
        for (int64_t i = a; i < b; ++i) t += (double)x[i] * (double)y[i];
        s += t;
    }
    return s;
}

/* x += alpha p (x NULL: left to cg_direction_apply); r -= alpha q; returns r . r */
double cg_update(int64_t n, double alpha, real *restrict x, const real *restrict p,
                 real *restrict r, const real *restrict q, int nthreads)
{
    double s = 0.0;
    const real al = (real)alpha;
    if (!x) {
#pragma omp parallel for simd schedule(static) reduction(+:s) num_threads(nthreads)
        for (int64_t i = 0; i < n; ++i) {
            const real ri = r[i] - al * q[i];
            r[i] = ri;
            s += (double)ri * (double)ri;
        }
        return s;
    }
#pragma omp parallel for simd schedule(static) reduction(+:s) num_threads(nthreads)
    for (int64_t i = 0; i < n; ++i) {
        x[i] += al * p[i];
        const real ri = r[i] - al * q[i];
        r[i] = ri;
        s += (double)ri * (double)ri;
    }
    return s;
}

/* p = r + beta p */
void cg_direction(int64_t n, double beta, const real *restrict r, real *restrict p, int nthreads)
{
    const real be = (real)beta;
#pragma omp parallel for simd schedule(static) num_threads(nthreads)
    for (int64_t i = 0; i < n; ++i) p[i] = r[i] + be * p[i];
}

/* x += alpha p (the update cg_update left out; skipped when x is NULL), then p = r + beta p and
   q = A r + beta q (= A p when q held A p on entry); returns p . q */
double cg_direction_apply(int64_t n, ${params}, double alpha, double beta, real *restrict x,
                          const real *restrict r, real *restrict p, real *restrict q,
                          int nthreads)
{
    const int64_t nch = (n + CG_CHUNK - 1) / CG_CHUNK;
    const real al = (real)alpha, be = (real)beta;
    double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+:s) num_threads(nthreads)
    for (int64_t c = 0; c < nch; ++c) {
        real w[CG_CHUNK];    /* (A r) of the chunk, from cache */
        const int64_t a = c * CG_CHUNK, b = a + CG_CHUNK < n ? a + CG_CHUNK : n;
        ${rows}(n, ${args}, r, w, a, a, b);
        if (x) {
#pragma omp simd
            for (int64_t i = a; i < b; ++i) x[i] += al * p[i];
        }
        double t = 0.0;
#pragma omp simd reduction(+:t)
        for (int64_t i = a; i < b; ++i) {
            const real pi = r[i] + be * p[i], qi = w[i - a] + be * q[i];
            p[i] = pi;
            q[i] = qi;
            t += (double)pi * (double)qi;
        }
        s += t;
    }
    return s;
}

% if halo is not None:
enum { CG_HALO = ${halo} };

/* One whole CG iteration in one pass (see the template's notes): rn = r - alpha q, x += alpha p,
   p = rn + beta p, q = A rn + beta q.  Each thread sweeps its own contiguous rows [t0, t1):
   first rn on the halo rows at both ends (the neighbours' products read them), a barrier, then
   chunk by chunk rn on the rows up to halo ahead of the chunk and the rest behind it.  r is
   written once (rn), and the product reads r only, so no other wavefront is needed.
   d[0..3] receive rn.rn, p.q, rn.q, q.q of the new vectors. */
static void cg_fused(int64_t n, ${params}, double alpha, double beta, real *restrict x,
                     real *restrict r, real *restrict p, real *restrict q, double *d, int nthreads)
{
    const int64_t nch = (n + CG_CHUNK - 1) / CG_CHUNK;
    const real al = (real)alpha, be = (real)beta;
    double rr = 0.0, pq = 0.0, rq = 0.0, qq = 0.0;
#pragma omp parallel reduction(+:rr, pq, rq, qq) num_threads(nthreads)
    {
        int tid = 0, nt = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        const int64_t c0 = nch * tid / nt, c1 = nch * (tid + 1) / nt;
        const int64_t t0 = c0 * CG_CHUNK < n ? c0 * CG_CHUNK : n;
        const int64_t t1 = c1 * CG_CHUNK < n ? c1 * CG_CHUNK : n;
        const int64_t z1 = t0 + CG_HALO < t1 ? t0 + CG_HALO : t1;      /* [t0, z1): low zone */
        const int64_t z2 = t1 - CG_HALO > z1 ? t1 - CG_HALO : z1;      /* [z2, t1): high zone */
        double s = 0.0;
#pragma omp simd reduction(+:s)
        for (int64_t i = t0; i < z1; ++i) {
            const real ri = r[i] - al * q[i];
            r[i] = ri;
            s += (double)ri * (double)ri;
        }
#pragma omp simd reduction(+:s)
        for (int64_t i = z2; i < t1; ++i) {
            const real ri = r[i] - al * q[i];
            r[i] = ri;
            s += (double)ri * (double)ri;
        }
#pragma omp barrier
        int64_t u = z1;                /* rows [z1, u) hold rn already */
        double t = 0.0, tr = 0.0, tq = 0.0;
        for (int64_t c = c0; c < c1; ++c) {
            real w[CG_CHUNK];          /* (A rn) of the chunk, from cache */
            const int64_t a = c * CG_CHUNK, b = a + CG_CHUNK < n ? a + CG_CHUNK : n;
            const int64_t ahead = b + CG_HALO < z2 ? b + CG_HALO : z2;
#pragma omp simd reduction(+:s)
            for (int64_t i = u; i < ahead; ++i) {
                const real ri = r[i] - al * q[i];
                r[i] = ri;
                s += (double)ri * (double)ri;
            }
            if (ahead > u) u = ahead;
            ${rows}(n, ${args}, r, w, a, a, b);
#pragma omp simd reduction(+:t, tr, tq)
            for (int64_t i = a; i < b; ++i) {
                x[i] += al * p[i];
                const real pi = r[i] + be * p[i], qi = w[i - a] + be * q[i];
                p[i] = pi;
                q[i] = qi;
                t += (double)pi * (double)qi;
                tr += (double)r[i] * (double)qi;
                tq += (double)qi * (double)qi;
            }
        }
        rr += s;
        pq += t;
        rq += tr;
        qq += tq;
    }
    d[0] = rr;
    d[1] = pq;
    d[2] = rq;
    d[3] = qq;
}

/* r . q and q . q */
static void cg_dots(int64_t n, const real *restrict r, const real *restrict q, double *d,
                    int nthreads)
{
    double rq = 0.0, qq = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+:rq, qq) num_threads(nthreads)
    for (int64_t i = 0; i < n; ++i) {
        rq += (double)r[i] * (double)q[i];
        qq += (double)q[i] * (double)q[i];
    }
    d[0] = rq;
    d[1] = qq;
}

/* Up to `steps` classical CG iterations, one fused pass each (cg_fused; an iteration whose
   estimated new r.r lost too many digits to cancellation, below 1e-6 r.r, takes the two
   passes of the exact update instead).  st[0]: r.r; st[1]: p.q with q = A p on entry, NaN when
   q is stale; st[2], st[3]: r.q and q.q of those vectors, NaN when not known (all out: the same
   for the new vectors).  alphas, betas (steps long) receive the coefficients.  Returns the
   iterations done, or -(done + 1) on a breakdown (p.q zero or a value not finite). */
int64_t cg_steps(int64_t n, ${params}, real *restrict x, real *restrict r, real *restrict p,
                 real *restrict q, int64_t steps, double tol, double *st, double *alphas,
                 double *betas, int nthreads)
{
    double rr = st[0], pq = st[1], d[4];
    if (isnan(pq)) {
        pq = cg_apply_dot(n, ${args}, p, q, nthreads);
        st[2] = NAN;
    }
    if (isnan(st[2]) || isnan(st[3])) cg_dots(n, r, q, st + 2, nthreads);
    for (int64_t j = 0; j < steps; ++j) {
        if (!isfinite(pq) || pq == 0.0) { /* negative: goes on, as SciPy */
            st[1] = NAN;
            return -(j + 1);
        }
        const double alpha = rr / pq;
        const double est = rr - 2.0 * alpha * st[2] + alpha * alpha * st[3];
        double beta;
        if (est > 1e-6 * rr) {
            beta = est / rr;
            cg_fused(n, ${args}, alpha, beta, x, r, p, q, d, nthreads);
        } else {
            d[0] = cg_update(n, alpha, NULL, p, r, q, nthreads);
            if (!isfinite(d[0])) {
                for (int64_t i = 0; i < n; ++i) x[i] += (real)alpha * p[i];
                st[1] = NAN;
                return -(j + 1);
            }
            beta = rr > 0.0 ? d[0] / rr : 0.0;
            d[1] = cg_direction_apply(n, ${args}, alpha, beta, x, r, p, q, nthreads);
            cg_dots(n, r, q, d + 2, nthreads);
        }
        alphas[j] = alpha;
        betas[j] = beta;
        rr = d[0];
        pq = d[1];
        st[0] = rr;
        st[1] = pq;
        st[2] = d[2];
        st[3] = d[3];
        if (!isfinite(rr)) {
            st[1] = NAN;
            return -(j + 1);
        }
        if (sqrt(rr) < tol) return j + 1;
    }
    return steps;
}
% else:
/* Up to `steps` classical CG iterations, two fused passes each: the loop of
   asp_mpk.cacg._classical_steps in one call, so that the calling thread takes the GIL back once
   per run instead of twice per iteration (a Python thread working in the background, e.g. a
   specialisation, made every reacquisition wait up to the interpreter's switch interval).
   st[0]: r.r (in/out); st[1]: p.q with q = A p on entry, NaN when q is stale (out: the same
   for the new p).  alphas, betas (steps long) receive the coefficients.  Returns the
   iterations done, or -(done + 1) on a breakdown (p.q zero or a value not finite). */
int64_t cg_steps(int64_t n, ${params}, real *restrict x, real *restrict r, real *restrict p,
                 real *restrict q, int64_t steps, double tol, double *st, double *alphas,
                 double *betas, int nthreads)
{
    double rr = st[0], pq = st[1];
    for (int64_t j = 0; j < steps; ++j) {
        if (isnan(pq)) pq = cg_apply_dot(n, ${args}, p, q, nthreads);
        if (!isfinite(pq) || pq == 0.0) { /* negative: goes on, as SciPy */
            st[1] = NAN;
            return -(j + 1);
        }
        const double alpha = rr / pq;
        const double rr_new = cg_update(n, alpha, NULL, p, r, q, nthreads);
        if (!isfinite(rr_new)) {
            for (int64_t i = 0; i < n; ++i) x[i] += (real)alpha * p[i];
            st[1] = NAN;
            return -(j + 1);
        }
        const double beta = rr > 0.0 ? rr_new / rr : 0.0;
        alphas[j] = alpha;
        betas[j] = beta;
        rr = rr_new;
        pq = cg_direction_apply(n, ${args}, alpha, beta, x, r, p, q, nthreads);
        st[0] = rr;
        st[1] = pq;
        if (sqrt(rr) < tol) return j + 1;
    }
    return steps;
}
% endif

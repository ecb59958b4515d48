<%page args="params, args, rows"/>
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

/* Up to `steps` classical CG iterations, two fused passes each: the loop of
   asp_mpk.cacg._classical_steps in one call, so that the calling thread takes the GIL back once
   per run instead of twice per iteration (a Python thread working in the background, e.g. a
   specialisation, made every reacquisition wait up to the interpreter's switch interval).
   st[0]: r.r (in/out); st[1]: p.q with q = A p on entry, NaN when q is stale (out: the same
   for the new p).  alphas, betas (steps long) receive the coefficients.  Returns the
   iterations done, or -(done + 1) on a breakdown (p.q <= 0 or a value not finite). */
int64_t cg_steps(int64_t n, ${params}, real *restrict x, real *restrict r, real *restrict p,
                 real *restrict q, int64_t steps, double tol, double *st, double *alphas,
                 double *betas, int nthreads)
{
    double rr = st[0], pq = st[1];
    for (int64_t j = 0; j < steps; ++j) {
        if (isnan(pq)) pq = cg_apply_dot(n, ${args}, p, q, nthreads);
        if (!isfinite(pq) || pq <= 0.0) {
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

<%page args="params, args, rows"/>
<%doc>
The three passes of one classical CG iteration, each fused so that a chunk's vectors are reused
from cache (the s-step method's rival when the machine is compute-bound on the Gram matrix).
Shared by the templates whose kernels hold the whole matrix (DIA, CSR baseline): ``params`` is
their matrix parameter list, ``args`` the names to pass on, ``rows`` a function
``name(args, x, y, a, b)`` computing ``y[a:b] = (A x)[a:b]``.
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
        ${rows}(n, ${args}, x, y, a, b);
        double t = 0.0;
#pragma omp simd reduction(+:t)
        for (int64_t i = a; i < b; ++i) t += (double)x[i] * (double)y[i];
        s += t;
    }
    return s;
}

/* x += alpha p; r -= alpha q; returns r . r */
double cg_update(int64_t n, double alpha, real *restrict x, const real *restrict p,
                 real *restrict r, const real *restrict q, int nthreads)
{
    double s = 0.0;
    const real al = (real)alpha;
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

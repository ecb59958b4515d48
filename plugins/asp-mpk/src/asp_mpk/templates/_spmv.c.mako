<%page args="params, args, rows, chunk=8192"/>
<%doc>
The plain product y = A x of the templates whose kernels hold the whole matrix (DIA, CSR
baseline): ``params`` is their matrix parameter list, ``args`` the names to pass on, ``rows`` a
function ``name(args, x, y, yb, a, b)`` computing ``y[i - yb] = (A x)[i]`` for i in [a, b).

It returns 1 when y holds a value that is not finite, else 0: each chunk of y is checked while
it is still in cache, so a caller learns about inf or nan in x (A's values are finite) without
a separate pass over x, which would cost as much as the product's own read of it.
</%doc>
int spmv(int64_t n, ${params}, const real *x, real *y, int nthreads)
{
    const int64_t CH = ${chunk}, nch = (n + CH - 1) / CH;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(|:bad) num_threads(nthreads)
    for (int64_t c = 0; c < nch; ++c) {
        const int64_t a = c * CH, b = a + CH < n ? a + CH : n;
        ${rows}(n, ${args}, x, y, 0, a, b);
        real z = (real)0;   /* y - y is 0 for a finite y, nan for inf and nan */
#pragma omp simd reduction(+:z)
        for (int64_t i = a; i < b; ++i) z += y[i] - y[i];
        bad |= z != (real)0;
    }
    return bad;
}

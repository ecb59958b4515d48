<%doc>
  CUDA kernel bodies of one EM iteration, specialised like the OpenMP ones (M, D, covariance
  type, dtype are compile-time constants; the #defines and the extern "C" entry points are
  platform-AST nodes, printed by the
  backend and passed in as `prelude` and `exports`, which this template places around its text, see asp_gmm.lowering). The entry points take
  HOST pointers and the same packed buffers as the OpenMP code, copy to the device, run, and
  copy the statistics back, so the shared object is bound with ctypes like the CPU one.

  Strategies (the Asp paper's GMM variants, here as CUDA launch structures):
    fused       one thread block per chunk of SB samples: densities, log-sum-exp and
                responsibilities in shared memory, then the block's threads each reduce some
                statistic entries over the chunk (one atomicAdd per entry and chunk); the N x M
                responsibilities never reach global memory. `block` = threads per block.
    samples     E-step thread per sample into global N x MP responsibilities, then the chunked
                statistics kernel reads them.
    components  E-step thread per (sample, component); M-step one block per component.
    dims        E-step thread per sample; M-step one block per feature (covariance row).
  SB: samples a block stages in shared memory for its statistics (Layout.cuda_samples_per_block,
  within 48 KiB with the block's log-sum-exp slots).
</%doc>
<%
    full = cov == "full"
    NENT = M + M * D + (M * D * D if full else M * D)
%>\
${prelude}
#include <cuda_runtime.h>

#define SB ${SB}
#define NENT ${NENT}
#define THREADS BLOCK

% if full:
#define S1IDX(k, j) (S1OFF + (k) * DP + (j))
#define SHIFT(k, j) (shift[(k) * DP + (j)])
% else:
#define S1IDX(k, j) (S1OFF + (j) * MP + (k))
#define SHIFT(k, j) (shift[(j) * MP + (k)])
% endif

/* weighted log-density of component k at x (x: D doubles) */
__device__ __forceinline__ double logp_k(const double *x, int k, const double *__restrict__ pa,
                                         const double *__restrict__ pb,
                                         const double *__restrict__ pc)
{
% if full:
    const double *Lk = pa + (size_t)k * DP * DP;
    double s = 0.0;
    for (int j = 0; j < D; ++j) {
        double y = -pb[k * DP + j];
        for (int i = 0; i ${"<=" if triangular else "<"} ${"j" if triangular else "D"}; ++i) y = fma(x[i], Lk[i * DP + j], y);
        s = fma(y, y, s);
    }
    return pc[k] - 0.5 * s;
% else:
    double s = 0.0;
    for (int j = 0; j < D; ++j) {
        double t = (x[j] - pa[j * MP + k]) * pb[j * MP + k];
        s = fma(t, t, s);
    }
    return pc[k] - 0.5 * s;
% endif
}

/* responsibilities of one sample into r (MP entries, padding zero); returns log-sum-exp */
__device__ double sample_resp(const double *x, const double *__restrict__ pa,
                              const double *__restrict__ pb, const double *__restrict__ pc,
                              double *r)
{
    double mx = -INFINITY;
    for (int k = 0; k < M; ++k) {
        r[k] = logp_k(x, k, pa, pb, pc);
        mx = fmax(mx, r[k]);
    }
    if (!isfinite(mx)) mx = 0.0; /* a row of -inf: lse -inf, as numpy's (not -inf - -inf) */
    double s = 0.0;
    for (int k = 0; k < M; ++k) s += exp(r[k] - mx);
    double lse = mx + log(s);
    for (int k = 0; k < M; ++k) r[k] = exp(r[k] - lse);
    for (int k = M; k < MP; ++k) r[k] = 0.0;
    return lse;
}

__device__ __forceinline__ void load_x(const xtype *__restrict__ X, int64_t n, double *x)
{
    for (int j = 0; j < D; ++j) x[j] = (double)X[n * D + j];
}

/* which component / feature a statistics entry belongs to (for the components/dims splits) */
__device__ __forceinline__ void entry_owner(int e, int *k, int *dim)
{
    if (e < M) { *k = e; *dim = 0; return; }
    e -= M;
    if (e < M * D) { *k = e / D; *dim = e % D; return; }
    e -= M * D;
% if full:
    *k = e / (D * D); *dim = (e / D) % D;
% else:
    *k = e / D; *dim = e % D;
% endif
}

/* sum over the nb samples of a chunk (xs: nb x D, rs: nb x MP, shared) of entry e */
__device__ void entry_stat(int e, const double *xs, const double *rs, int nb,
                           const double *__restrict__ shift, double *out)
{
    double s = 0.0;
    if (e < M) {
        for (int b = 0; b < nb; ++b) s += rs[b * MP + e];
        atomicAdd(out + e, s);
        return;
    }
    e -= M;
    if (e < M * D) {
        int k = e / D, j = e % D;
        double c = SHIFT(k, j);
        for (int b = 0; b < nb; ++b) s = fma(rs[b * MP + k], xs[b * D + j] - c, s);
        atomicAdd(out + S1IDX(k, j), s);
        return;
    }
    e -= M * D;
% if full:
    int k = e / (D * D), i = (e / D) % D, j = e % D;
    if (j < i) return; /* upper triangle only */
    double ci = SHIFT(k, i), cj = SHIFT(k, j);
    for (int b = 0; b < nb; ++b)
        s = fma(rs[b * MP + k] * (xs[b * D + i] - ci), xs[b * D + j] - cj, s);
    atomicAdd(out + S2OFF + ((size_t)k * DP + i) * DP + j, s);
% else:
    int k = e / D, j = e % D;
    double c = SHIFT(k, j);
    for (int b = 0; b < nb; ++b) {
        double d = xs[b * D + j] - c;
        s = fma(rs[b * MP + k], d * d, s);
    }
    atomicAdd(out + S2OFF + j * MP + k, s);
% endif
}

/* fused (resp == NULL: computed here) or chunked from global responsibilities.
   owner < 0: every entry; else only the entries of component (by_dim = 0) or feature
   (by_dim = 1) `owner`, looping over all chunks. */
__global__ void stats_kernel(const xtype *__restrict__ X, int64_t N, const double *resp,
                             const double *__restrict__ pa, const double *__restrict__ pb,
                             const double *__restrict__ pc, const double *__restrict__ shift,
                             double *out, int by_dim)
{
    __shared__ double xs[SB * D];
    __shared__ double rs[SB * MP];
    __shared__ double lse_part[THREADS];
    int64_t nchunks = (N + SB - 1) / SB;
    int all = gridDim.x == (unsigned)nchunks && by_dim < 0;
    int64_t first = all ? blockIdx.x : 0, step = all ? nchunks : 1;
    double lpn = 0.0;
    for (int64_t ch = first; ch < nchunks; ch += step) {
        int64_t n0 = ch * SB;
        int nb = (int)(N - n0 < SB ? N - n0 : SB);
        for (int t = threadIdx.x; t < nb * D; t += blockDim.x)
            xs[t] = (double)X[n0 * D + t];
        __syncthreads();
        if (resp == NULL) {
            for (int b = threadIdx.x; b < nb; b += blockDim.x)
                lpn += sample_resp(xs + b * D, pa, pb, pc, rs + b * MP);
        } else {
            for (int t = threadIdx.x; t < nb * MP; t += blockDim.x) rs[t] = resp[n0 * MP + t];
        }
        __syncthreads();
        for (int e = threadIdx.x; e < NENT; e += blockDim.x) {
            if (by_dim >= 0) {
                int k, dim;
                entry_owner(e, &k, &dim);
                if ((by_dim == 0 ? k : dim) != (int)blockIdx.x) continue;
                if (by_dim == 1 && e < M && blockIdx.x != 0) continue;
            }
            entry_stat(e, xs, rs, nb, shift, out);
        }
        __syncthreads();
    }
    if (resp == NULL) {
        lse_part[threadIdx.x] = lpn;
        __syncthreads();
        if (threadIdx.x == 0) {
            double s = 0.0;
            for (int t = 0; t < blockDim.x; ++t) s += lse_part[t];
            atomicAdd(out + LPNOFF, s);
        }
    }
}

/* E-step, thread per sample: responsibilities into resp (N x MP), log-sum-exp into out */
__global__ void estep_samples(const xtype *__restrict__ X, int64_t N,
                              const double *__restrict__ pa, const double *__restrict__ pb,
                              const double *__restrict__ pc, double *resp, double *out)
{
    int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (n >= N) return;
    double x[D], r[MP];
    load_x(X, n, x);
    double lse = sample_resp(x, pa, pb, pc, r);
    for (int k = 0; k < MP; ++k) resp[n * MP + k] = r[k];
    atomicAdd(out + LPNOFF, lse);
}

/* E-step, thread per (sample, component): weighted log-densities into resp */
__global__ void estep_components(const xtype *__restrict__ X, int64_t N,
                                 const double *__restrict__ pa, const double *__restrict__ pb,
                                 const double *__restrict__ pc, double *resp)
{
    int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int k = blockIdx.y;
    if (n >= N) return;
    double x[D];
    load_x(X, n, x);
    resp[n * MP + k] = logp_k(x, k, pa, pb, pc);
}

/* log-sum-exp normalisation of rows written by estep_components */
__global__ void normalise_rows(int64_t N, double *resp, double *out)
{
    int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (n >= N) return;
    double *r = resp + n * MP;
    double mx = -INFINITY;
    for (int k = 0; k < M; ++k) mx = fmax(mx, r[k]);
    if (!isfinite(mx)) mx = 0.0; /* a row of -inf: lse -inf */
    double s = 0.0;
    for (int k = 0; k < M; ++k) s += exp(r[k] - mx);
    double lse = mx + log(s);
    for (int k = 0; k < M; ++k) r[k] = exp(r[k] - lse);
    for (int k = M; k < MP; ++k) r[k] = 0.0;
    atomicAdd(out + LPNOFF, lse);
}

__global__ void log_prob_kernel(const xtype *__restrict__ X, int64_t N,
                                const double *__restrict__ pa, const double *__restrict__ pb,
                                const double *__restrict__ pc, double *out)
{
    int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (n >= N) return;
    double x[D];
    load_x(X, n, x);
    for (int k = 0; k < M; ++k) out[n * M + k] = logp_k(x, k, pa, pb, pc);
}

<%
    pa_size = "M * DP * DP" if full else "D * MP"
    pb_size = "M * DP" if full else "D * MP"
    sh_size = "M * DP" if full else "D * MP"
%>
/* device copies of the inputs; every pointer is freed by release() whatever happened */
typedef struct {
    xtype *X;
    double *pa, *pb, *pc, *shift, *out, *resp;
} device_buffers;

static void release(device_buffers *b)
{
    cudaFree(b->X);
    cudaFree(b->pa);
    cudaFree(b->pb);
    cudaFree(b->pc);
    cudaFree(b->shift);
    cudaFree(b->out);
    cudaFree(b->resp);
}

static int upload(device_buffers *b, const xtype *X, int64_t N, const double *pa,
                  const double *pb, const double *pc, const double *shift, size_t nout,
                  int with_resp)
{
    memset(b, 0, sizeof(*b));
    if (cudaMalloc((void **)&b->X, sizeof(xtype) * N * D) != cudaSuccess ||
        cudaMalloc((void **)&b->pa, sizeof(double) * ${pa_size}) != cudaSuccess ||
        cudaMalloc((void **)&b->pb, sizeof(double) * ${pb_size}) != cudaSuccess ||
        cudaMalloc((void **)&b->pc, sizeof(double) * MP) != cudaSuccess ||
        cudaMalloc((void **)&b->shift, sizeof(double) * ${sh_size}) != cudaSuccess ||
        cudaMalloc((void **)&b->out, sizeof(double) * nout) != cudaSuccess ||
        (with_resp && cudaMalloc((void **)&b->resp, sizeof(double) * N * MP) != cudaSuccess))
        return 2;
    cudaMemcpy(b->X, X, sizeof(xtype) * N * D, cudaMemcpyHostToDevice);
    cudaMemcpy(b->pa, pa, sizeof(double) * ${pa_size}, cudaMemcpyHostToDevice);
    cudaMemcpy(b->pb, pb, sizeof(double) * ${pb_size}, cudaMemcpyHostToDevice);
    cudaMemcpy(b->pc, pc, sizeof(double) * MP, cudaMemcpyHostToDevice);
    if (shift) cudaMemcpy(b->shift, shift, sizeof(double) * ${sh_size}, cudaMemcpyHostToDevice);
    cudaMemset(b->out, 0, sizeof(double) * nout);
    return cudaGetLastError() == cudaSuccess ? 0 : 3;
}

static int em_step_impl(const xtype *X, int64_t N, const double *pa, const double *pb,
                        const double *pc, const double *shift, double *out, double *work)
{
    (void)work;
    device_buffers b;
    int rc = upload(&b, X, N, pa, pb, pc, shift, NSTAT, ${"0" if strategy == "fused" else "1"});
    if (rc) { release(&b); return rc; }
% if strategy in ("fused", "samples"):
    int64_t nchunks = (N + SB - 1) / SB;
% endif
% if strategy != "fused":
    unsigned grid_n = (unsigned)((N + THREADS - 1) / THREADS);
% endif
% if strategy == "fused":
    stats_kernel<<<(unsigned)nchunks, THREADS>>>(b.X, N, NULL, b.pa, b.pb, b.pc, b.shift, b.out, -1);
% elif strategy == "samples":
    estep_samples<<<grid_n, THREADS>>>(b.X, N, b.pa, b.pb, b.pc, b.resp, b.out);
    stats_kernel<<<(unsigned)nchunks, THREADS>>>(b.X, N, b.resp, b.pa, b.pb, b.pc, b.shift, b.out, -1);
% elif strategy == "components":
    estep_components<<<dim3(grid_n, M), THREADS>>>(b.X, N, b.pa, b.pb, b.pc, b.resp);
    normalise_rows<<<grid_n, THREADS>>>(N, b.resp, b.out);
    stats_kernel<<<M, THREADS>>>(b.X, N, b.resp, b.pa, b.pb, b.pc, b.shift, b.out, 0);
% else:
    estep_samples<<<grid_n, THREADS>>>(b.X, N, b.pa, b.pb, b.pc, b.resp, b.out);
    stats_kernel<<<D, THREADS>>>(b.X, N, b.resp, b.pa, b.pb, b.pc, b.shift, b.out, 1);
% endif
    if (cudaDeviceSynchronize() != cudaSuccess) rc = 4;
    if (!rc) cudaMemcpy(out, b.out, sizeof(double) * NSTAT, cudaMemcpyDeviceToHost);
    release(&b);
    return rc;
}

static int log_prob_impl(const xtype *X, int64_t N, const double *pa, const double *pb,
                         const double *pc, double *out)
{
    device_buffers b;
    int rc = upload(&b, X, N, pa, pb, pc, NULL, (size_t)N * M, 0);
    if (rc) { release(&b); return rc; }
    log_prob_kernel<<<(unsigned)((N + THREADS - 1) / THREADS), THREADS>>>(b.X, N, b.pa, b.pb, b.pc, b.out);
    if (cudaDeviceSynchronize() != cudaSuccess) rc = 4;
    if (!rc) cudaMemcpy(out, b.out, sizeof(double) * N * M, cudaMemcpyDeviceToHost);
    release(&b);
    return rc;
}

${exports}

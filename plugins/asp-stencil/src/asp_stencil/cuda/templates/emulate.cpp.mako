/* CUDA translation unit run on the CPU (asp_stencil.cuda.emulate): the CUDA runtime's names
   below, then the generated code as printed for the emulation (launches call asp_emu_launch). */
#include <omp.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
static thread_local dim3 threadIdx(0, 0, 0), blockIdx(0, 0, 0);
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
static inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
template <typename T> static inline T __ldg(const T *p) { return *p; }
#define __global__
#define __device__
#define __shared__ static
#define __syncthreads() _Pragma("omp barrier")
/* one block at a time, each block an OpenMP team of exactly blockDim threads */
template <typename K, typename... A>
static void asp_emu_launch(K kernel, dim3 g, dim3 b, A... args) {
    const int nt = (int)(b.x * b.y * b.z);
    omp_set_dynamic(0);
    for (unsigned bz = 0; bz < g.z; ++bz)
        for (unsigned by = 0; by < g.y; ++by)
            for (unsigned bx = 0; bx < g.x; ++bx) {
#pragma omp parallel num_threads(nt)
                {
                    if (omp_get_num_threads() != nt) {
                        fprintf(stderr, "asp emulate: got %d threads for a block of %d\n",
                                omp_get_num_threads(), nt);
                        abort();
                    }
                    const unsigned t = (unsigned)omp_get_thread_num();
                    threadIdx = dim3(t % b.x, (t / b.x) % b.y, t / (b.x * b.y));
                    blockIdx = dim3(bx, by, bz);
                    kernel(args...);
                }
            }
}

${body}

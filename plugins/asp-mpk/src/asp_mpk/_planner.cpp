// Native plan builder of asp-mpk (pybind11, built once when asp-mpk is pip-installed).
//
// Everything asp-mpk computes once per matrix, in single passes over the CSR arrays with the
// GIL released: the structure check (out-of-range column indices are a ValueError, never a
// crash in generated code), the analysis (bandwidth, diagonals, symmetry, constant diagonals,
// dense r x r blocks), the DIA arrays, the PA1 ghost closures (levels and local CSR matrices),
// the bandwidth under a permutation, and the fast checksum and write-watch check with which the
// functional API recognises a matrix it has analysed.  The Python fallbacks in asp_mpk compute
// the same results with numpy (asp_mpk.native picks one).  Also the passes of classical CG on
// the CSR arrays, which asp_mpk.cg runs while its generated kernel compiles.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#if defined(__linux__)
#include <sys/ioctl.h>
#include <sys/mman.h>
#endif

namespace py = pybind11;
using i64 = std::int64_t;
using u64 = std::uint64_t;

namespace {

// ---- releasing the GIL -------------------------------------------------------------------------
// At interpreter exit Python ends a daemon thread that takes the GIL back (pthread_exit):
// unwinding through py::gil_scoped_release's destructor, which may not throw, aborted the
// process ("terminate called without an active exception", exit status 134) when a daemon
// thread was in a pass then (a loop of asp_mpk.cg in a daemon thread, 10 runs in 10).  So
// an atexit hook (which runs before the interpreter starts finalising) waits, letting the GIL
// go, for the passes under way to take it back, and later passes keep it: no thread is
// then ever waiting for the GIL inside one.  Both the hook and the start of a pass hold the
// GIL, so no pass starts unseen.
std::atomic<int> passes_without_gil{0};
bool exiting = false;   // read and written with the GIL held

class NoGil {
  public:
    NoGil() {
        if (!exiting) {
            passes_without_gil.fetch_add(1);
            state_ = PyEval_SaveThread();
        }
    }
    ~NoGil() {
        if (state_ != nullptr) {
            PyEval_RestoreThread(state_);
            passes_without_gil.fetch_sub(1);
        }
    }
    NoGil(const NoGil &) = delete;
    NoGil &operator=(const NoGil &) = delete;

  private:
    PyThreadState *state_ = nullptr;
};

void wait_for_passes() {
    exiting = true;
    py::gil_scoped_release nogil;   // the hook's thread holds no pass
    while (passes_without_gil.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// ---- array access ------------------------------------------------------------------------------
struct Raw {
    const void *ptr;
    i64 size;
    char kind;
    int itemsize;
};

Raw raw(const py::array &a, const char *name) {
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + " must be C-contiguous");
    return Raw{a.data(), static_cast<i64>(a.size()), a.dtype().kind(),
               static_cast<int>(a.itemsize())};
}

template <class F>
auto with_index(const Raw &r, const char *name, F f) {
    if (r.kind == 'i' && r.itemsize == 4) return f(static_cast<const std::int32_t *>(r.ptr));
    if (r.kind == 'i' && r.itemsize == 8) return f(static_cast<const std::int64_t *>(r.ptr));
    throw py::type_error(std::string(name) + " must be int32 or int64");
}

// indptr and indices are read through one index type
void same_index_dtype(const Raw &indptr, const Raw &indices) {
    if (indptr.kind != indices.kind || indptr.itemsize != indices.itemsize)
        throw py::type_error("indptr and indices must have the same dtype");
}

template <class F>
auto with_value(const Raw &r, const char *name, F f) {
    if (r.kind == 'f' && r.itemsize == 8) return f(static_cast<const double *>(r.ptr));
    if (r.kind == 'f' && r.itemsize == 4) return f(static_cast<const float *>(r.ptr));
    throw py::type_error(std::string(name) + " must be float64 or float32");
}

// ---- checksum: XXH3-style accumulation over 8 lanes of 64-bit words ------------------------------
// Each word, xored with a per-lane key and a per-block tweak (block b of 8 words: b * STEP),
// has its two 32-bit halves multiplied (a 32x32->64 product, one pmuludq per 2, 4 or 8 lanes:
// the high bits reach the low ones, so changes that cancel in plain sums, like flipping the sign
// of an even number of doubles, do not) and added with the neighbouring lane's word; a second
// sum of the running accumulators weights each word by its position.  The tweak makes a block's
// term depend on where it is: with linear weights alone, blocks A B B A rewritten as B A A B kept
// the sum (values 1 1 2 2 ... swapped in place went unnoticed).  Memory-bound with SIMD; it
// exists to notice a matrix modified in place, not to resist an adversary.
constexpr int LANES = 8;
constexpr u64 STEP = 0x9e3779b97f4a7c15ULL;
constexpr u64 KEY[LANES] = {0xbe4ba423396cfeb8ULL, 0x1cad21f72c81017cULL, 0xdb979083e96dd4deULL,
                            0x1f67b3b7a4a44072ULL, 0x78e5c0cc4ee679cbULL, 0x2172ffcc7dd05a82ULL,
                            0x8e2443f7744608b8ULL, 0x4c263a81e69035e0ULL};

struct Sums {
    u64 acc[LANES] = {0}, pos[LANES] = {0};
};

// The main loop in SIMD registers where the CPU has them (the same sums, lane for lane: the
// value does not depend on the machine); `main_loop_*` return how many words they consumed.
using MainLoop = i64 (*)(const unsigned char *, i64, Sums &);

[[maybe_unused]] i64 main_loop_scalar(const unsigned char *p, i64 nwords, Sums &s) {
    i64 i = 0;
    for (u64 t = 0; i + LANES <= nwords; i += LANES, t += STEP) {
        u64 w[LANES];
        std::memcpy(w, p + 8 * i, sizeof(w));
        for (int l = 0; l < LANES; ++l) {
            u64 k = w[l] ^ KEY[l] ^ t;
            s.acc[l] += (k & 0xffffffffULL) * (k >> 32) + w[l ^ 1];
            s.pos[l] += s.acc[l];
        }
    }
    return i;
}

#if defined(__x86_64__) && defined(__GNUC__)
// 32x32->64 multiplies of each word's halves (pmuludq), the neighbour word by a 64-bit swap
__attribute__((target("avx512f"))) i64 main_loop_avx512(const unsigned char *p, i64 nwords,
                                                         Sums &s) {
    __m512i acc = _mm512_loadu_si512(s.acc), pos = _mm512_loadu_si512(s.pos);
    const __m512i key = _mm512_loadu_si512(KEY), step = _mm512_set1_epi64(STEP);
    __m512i t = _mm512_setzero_si512();
    i64 i = 0;
    for (; i + LANES <= nwords; i += LANES, t = _mm512_add_epi64(t, step)) {
        __m512i w = _mm512_loadu_si512(p + 8 * i),
                k = _mm512_xor_si512(w, _mm512_xor_si512(key, t));
        acc = _mm512_add_epi64(acc, _mm512_add_epi64(_mm512_mul_epu32(k, _mm512_srli_epi64(k, 32)),
                                                     _mm512_shuffle_epi32(w, _MM_PERM_BADC)));
        pos = _mm512_add_epi64(pos, acc);
    }
    _mm512_storeu_si512(s.acc, acc);
    _mm512_storeu_si512(s.pos, pos);
    return i;
}

__attribute__((target("avx2"))) i64 main_loop_avx2(const unsigned char *p, i64 nwords, Sums &s) {
    __m256i acc[2], pos[2], key[2];
    for (int r = 0; r < 2; ++r) {
        acc[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(s.acc + 4 * r));
        pos[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(s.pos + 4 * r));
        key[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(KEY + 4 * r));
    }
    const __m256i step = _mm256_set1_epi64x(static_cast<long long>(STEP));
    __m256i t = _mm256_setzero_si256();
    i64 i = 0;
    for (; i + LANES <= nwords; i += LANES, t = _mm256_add_epi64(t, step))
        for (int r = 0; r < 2; ++r) {
            __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p + 8 * i + 32 * r));
            __m256i k = _mm256_xor_si256(w, _mm256_xor_si256(key[r], t));
            acc[r] = _mm256_add_epi64(acc[r], _mm256_add_epi64(
                _mm256_mul_epu32(k, _mm256_srli_epi64(k, 32)), _mm256_shuffle_epi32(w, 0x4E)));
            pos[r] = _mm256_add_epi64(pos[r], acc[r]);
        }
    for (int r = 0; r < 2; ++r) {
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(s.acc + 4 * r), acc[r]);
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(s.pos + 4 * r), pos[r]);
    }
    return i;
}

i64 main_loop_sse2(const unsigned char *p, i64 nwords, Sums &s) {   // the x86-64 baseline
    __m128i acc[4], pos[4], key[4];
    for (int r = 0; r < 4; ++r) {
        acc[r] = _mm_loadu_si128(reinterpret_cast<const __m128i *>(s.acc + 2 * r));
        pos[r] = _mm_loadu_si128(reinterpret_cast<const __m128i *>(s.pos + 2 * r));
        key[r] = _mm_loadu_si128(reinterpret_cast<const __m128i *>(KEY + 2 * r));
    }
    const __m128i step = _mm_set1_epi64x(static_cast<long long>(STEP));
    __m128i t = _mm_setzero_si128();
    i64 i = 0;
    for (; i + LANES <= nwords; i += LANES, t = _mm_add_epi64(t, step))
        for (int r = 0; r < 4; ++r) {
            __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 8 * i + 16 * r));
            __m128i k = _mm_xor_si128(w, _mm_xor_si128(key[r], t));
            acc[r] = _mm_add_epi64(acc[r], _mm_add_epi64(_mm_mul_epu32(k, _mm_srli_epi64(k, 32)),
                                                         _mm_shuffle_epi32(w, 0x4E)));
            pos[r] = _mm_add_epi64(pos[r], acc[r]);
        }
    for (int r = 0; r < 4; ++r) {
        _mm_storeu_si128(reinterpret_cast<__m128i *>(s.acc + 2 * r), acc[r]);
        _mm_storeu_si128(reinterpret_cast<__m128i *>(s.pos + 2 * r), pos[r]);
    }
    return i;
}

MainLoop pick_main_loop() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return main_loop_avx512;
    if (__builtin_cpu_supports("avx2")) return main_loop_avx2;
    return main_loop_sse2;
}
#else
MainLoop pick_main_loop() { return main_loop_scalar; }
#endif

const MainLoop main_loop = pick_main_loop();

void fletcher(const unsigned char *p, i64 nbytes, Sums &s) {
    i64 nwords = nbytes / 8;
    i64 i = main_loop(p, nwords, s);
    u64 tail[LANES] = {0};
    std::memcpy(tail, p + 8 * i, static_cast<size_t>(nbytes - 8 * i));
    const u64 t = static_cast<u64>(i / LANES) * STEP;   // the tail's block
    for (int l = 0; l < LANES; ++l) {
        u64 k = tail[l] ^ KEY[l] ^ t;
        s.acc[l] += (k & 0xffffffffULL) * (k >> 32) + tail[l ^ 1] + static_cast<u64>(nbytes);
        s.pos[l] += s.acc[l];
    }
}

u64 mix(u64 h, u64 v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

// The bytes are cut into fixed 1 MiB chunks, each summed on its own and folded into the result
// in order, so the value does not depend on how many threads summed them.  Threads take chunks
// from a shared counter, so a thread the scheduler starts late (a busy machine) just takes
// fewer.  It runs on every functional-API call and reads all of A: on a quiet machine one core
// does not reach the memory bandwidth, so the threads the kernels may use share the work
// (`threads`, from OMP_NUM_THREADS or the CPUs the process may use).
constexpr i64 CHUNK = i64(1) << 20;

u64 fold(const Sums &s, i64 nbytes) {
    u64 h = static_cast<u64>(nbytes);
    for (int l = 0; l < LANES; ++l) h = mix(mix(h, s.acc[l]), s.pos[l]);
    return h;
}

// How many parts a pass over `items` splits into: at most `threads` and `most`, each at least
// `per_part` items.  `hardware_threads(t)`: t, or this machine's hardware threads for t <= 0.
int hardware_threads(int threads) {
    return threads > 0 ? threads
                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

int parts_for(i64 items, i64 per_part, int threads, i64 most) {
    return static_cast<int>(std::max<i64>(1, std::min<i64>({threads, most, items / per_part})));
}

// Runs f(0) .. f(parts - 1) in parallel (f must not throw).  Built with OpenMP, on the threads
// of the OpenMP runtime the generated kernels use: after a kernel those spin for milliseconds
// waiting for more work, and new threads would share the cores with them (the functional
// matrix_powers' checksum right after the previous call's kernel took 3.9 ms instead of 1.3).
// Otherwise on helper threads where they can be had, f(0) on this one.
template <class F>
void in_parts(int parts, F f) {
    if (parts <= 1) {   // no parallel region: its outlined body ran a small product 25 % slower
        f(0);
        return;
    }
#ifdef _OPENMP
    std::atomic<int> next{0};   // the runtime may give fewer threads than asked
#pragma omp parallel num_threads(parts)
    for (int t; (t = next.fetch_add(1, std::memory_order_relaxed)) < parts;) f(t);
#else
    std::vector<std::thread> helpers;
    int t = 1;
    try {
        for (; t < parts; ++t) helpers.emplace_back(f, t);
    } catch (const std::system_error &) {   // no thread to be had: this one does the rest
    }
    f(0);
    for (int u = t; u < parts; ++u) f(u);
    for (auto &h : helpers) h.join();
#endif
}

// Lets other Python threads run during a pass long enough to be worth their turn; a short one
// keeps the GIL.  Released for every pass, a 256-row product (a microsecond) took 47 us while
// asp's background specialisation ran Python on another thread: the GIL went to that thread
// and came back at its next release.  `work`: the elements the pass touches.
constexpr i64 kReleaseGilFrom = i64(1) << 15;

class Unlocked {
  public:
    explicit Unlocked(i64 work) {
        if (work >= kReleaseGilFrom) release_.emplace();
    }

  private:
    std::optional<NoGil> release_;
};

u64 checksum(const std::vector<py::array> &arrays, int threads) {
    struct Piece {
        const unsigned char *p;
        i64 nbytes;
    };
    std::vector<Piece> pieces;        // the chunks of every array, in order
    std::vector<std::size_t> first;   // index of each array's first piece
    i64 total = 0;
    for (auto &a : arrays) {
        Raw r = raw(a, "array");
        auto p = static_cast<const unsigned char *>(r.ptr);
        i64 nbytes = r.size * r.itemsize;
        first.push_back(pieces.size());
        for (i64 o = 0; o < nbytes || o == 0; o += CHUNK)
            pieces.push_back({p + o, std::min(CHUNK, nbytes - o)});
        total += nbytes;
    }
    first.push_back(pieces.size());
    std::vector<u64> sums(pieces.size());
    {
        Unlocked nogil(total / 8);
        std::atomic<std::size_t> next{0};
        auto work = [&]() {
            for (std::size_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < pieces.size();) {
                Sums s;
                fletcher(pieces[c].p, pieces[c].nbytes, s);
                sums[c] = fold(s, pieces[c].nbytes);
            }
        };
        in_parts(parts_for(total, 4 * CHUNK, hardware_threads(threads), 8), [&](int) { work(); });
    }
    u64 h = 0x243f6a8885a308d3ULL;
    for (std::size_t a = 0; a + 1 < first.size(); ++a) {
        u64 ha = 0x452821e638d01377ULL;
        for (std::size_t c = first[a]; c < first[a + 1]; ++c) ha = mix(ha, sums[c]);
        h = mix(h, ha);
    }
    return h;
}

// ---- copies ---------------------------------------------------------------------------------
// Copies of C-contiguous arrays (new arrays of the same dtypes and shapes), the bytes copied in
// chunks over `threads` threads: the snapshot of A a first call takes (a one-thread copy was a
// sixth of that call, most of it the page faults of the new arrays, which threads share).
std::vector<py::array> copies(const std::vector<py::array> &arrays, int threads) {
    struct Piece {
        const unsigned char *from;
        unsigned char *to;
        i64 nbytes;
    };
    std::vector<py::array> result;
    std::vector<Piece> pieces;
    i64 total = 0;
    for (auto &a : arrays) {
        Raw r = raw(a, "array");
        std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
        py::array c(a.dtype(), shape);
        auto from = static_cast<const unsigned char *>(r.ptr);
        auto to = static_cast<unsigned char *>(c.mutable_data());
        i64 nbytes = r.size * r.itemsize;
        for (i64 o = 0; o < nbytes; o += CHUNK)
            pieces.push_back({from + o, to + o, std::min(CHUNK, nbytes - o)});
        total += nbytes;
        result.push_back(std::move(c));
    }
    {
        NoGil nogil;
        std::atomic<std::size_t> next{0};
        in_parts(parts_for(total, 4 * CHUNK, hardware_threads(threads), 8), [&](int) {
            for (std::size_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < pieces.size();)
                std::memcpy(pieces[c].to, pieces[c].from, static_cast<size_t>(pieces[c].nbytes));
        });
    }
    return result;
}

// ---- the CSR structure check -------------------------------------------------------------------
// In two passes, each split over `threads` threads: indptr (starts at 0, never decreases, ends
// inside indices) before anything indexes with it, then the column indices, in blocks of rows
// small enough to stay in cache.  A block's entries are scanned branch-free (smallest and
// largest index, and `descents`: entries not above their left neighbour), which vectorises;
// then the descents at the first entries of its rows are taken off.  The rows are sorted and
// free of duplicates exactly when none is left.  Errors are found again one entry at a time, to
// name the first.  (Checking row by row took 13 ms on a 5M-entry matrix, as long as a copy.)
constexpr i64 kRowsPerPart = i64(1) << 16, kRowsPerBlock = 4096;

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define ASP_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ASP_SIMD_CLONES
#endif

struct IndexScan {
    i64 lo, hi, descents;
};

// indices[p0:p1] (p1 > p0): smallest, largest, and how many are not above their predecessor
template <class J>
ASP_SIMD_CLONES IndexScan scan_indices(const J *indices, i64 p0, i64 p1) {
    J lo = indices[p0], hi = indices[p0];
    i64 descents = 0;
    for (i64 p = p0 + 1; p < p1; ++p) {
        lo = std::min(lo, indices[p]);
        hi = std::max(hi, indices[p]);
        descents += indices[p] <= indices[p - 1];
    }
    return {static_cast<i64>(lo), static_cast<i64>(hi), descents};
}

template <class I, class J>
py::dict check_csr_t(const I *indptr, i64 n, const J *indices, i64 nnz_arr, i64 ncols,
                     int threads) {
    if (indptr[0] != 0)
        throw py::value_error("invalid CSR structure: indptr[0] is " +
                              std::to_string(static_cast<i64>(indptr[0])) + ", expected 0");
    if (static_cast<i64>(indptr[n]) > nnz_arr || indptr[n] < 0)
        throw py::value_error("invalid CSR structure: indptr[-1] is " +
                              std::to_string(static_cast<i64>(indptr[n])) + " but indices has " +
                              std::to_string(nnz_arr) + " entries");
    const int parts = parts_for(n, kRowsPerPart, hardware_threads(threads), 8);
    auto rows_of = [&](int t) { return std::make_pair(n * t / parts, n * (t + 1) / parts); };
    std::vector<char> decreasing(parts, 0), out_of_range(parts, 0), unsorted(parts, 0);
    {
        Unlocked nogil(n);
        in_parts(parts, [&](int t) {
            auto [r0, r1] = rows_of(t);
            bool down = false;
            for (i64 i = r0; i < r1; ++i) down |= indptr[i + 1] < indptr[i];
            decreasing[t] = down;
        });
    }
    // indptr[0] = 0 <= ... <= indptr[n] <= len(indices) from here on: every row is in bounds
    if (std::find(decreasing.begin(), decreasing.end(), 1) != decreasing.end()) {
        i64 i = 0;
        while (indptr[i + 1] >= indptr[i]) ++i;
        throw py::value_error("invalid CSR structure: indptr decreases at row " +
                              std::to_string(i));
    }
    {
        Unlocked nogil(nnz_arr);
        in_parts(parts, [&](int t) {
            auto [r0, r1] = rows_of(t);
            bool outside = false;
            i64 descents = 0;   // not at the first entry of a row
            for (i64 b0 = r0; b0 < r1; b0 += kRowsPerBlock) {
                const i64 b1 = std::min(r1, b0 + kRowsPerBlock);
                const i64 q0 = indptr[b0], q1 = indptr[b1];
                if (q1 == q0) continue;
                // q0 starts a row, so its own descent is never counted
                const IndexScan s = scan_indices(indices, q0, q1);
                outside |= s.lo < 0 || s.hi >= ncols;
                descents += s.descents;
                for (i64 i = b0 + 1; i < b1; ++i) {
                    const i64 a = indptr[i];
                    descents -= a > q0 && a < indptr[i + 1] && indices[a] <= indices[a - 1];
                }
            }
            out_of_range[t] = outside;
            unsorted[t] = descents > 0;
        });
    }
    if (std::find(out_of_range.begin(), out_of_range.end(), 1) != out_of_range.end()) {
        i64 p = 0;
        while (static_cast<i64>(indices[p]) >= 0 && static_cast<i64>(indices[p]) < ncols) ++p;
        const i64 row = std::upper_bound(indptr, indptr + n + 1, static_cast<I>(p)) - indptr - 1;
        throw py::value_error("invalid CSR structure: column index " +
                              std::to_string(static_cast<i64>(indices[p])) + " in row " +
                              std::to_string(row) + " (entry " + std::to_string(p) +
                              ") is outside 0.." + std::to_string(ncols - 1));
    }
    py::dict out;
    out["canonical"] = std::find(unsorted.begin(), unsorted.end(), 1) == unsorted.end();
    return out;
}

py::dict check_csr(py::array indptr, py::array indices, i64 ncols, int threads) {
    Raw rp = raw(indptr, "indptr"), ri = raw(indices, "indices");
    if (rp.size < 1) throw py::value_error("invalid CSR structure: indptr is empty");
    return with_index(rp, "indptr", [&](auto ip) {
        return with_index(ri, "indices", [&](auto ix) {
            return check_csr_t(ip, rp.size - 1, ix, ri.size, ncols, threads);
        });
    });
}

// ---- values: finite? explicit zeros? ------------------------------------------------------------
// Branch-free with only the integer operations SSE2 has for 64-bit lanes (no 64-bit compare):
// an exponent of all ones carries into the top bit when one more is added below it, and
// v = w << 1 is zero exactly when (v - 1) & ~v has its top bit set.  Split over `threads`.
template <class U>
ASP_SIMD_CLONES void flag_bits(const U *w, i64 size, U &bad, U &zero) {
    constexpr int kBits = 8 * sizeof(U);
    constexpr int kMantissa = kBits == 64 ? 52 : 23;
    constexpr U kExponent = static_cast<U>(~U(0) << kMantissa) & static_cast<U>(~U(0) >> 1);
    U b = 0, z = 0;
    for (i64 p = 0; p < size; ++p) {
        const U v = static_cast<U>(w[p] << 1);
        b |= static_cast<U>((w[p] & kExponent) + (U(1) << kMantissa));
        z |= static_cast<U>((v - 1) & ~v);
    }
    bad |= b >> (kBits - 1), zero |= z >> (kBits - 1);
}

constexpr i64 kValuesPerPart = i64(1) << 18;

py::dict value_flags(py::array data, int threads) {
    Raw rd = raw(data, "data");
    if (rd.kind != 'f' || (rd.itemsize != 8 && rd.itemsize != 4))
        throw py::type_error("data must be float64 or float32");
    const int parts = parts_for(rd.size, kValuesPerPart, hardware_threads(threads), 8);
    std::vector<char> bad(parts, 0), zeros(parts, 0);
    {
        Unlocked nogil(rd.size);
        in_parts(parts, [&](int t) {
            const i64 lo = rd.size * t / parts, hi = rd.size * (t + 1) / parts;
            if (rd.itemsize == 8) {
                std::uint64_t b = 0, z = 0;
                flag_bits(static_cast<const std::uint64_t *>(rd.ptr) + lo, hi - lo, b, z);
                bad[t] = b != 0, zeros[t] = z != 0;
            } else {
                std::uint32_t b = 0, z = 0;
                flag_bits(static_cast<const std::uint32_t *>(rd.ptr) + lo, hi - lo, b, z);
                bad[t] = b != 0, zeros[t] = z != 0;
            }
        });
    }
    py::dict out;
    out["finite"] = std::find(bad.begin(), bad.end(), 1) == bad.end();
    out["zeros"] = std::find(zeros.begin(), zeros.end(), 1) != zeros.end();
    return out;
}

// ---- the analysis ------------------------------------------------------------------------------
template <class I, class V>
py::dict analyse_t(const I *indptr, const I *indices, const V *data, i64 n, i64 max_diagonals,
                   const std::vector<int> &block_sizes) {
    i64 nnz = indptr[n];
    i64 bw = 0;
    bool symmetric = true;
    bool too_many = false;
    std::vector<i64> offs;                // distinct offsets j - i, sorted
    std::vector<i64> count;               // entries per offset
    std::vector<double> first;            // first nonzero value per offset
    std::vector<char> constant;           // every nonzero equal to the first
    std::vector<i64> nblocks(block_sizes.size(), -1);
    {
        NoGil nogil;
        std::vector<i64> cur(indptr, indptr + n);
        for (i64 i = 0; i < n; ++i) {
            for (i64 p = indptr[i]; p < indptr[i + 1]; ++p) {
                i64 j = indices[p], o = j - i;
                bw = std::max(bw, o < 0 ? -o : o);
                if (!too_many) {
                    auto it = std::lower_bound(offs.begin(), offs.end(), o);
                    size_t d = static_cast<size_t>(it - offs.begin());
                    double x = static_cast<double>(data[p]);
                    if (it == offs.end() || *it != o) {
                        if (static_cast<i64>(offs.size()) >= max_diagonals) {
                            too_many = true;
                        } else {
                            offs.insert(it, o);
                            count.insert(count.begin() + static_cast<long>(d), 1);
                            first.insert(first.begin() + static_cast<long>(d), x);
                            constant.insert(constant.begin() + static_cast<long>(d), 1);
                        }
                    } else {
                        ++count[d];
                        if (x != 0.0) {
                            if (first[d] == 0.0) first[d] = x;
                            else if (x != first[d]) constant[d] = 0;
                        }
                    }
                }
                if (symmetric) {
                    // A[j, i] must exist with the same value.  Rows are sorted and i grows, so
                    // the entry (j, i) lies at or after row j's cursor: one pass in all.
                    i64 &q = cur[static_cast<size_t>(j)];
                    i64 e = indptr[j + 1];
                    while (q < e && static_cast<i64>(indices[q]) < i) ++q;
                    if (q == e || static_cast<i64>(indices[q]) != i || data[q] != data[p])
                        symmetric = false;
                }
            }
        }
        // dense r x r blocks: distinct (block row, block column) pairs per block row
        std::vector<i64> cols;
        for (size_t s = 0; s < block_sizes.size(); ++s) {
            i64 r = block_sizes[s];
            if (n % r || nnz == 0 || n < 4 * r) continue;
            i64 blocks = 0;
            for (i64 bi = 0; bi < n / r; ++bi) {
                cols.clear();
                for (i64 p = indptr[bi * r]; p < indptr[bi * r + r]; ++p)
                    cols.push_back(static_cast<i64>(indices[p]) / r);
                std::sort(cols.begin(), cols.end());
                blocks += std::unique(cols.begin(), cols.end()) - cols.begin();
            }
            nblocks[s] = blocks;
        }
    }
    py::dict out;
    out["bandwidth"] = bw;
    out["symmetric"] = symmetric;
    if (too_many) {
        out["offsets"] = py::none();
    } else {
        i64 nconst = 0;
        for (char c : constant) nconst += c ? 1 : 0;
        out["offsets"] = offs;
        out["counts"] = count;
        out["constant"] = nconst;
    }
    py::dict blocks;
    for (size_t s = 0; s < block_sizes.size(); ++s)
        if (nblocks[s] >= 0) blocks[py::int_(block_sizes[s])] = nblocks[s];
    out["blocks"] = blocks;
    return out;
}

py::dict analyse(py::array indptr, py::array indices, py::array data, i64 max_diagonals,
                 std::vector<int> block_sizes) {
    Raw rp = raw(indptr, "indptr"), ri = raw(indices, "indices"), rd = raw(data, "data");
    same_index_dtype(rp, ri);
    i64 n = rp.size - 1;
    return with_index(rp, "indptr", [&](auto ip) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(ip)>>;
        return with_value(rd, "data", [&](auto v) {
            return analyse_t<I>(ip, static_cast<const I *>(ri.ptr), v, n, max_diagonals,
                                block_sizes);
        });
    });
}

// ---- DIA arrays ---------------------------------------------------------------------------------
py::array dia_arrays(py::array indptr, py::array indices, py::array data,
                     std::vector<i64> offsets) {
    Raw rp = raw(indptr, "indptr"), ri = raw(indices, "indices"), rd = raw(data, "data");
    i64 n = rp.size - 1;
    i64 nd = static_cast<i64>(offsets.size());
    return with_value(rd, "data", [&](auto v) -> py::array {
        using V = std::remove_const_t<std::remove_pointer_t<decltype(v)>>;
        py::array_t<V> D({nd, n});
        V *d = D.mutable_data();
        bool outside = false;
        with_index(rp, "indptr", [&](auto ip) {
            return with_index(ri, "indices", [&](auto ix) {
                NoGil nogil;
                std::fill(d, d + nd * n, V(0));
                for (i64 i = 0; i < n && !outside; ++i)
                    for (i64 p = ip[i]; p < ip[i + 1]; ++p) {
                        i64 o = static_cast<i64>(ix[p]) - i;
                        auto it = std::lower_bound(offsets.begin(), offsets.end(), o);
                        if (it == offsets.end() || *it != o) {
                            outside = true;
                            break;
                        }
                        d[(it - offsets.begin()) * n + i] = v[p];
                    }
                return 0;
            });
        });
        if (outside) throw py::value_error("matrix has entries outside the given diagonals");
        return D;
    });
}

// ---- bandwidth under a permutation --------------------------------------------------------------
i64 permuted_bandwidth(py::array indptr, py::array indices, py::array_t<i64> perm) {
    Raw rp = raw(indptr, "indptr"), ri = raw(indices, "indices");
    i64 n = rp.size - 1;
    if (perm.size() != n) throw py::value_error("perm has the wrong length");
    const i64 *pm = perm.data();
    return with_index(rp, "indptr", [&](auto ip) {
        return with_index(ri, "indices", [&](auto ix) {
            NoGil nogil;
            std::vector<i64> inv(static_cast<size_t>(n));
            for (i64 i = 0; i < n; ++i) inv[static_cast<size_t>(pm[i])] = i;
            i64 bw = 0;
            for (i64 i = 0; i < n; ++i)
                for (i64 p = ip[i]; p < ip[i + 1]; ++p) {
                    i64 d = inv[static_cast<size_t>(i)] - inv[static_cast<size_t>(ix[p])];
                    bw = std::max(bw, d < 0 ? -d : d);
                }
            return bw;
        });
    });
}

// ---- classical CG passes on the CSR arrays ------------------------------------------------------
// What asp_mpk.cg runs while its generated kernel compiles: the three passes of a classical CG
// step (q = A p with p.q; x += a p, r -= a q with r.r; p = r + b p), each one pass over its
// arrays split by rows over up to `threads` threads (fixed parts, so the sums are the same on
// every call with the same thread count).
py::array_t<double> vector_arg(py::array a, i64 n, const char *name, bool write) {
    if (a.ndim() != 1 || a.shape(0) != n || a.dtype().kind() != 'f' || a.itemsize() != 8 ||
        !(a.flags() & py::array::c_style) || (write && !a.writeable()))
        throw py::value_error(std::string("cg passes: ") + name + " must be a C-contiguous " +
                              (write ? "writeable " : "") + "float64 vector of the matrix's size");
    return py::reinterpret_borrow<py::array_t<double>>(a);
}

double cg_apply_dot(py::array indptr, py::array indices, py::array data, py::array p,
                    py::array q, int threads) {
    Raw rp = raw(indptr, "indptr"), ri = raw(indices, "indices"), rd = raw(data, "data");
    same_index_dtype(rp, ri);
    if (rd.kind != 'f' || rd.itemsize != 8 || rd.size != ri.size)
        throw py::type_error("cg passes: data must be float64, one value per column index");
    i64 n = rp.size - 1;
    auto pv = vector_arg(p, n, "p", false);
    auto qv = vector_arg(q, n, "q", true);
    const double *pp = pv.data(), *dv = static_cast<const double *>(rd.ptr);
    double *qq = qv.mutable_data();
    int parts = parts_for(n, 16384, threads, 16);
    std::vector<double> dots(static_cast<size_t>(parts), 0.0);
    with_index(rp, "indptr", [&](auto ip) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(ip)>>;
        const I *ix = static_cast<const I *>(ri.ptr);
        Unlocked nogil(n + ri.size);
        in_parts(parts, [&](int t) {
            i64 lo = n * t / parts, hi = n * (t + 1) / parts;
            double d = 0.0;
            for (i64 i = lo; i < hi; ++i) {
                double s = 0.0;
                for (i64 k = ip[i]; k < ip[i + 1]; ++k) s += dv[k] * pp[ix[k]];
                qq[i] = s;
                d += pp[i] * s;
            }
            dots[static_cast<size_t>(t)] = d;
        });
        return 0;
    });
    double d = 0.0;
    for (double v : dots) d += v;
    return d;
}

double cg_update(double alpha, py::array x, py::array p, py::array r, py::array q, int threads) {
    i64 n = x.ndim() == 1 ? x.shape(0) : -1;
    auto xv = vector_arg(x, n, "x", true), pv = vector_arg(p, n, "p", false);
    auto rv = vector_arg(r, n, "r", true), qv = vector_arg(q, n, "q", false);
    double *xx = xv.mutable_data(), *rr = rv.mutable_data();
    const double *pp = pv.data(), *qq = qv.data();
    int parts = parts_for(n, 16384, threads, 16);
    std::vector<double> dots(static_cast<size_t>(parts), 0.0);
    {
        Unlocked nogil(4 * n);
        in_parts(parts, [&](int t) {
            i64 lo = n * t / parts, hi = n * (t + 1) / parts;
            double d = 0.0;
            for (i64 i = lo; i < hi; ++i) {
                xx[i] += alpha * pp[i];
                double ri = rr[i] - alpha * qq[i];
                rr[i] = ri;
                d += ri * ri;
            }
            dots[static_cast<size_t>(t)] = d;
        });
    }
    double d = 0.0;
    for (double v : dots) d += v;
    return d;
}

void cg_direction(double beta, py::array r, py::array p, int threads) {
    i64 n = r.ndim() == 1 ? r.shape(0) : -1;
    auto rv = vector_arg(r, n, "r", false), pv = vector_arg(p, n, "p", true);
    const double *rr = rv.data();
    double *pp = pv.mutable_data();
    int parts = parts_for(n, 16384, threads, 16);
    Unlocked nogil(2 * n);
    in_parts(parts, [&](int t) {
        for (i64 i = n * t / parts, hi = n * (t + 1) / parts; i < hi; ++i)
            pp[i] = rr[i] + beta * pp[i];
    });
}

// ---- PA1 ghost closures -------------------------------------------------------------------------
// For each part order[bounds[b]:bounds[b+1]] (owned rows, sorted), k levels of ghost rows (each
// level sorted), and the local CSR matrix of the first m_1 local rows in local numbering.
// Returns None when the local matrices would exceed max_entries (PA1 cannot pay off).
template <class I>
py::object closures_t(const I *indptr, const I *indices, i64 n, const i64 *order,
                      const i64 *bounds, i64 nb, i64 k, bool sym, i64 max_entries) {
    std::vector<char> mark(static_cast<size_t>(n), 0);
    std::vector<i64> loc(static_cast<size_t>(n), -1);
    std::vector<i64> meta, glob, gofs{0}, rofs{0}, rp, ci, pos;
    i64 computed = 0;
    bool too_large = false;
    {
        NoGil nogil;
        std::vector<i64> nbrs;
        for (i64 b = 0; b < nb && !too_large; ++b) {
            size_t g0 = glob.size();
            glob.insert(glob.end(), order + bounds[b], order + bounds[b + 1]);
            std::sort(glob.begin() + static_cast<long>(g0), glob.end());
            for (size_t q = g0; q < glob.size(); ++q) mark[static_cast<size_t>(glob[q])] = 1;
            std::vector<i64> sizes{static_cast<i64>(glob.size() - g0)};
            size_t f0 = g0, f1 = glob.size();
            for (i64 lev = 0; lev < k; ++lev) {
                nbrs.clear();
                for (size_t q = f0; q < f1; ++q) {
                    i64 row = glob[q];
                    for (i64 p = indptr[row]; p < indptr[row + 1]; ++p) {
                        i64 c = indices[p];
                        if (!mark[static_cast<size_t>(c)]) {
                            mark[static_cast<size_t>(c)] = 1;
                            nbrs.push_back(c);
                        }
                    }
                }
                std::sort(nbrs.begin(), nbrs.end());
                glob.insert(glob.end(), nbrs.begin(), nbrs.end());
                f0 = f1;
                f1 = glob.size();
                sizes.push_back(sizes.back() + static_cast<i64>(nbrs.size()));
            }
            i64 m0 = static_cast<i64>(glob.size() - g0);
            // m_0 .. m_k = |R_0| .. |R_k| (R_k = owned rows)
            for (i64 j = 0; j <= k; ++j) meta.push_back(sizes[static_cast<size_t>(k - j)]);
            i64 own = sizes[0];
            bool contiguous = own > 0 && glob[g0 + own - 1] - glob[g0] + 1 == own;
            meta.push_back(contiguous ? 1 : 0);
            for (i64 j = 1; j <= k; ++j) computed += sizes[static_cast<size_t>(k - j)];
            for (i64 q = 0; q < m0; ++q) {
                loc[static_cast<size_t>(glob[g0 + q])] = q;
                mark[static_cast<size_t>(glob[g0 + q])] = 0;
            }
            i64 m1 = k >= 1 ? sizes[static_cast<size_t>(k - 1)] : 0;
            for (i64 r = 0; r < m1; ++r) {
                rp.push_back(static_cast<i64>(ci.size()));
                i64 row = glob[g0 + r];
                for (i64 p = indptr[row]; p < indptr[row + 1]; ++p) {
                    i64 c = loc[static_cast<size_t>(indices[p])];
                    if (sym && c < r) continue;
                    ci.push_back(c);  // >= 0: every neighbour of a row of R_1 is in R_0
                    pos.push_back(p);
                }
            }
            rp.push_back(static_cast<i64>(ci.size()));
            for (i64 q = 0; q < m0; ++q) loc[static_cast<size_t>(glob[g0 + q])] = -1;
            gofs.push_back(static_cast<i64>(glob.size()));
            rofs.push_back(static_cast<i64>(rp.size()));
            if (static_cast<i64>(ci.size()) > max_entries) too_large = true;
        }
    }
    if (too_large) return py::none();
    auto arr = [](const std::vector<i64> &v) { return py::array_t<i64>(v.size(), v.data()); };
    std::vector<std::int32_t> ci32(ci.begin(), ci.end());
    py::dict out;
    out["meta"] = arr(meta).attr("reshape")(nb, k + 2);
    out["gofs"] = arr(gofs);
    out["glob"] = arr(glob);
    out["rofs"] = arr(rofs);
    out["rp"] = arr(rp);
    out["ci"] = py::array_t<std::int32_t>(ci32.size(), ci32.data());
    out["pos"] = arr(pos);
    out["computed"] = computed;
    return out;
}

py::object closures(py::array indptr, py::array indices, py::array_t<i64> order,
                    py::array_t<i64> bounds, i64 k, bool sym, i64 max_entries) {
    Raw rp = raw(indptr, "indptr"), ri = raw(indices, "indices");
    same_index_dtype(rp, ri);
    i64 n = rp.size - 1;
    if (order.size() != n) throw py::value_error("order has the wrong length");
    return with_index(rp, "indptr", [&](auto ip) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(ip)>>;
        return closures_t<I>(ip, static_cast<const I *>(ri.ptr), n, order.data(), bounds.data(),
                             static_cast<i64>(bounds.size()) - 1, k, sym, max_entries);
    });
}

// ---- matrix powers without a compiled kernel ---------------------------------------------------
// What calls run while the generated kernel compiles in the background: k CSR products per
// vector written straight into out (no temporaries), with the basis recurrence
// out[j] = a_j A out[j-1] + b_j out[j-1] + c_j out[j-2] unless monomial.  Each product's rows
// go in chunks to up to `threads` threads from a shared counter (a row's sum is one thread's,
// in SciPy's order, so the result does not depend on who took it).  Chunks, not halves: a
// virtual CPU the host stalls for tens of milliseconds (seen in one call in ten on a two-core
// VM) then takes fewer rows instead of holding up the product.
// rows_fn(lo, hi) over chunks of the n rows of a CSR pass, split over `threads` (one part below
// 16384 rows: a product of a small matrix is over before threads could start)
template <class F>
void by_row_chunks(i64 n, int threads, F rows_fn) {
    const int parts = parts_for(n, 16384, hardware_threads(threads), 16);
    const i64 rows = std::max<i64>(4096, n / (16 * parts) + 1);
    const i64 chunks = (n + rows - 1) / rows;
    std::atomic<i64> next{0};
    in_parts(parts, [&](int) {
        for (i64 c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;)
            rows_fn(c * rows, std::min(n, (c + 1) * rows));
    });
}

// y[lo, hi) = (A x)[lo, hi), each row's sum in SciPy's order; whether every y is finite.  A
// function of its own, restrict pointers: inside the lambdas of the threaded passes the loop
// reloaded what they capture (a 4096-row product took 19 us there, 14.6 here).
template <class I, class V>
__attribute__((noinline)) bool csr_rows(const I *__restrict__ indptr,
                                        const I *__restrict__ indices,
                                        const V *__restrict__ data, const V *__restrict__ x,
                                        V *__restrict__ y, i64 lo, i64 hi) {
    bool finite = true;
    for (i64 i = lo; i < hi; ++i) {
        V sum = 0;
        for (I p = indptr[i]; p < indptr[i + 1]; ++p) sum += data[p] * x[indices[p]];
        y[i] = sum;
        finite &= std::isfinite(sum);
    }
    return finite;
}

template <class I, class V>
void csr_powers_t(const I *indptr, const I *indices, const V *data, i64 n, const V *xs, V *out,
                  i64 nvec, i64 k, const double *coefs, bool monomial, int threads) {
    i64 kk = std::max<i64>(k, 1);
    auto by_chunks = [&](auto rows_fn) { by_row_chunks(n, threads, rows_fn); };
    for (i64 v = 0; v < nvec; ++v) {
        V *o = out + v * (k + 1) * n;
        const V *x = xs + v * n;
        by_chunks([&](i64 lo, i64 hi) {
            std::memcpy(o + lo, x + lo, sizeof(V) * static_cast<size_t>(hi - lo));
        });
        for (i64 j = 1; j <= k; ++j) {
            const V *prev = o + (j - 1) * n, *prev2 = j >= 2 ? o + (j - 2) * n : nullptr;
            V *y = o + j * n;
            double a = coefs[j - 1], b = coefs[kk + j - 1], c = coefs[2 * kk + j - 1];
            by_chunks([&](i64 lo, i64 hi) {
                if (monomial) {
                    csr_rows(indptr, indices, data, prev, y, lo, hi);
                    return;
                }
                for (i64 i = lo; i < hi; ++i) {
                    V sum = 0;
                    for (i64 p = indptr[i]; p < indptr[i + 1]; ++p)
                        sum += data[p] * prev[indices[p]];
                    double s = a * sum + b * prev[i];
                    if (prev2) s += c * prev2[i];
                    y[i] = static_cast<V>(s);
                }
            });
        }
    }
}

// y = A x over CSR arrays, each row's sum in SciPy's order, with the product ABI of the generated
// kernels (see Product): nonzero when some y is not finite, so that the Python path decides
// what to report.  What spmv of a watched matrix runs while its kernel is being specialised.
template <class I, class V>
int csr_product_t(i64 n, const void *indptr, const void *indices, const void *data,
                  const void *x, void *y, int threads) {
    const auto *ip = static_cast<const I *>(indptr);
    const auto *ix = static_cast<const I *>(indices);
    const auto *dv = static_cast<const V *>(data);
    const auto *xv = static_cast<const V *>(x);
    auto *yv = static_cast<V *>(y);
    std::atomic<int> bad{0};
    by_row_chunks(n, threads, [&](i64 lo, i64 hi) {
        if (!csr_rows(ip, ix, dv, xv, yv, lo, hi)) bad.store(1, std::memory_order_relaxed);
    });
    return bad.load();
}

// The address of csr_product_t for these index and value dtypes (a Product's entry point).
std::uintptr_t csr_product_entry(py::array indptr, py::array data) {
    Raw rp = raw(indptr, "indptr"), rd = raw(data, "data");
    return with_index(rp, "indptr", [&](auto ip) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(ip)>>;
        return with_value(rd, "data", [&](auto dv) {
            using V = std::remove_const_t<std::remove_pointer_t<decltype(dv)>>;
            return reinterpret_cast<std::uintptr_t>(&csr_product_t<I, V>);
        });
    });
}

void csr_powers(py::array indptr, py::array indices, py::array data, py::array xs, py::array out,
                py::array_t<double> coefs, bool monomial, int threads) {
    Raw rp = raw(indptr, "indptr"), ri = raw(indices, "indices"), rd = raw(data, "data");
    Raw rx = raw(xs, "xs"), ro = raw(out, "out");
    same_index_dtype(rp, ri);
    if (rx.kind != rd.kind || rx.itemsize != rd.itemsize || ro.kind != rd.kind ||
        ro.itemsize != rd.itemsize)
        throw py::type_error("xs, out and data must have the same dtype");
    i64 n = rp.size - 1;
    if (xs.ndim() != 2 || xs.shape(1) != n || out.ndim() != 3 || out.shape(0) != xs.shape(0) ||
        out.shape(2) != n || !out.writeable())
        throw py::value_error("csr_powers: xs must be (nvec, n) and out a writeable (nvec, k+1, n)");
    i64 nvec = xs.shape(0), k = out.shape(1) - 1;
    if (coefs.ndim() != 2 || coefs.shape(0) != 3 || coefs.shape(1) != std::max<i64>(k, 1) ||
        !(coefs.flags() & py::array::c_style))
        throw py::value_error("csr_powers: coefs must be a C-contiguous (3, max(k, 1)) array");
    void *po = out.mutable_data();
    const double *pc = coefs.data();
    with_index(rp, "indptr", [&](auto ip) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(ip)>>;
        return with_value(rd, "data", [&](auto dv) {
            using V = std::remove_const_t<std::remove_pointer_t<decltype(dv)>>;
            Unlocked nogil(nvec * std::max<i64>(k, 1) * (n + ri.size));
            csr_powers_t<I, V>(ip, static_cast<const I *>(ri.ptr), dv, n,
                               static_cast<const V *>(rx.ptr), static_cast<V *>(po), nvec, k,
                               pc, monomial, threads);
            return 0;
        });
    });
}

// ---- write watching: the functional API's per-call check -------------------------------------
// What asp_mpk.writewatch recorded about a matrix's arrays when it write-protected their whole
// pages and the caller checksummed them.  clean() answers, without reading the arrays, whether
// they can have changed since: the same buffers, shapes, strides and dtypes; the same bytes in
// the partial pages at their ends; and, per page range, that no page was written or dropped.
// It touches a few cache lines where the Python check touched a few hundred (after a kernel
// has streamed the caches away, that was most of its cost).  Anything else, including not
// being Linux, is "cannot tell": the Python side decides then.
//
// The page check asks PAGEMAP_SCAN for written pages only (category and return masks both
// PAGE_IS_WRITTEN), the kernel's fast path: it tests one bit per page-table entry and counts
// a dropped entry as written, where a scan that reports every page's categories costs seven
// times as much (about 1.1 ns per 4 KiB page against 0.15, and an array's ends are never in
// huge pages).  mincore then confirms that every page is resident, so that a page dropped
// without a write is a change whatever the kernel reports for the hole it leaves.  The fast
// path misread swapped-out entries before Linux 6.10 ("fix uffd-wp confusion in
// pagemap_scan_pmd_entry"); there the caller asks for the full scan: one region, resident or
// swapped, unwritten, covering the range.
struct PageScan {  // struct pm_scan_arg of linux/fs.h (Linux 6.7)
    u64 size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
        category_mask, category_anyof_mask, return_mask;
};
struct PageRegion {  // struct page_region
    u64 start, end, categories;
};
constexpr u64 kScanCheckWpAsync = 1u << 1, kWritten = 1u << 1, kPresent = 1u << 3,
              kSwapped = 1u << 4;
constexpr unsigned long kPagemapScan = (3ul << 30) | (sizeof(PageScan) << 16) | ('f' << 8) | 16;

struct WatchedArray {
    std::uintptr_t ptr;
    std::vector<py::ssize_t> shape, strides;
    int type_num;
    char byteorder;
    std::string head, tail;  // the bytes of the partial pages at each end
    std::uintptr_t lo, hi;   // the whole pages in between
};

class WriteCheck {
  public:
    WriteCheck(int pagemap, const py::tuple &arrays, std::uintptr_t page, bool fast)
        : pagemap_(pagemap), page_(page), fast_(fast) {
        for (const auto &obj : arrays) {
            auto a = py::reinterpret_borrow<py::array>(obj);
            WatchedArray w;
            describe(a, w);
            const auto start = w.ptr, end = start + static_cast<std::uintptr_t>(a.nbytes());
            w.lo = (start + page - 1) / page * page;
            w.hi = std::max(w.lo, end / page * page);
            w.head.assign(reinterpret_cast<const char *>(start), std::min(w.lo, end) - start);
            w.tail.assign(reinterpret_cast<const char *>(w.hi), end > w.hi ? end - w.hi : 0);
            arrays_.push_back(std::move(w));
        }
    }

    bool clean(const py::tuple &arrays) const {
        if (arrays.size() != arrays_.size()) return false;
        for (std::size_t i = 0; i < arrays_.size(); ++i) {
            if (!py::isinstance<py::array>(arrays[i])) return false;
            WatchedArray now;
            describe(py::reinterpret_borrow<py::array>(arrays[i]), now);
            const auto &w = arrays_[i];
            if (now.ptr != w.ptr || now.shape != w.shape || now.strides != w.strides ||
                now.type_num != w.type_num || now.byteorder != w.byteorder ||
                std::memcmp(reinterpret_cast<const void *>(w.ptr), w.head.data(),
                            w.head.size()) != 0 ||
                std::memcmp(reinterpret_cast<const void *>(w.hi), w.tail.data(),
                            w.tail.size()) != 0)
                return false;
        }
        for (const auto &w : arrays_)
            if (w.hi > w.lo && !unwritten(w.lo, w.hi)) return false;
        return true;
    }

  private:
    static void describe(const py::array &a, WatchedArray &w) {
        w.ptr = reinterpret_cast<std::uintptr_t>(a.data());
        w.shape.assign(a.shape(), a.shape() + a.ndim());
        w.strides.assign(a.strides(), a.strides() + a.ndim());
        const auto *d = py::detail::array_descriptor_proxy(a.dtype().ptr());
        w.type_num = d->type_num;
        w.byteorder = d->byteorder;
    }

    bool unwritten(std::uintptr_t lo, std::uintptr_t hi) const {
#if defined(__linux__)
        PageRegion vec[2];
        if (fast_) {
            PageScan arg{sizeof(PageScan), kScanCheckWpAsync, lo, hi, 0,
                         reinterpret_cast<u64>(vec), 1, 0, 0, kWritten, 0, kWritten};
            return ioctl(pagemap_, kPagemapScan, &arg) == 0 && arg.walk_end == hi &&
                   resident(lo, hi);
        }
        PageScan arg{sizeof(PageScan), kScanCheckWpAsync, lo, hi, 0,
                     reinterpret_cast<u64>(vec), 2, 0, 0, 0, 0, kWritten | kPresent | kSwapped};
        if (ioctl(pagemap_, kPagemapScan, &arg) != 1) return false;
        return vec[0].start == lo && vec[0].end == hi && !(vec[0].categories & kWritten) &&
               (vec[0].categories & (kPresent | kSwapped));
#else
        (void)lo, (void)hi;
        return false;
#endif
    }

#if defined(__linux__)
    // Whether every page of [lo, hi) is resident: mincore's byte per page, read eight at a time
    // (bit 0: resident; the other bits are reserved).  Called with the GIL held, so the one
    // buffer is never shared.
    bool resident(std::uintptr_t lo, std::uintptr_t hi) const {
        const std::size_t pages = (hi - lo) / page_, words = (pages + 7) / 8;
        residency_.assign(words, ~u64{0});
        auto *bytes = reinterpret_cast<unsigned char *>(residency_.data());
        if (mincore(reinterpret_cast<void *>(lo), hi - lo, bytes) != 0) return false;
        constexpr u64 kAll = 0x0101010101010101ull;
        u64 all = kAll;
        for (const u64 w : residency_) all &= w;
        return (all & kAll) == kAll;
    }
#endif

    int pagemap_;
    std::uintptr_t page_;
    bool fast_;
    std::vector<WatchedArray> arrays_;
    mutable std::vector<u64> residency_;
};

// ---- spmv as the functional API calls it, in one native call --------------------------------
// asp_mpk.spmv(A, x, out=y) on a matrix seen before runs right after a kernel has streamed the
// caches away, where each Python-level step (A's arrays and shape, the lookup of A's entry,
// the checks of x and out, the ctypes call) costs microseconds: together they were 4 % of a
// 2-D Poisson product.  A Product does all of it in one call for one matrix and its tuned
// kernel: A of the same type and shape with the watched arrays unchanged (WriteCheck), x and
// out plain aligned C-contiguous (n,) arrays of the kernel's dtype that do not overlap, then
// the kernel's product entry point (``int spmv(n, <matrix>, x, y, threads)``, two or three
// matrix arrays).  Anything else returns None and the Python path decides; so does a product
// that reports a value that is not finite (it raises the error there).
// What a native call for a watched matrix checks before it computes: that A is the matrix it
// was made for (its type, the arrays it holds, its shape) and unwritten since (the write check),
// and that x and out are plain vectors of the result's dtype.  Anything else is "None": the
// Python path decides.
// Forks this process has made into children (counted in the child by a pthread_atfork handler
// registered with the module): a call object made before a fork runs one thread in the child,
// where GNU OpenMP keeps the forking thread's pool of workers that the child does not have, so a
// parallel region of more than one thread waits for them forever (a multiprocessing worker
// forked right after the parent's calls hung at its first)
std::atomic<unsigned> forks{0};

class WatchedCall {
  protected:
    WatchedCall(py::object check, py::object type, py::tuple names, py::object shape, i64 n,
                py::dtype dtype)
        : check_obj_(std::move(check)), type_(std::move(type)), names_(std::move(names)),
          shape_(std::move(shape)), n_(n), dtype_(std::move(dtype)),
          made_after_(forks.load(std::memory_order_relaxed)) {
        check_ = check_obj_.is_none() ? nullptr : check_obj_.cast<WriteCheck *>();
        type_num_ = py::detail::array_descriptor_proxy(dtype_.ptr())->type_num;
    }

    // A is the matrix this call was made for, unwritten since it was watched (always, without
    // a write check: a snapshot's call, whose matrix is its own copy)
    bool vouched(py::handle A) const {
        if (check_ == nullptr) return true;
        if (reinterpret_cast<PyObject *>(Py_TYPE(A.ptr())) != type_.ptr()) return false;
        py::tuple arrays(names_.size());
        for (std::size_t i = 0; i < names_.size(); ++i) {
            PyObject *a = PyObject_GetAttr(A.ptr(), names_[i].ptr());
            if (a == nullptr) {
                PyErr_Clear();
                return false;
            }
            PyTuple_SET_ITEM(arrays.ptr(), static_cast<py::ssize_t>(i), a);
        }
        PyObject *shape = PyObject_GetAttrString(A.ptr(), "shape");
        if (shape == nullptr) {
            PyErr_Clear();
            return false;
        }
        const int same = PyObject_RichCompareBool(shape, shape_.ptr(), Py_EQ);
        Py_DECREF(shape);
        if (same != 1) {
            PyErr_Clear();
            return false;
        }
        return check_->clean(arrays);
    }

    // The threads a call runs: those it was made with, one in a child forked since (see forks)
    int threads(int made_with) const {
        return made_after_ == forks.load(std::memory_order_relaxed) ? made_with : 1;
    }

    // Whether the byte ranges [a, a + an) and [b, b + bn) overlap (x and the result: the
    // products read x as they write)
    static bool overlap(std::uintptr_t a, std::uintptr_t an, std::uintptr_t b,
                        std::uintptr_t bn) {
        return a < b + bn && b < a + an;
    }

    // The data of a plain (n,) array of the result's dtype: exactly numpy.ndarray, native byte
    // order, aligned, C-contiguous (and writeable for out); else nullptr.
    void *vector(py::handle a, bool writeable) const {
        const auto &api = py::detail::npy_api::get();
        if (reinterpret_cast<PyTypeObject *>(Py_TYPE(a.ptr())) != api.PyArray_Type_)
            return nullptr;
        const auto *arr = py::detail::array_proxy(a.ptr());
        const auto *d = py::detail::array_descriptor_proxy(arr->descr);
        int need = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                   py::detail::npy_api::NPY_ARRAY_ALIGNED_;
        if (writeable) need |= py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
        if (arr->nd != 1 || arr->dimensions[0] != n_ || d->type_num != type_num_ ||
            (d->byteorder != '=' && d->byteorder != '|') || (arr->flags & need) != need)
            return nullptr;
        return arr->data;
    }

    py::object check_obj_;
    WriteCheck *check_;
    py::object type_;
    py::tuple names_;
    py::object shape_;
    i64 n_;
    py::dtype dtype_;
    int type_num_;
    unsigned made_after_;
};

class Product : WatchedCall {
  public:
    Product(py::object check, py::object type, py::tuple names, py::object shape,
            std::uintptr_t entry, std::vector<std::uintptr_t> matrix, i64 n, py::dtype dtype,
            int threads, py::object keep)
        : WatchedCall(std::move(check), std::move(type), std::move(names), std::move(shape), n,
                      std::move(dtype)),
          entry_(entry), matrix_(std::move(matrix)), threads_(threads), keep_(std::move(keep)) {
        if (matrix_.size() != 2 && matrix_.size() != 3)
            throw py::value_error("Product: a product entry point takes 2 or 3 matrix arrays");
    }

    py::object call(py::handle A, py::handle x, py::handle out) const {
        const void *px = vector(x, false);
        if (px == nullptr) return py::none();
        py::object y;
        if (out.is_none())
            y = py::array(dtype_, std::vector<py::ssize_t>{static_cast<py::ssize_t>(n_)});
        else if (vector(out, true) != nullptr)
            y = py::reinterpret_borrow<py::object>(out);
        else
            return py::none();
        void *py_ = py::detail::array_proxy(y.ptr())->data;
        const auto bytes = static_cast<std::uintptr_t>(n_) * dtype_.itemsize();
        const auto xa = reinterpret_cast<std::uintptr_t>(px),
                   ya = reinterpret_cast<std::uintptr_t>(py_);
        if (overlap(xa, bytes, ya, bytes)) return py::none();
        if (!vouched(A)) return py::none();
        int bad;
        {
            Unlocked nogil(4 * n_);   // rows, a few entries each
            const auto m = matrix_.data();
            const auto p = [](std::uintptr_t a) { return reinterpret_cast<const void *>(a); };
            if (matrix_.size() == 2)
                bad = reinterpret_cast<int (*)(i64, const void *, const void *, const void *,
                                               void *, int)>(entry_)(n_, p(m[0]), p(m[1]), px,
                                                                     py_, threads(threads_));
            else
                bad = reinterpret_cast<int (*)(i64, const void *, const void *, const void *,
                                               const void *, void *, int)>(entry_)(
                    n_, p(m[0]), p(m[1]), p(m[2]), px, py_, threads(threads_));
        }
        return bad ? py::none() : y;
    }

  private:
    std::uintptr_t entry_;
    std::vector<std::uintptr_t> matrix_;
    int threads_;
    py::object keep_;  // what owns the kernel's code and the matrix arrays
};

// matrix_powers(A, x, k) of one watched matrix, monomial, as a new (k+1, n) array: CSR products
// over the analysed copy's arrays (csr_powers_t: SciPy's sums) in one native call, for x finite;
// what calls of a small matrix run while its kernel is specialised, and after, where they beat
// it.  Without a write check (check None) the call is a MatrixPowers object's, and A is not
// looked at.
class CSRPowers : WatchedCall {
  public:
    CSRPowers(py::object check, py::object type, py::tuple names, py::object shape,
              py::array indptr, py::array indices, py::array data, i64 k, int threads)
        : WatchedCall(std::move(check), std::move(type), std::move(names), std::move(shape),
                      static_cast<i64>(indptr.size()) - 1, data.dtype()),
          indptr_(std::move(indptr)), indices_(std::move(indices)), data_(std::move(data)),
          k_(k), threads_(threads), coefs_(3 * static_cast<std::size_t>(std::max<i64>(k, 1))) {
        Raw rp = raw(indptr_, "indptr"), ri = raw(indices_, "indices"), rd = raw(data_, "data");
        same_index_dtype(rp, ri);
        with_index(rp, "indptr", [](auto) { return 0; });
        with_value(rd, "data", [](auto) { return 0; });
        if (k < 0) throw py::value_error("CSRPowers: k must be >= 0");
        for (i64 j = 0; j < k; ++j) coefs_[static_cast<std::size_t>(j)] = 1.0;
    }

    // out: None (a new array), or a writeable C-contiguous (k+1, n) array of the dtype not
    // overlapping x (a result the caller recycles: a new one costs its first touch each call)
    py::object call(py::handle A, py::handle x, py::handle out) const {
        const void *px = vector(x, false);
        if (px == nullptr || !vouched(A)) return py::none();
        py::array res;
        if (out.is_none()) {
            res = py::array(dtype_, std::vector<py::ssize_t>{static_cast<py::ssize_t>(k_ + 1),
                                                             static_cast<py::ssize_t>(n_)});
        } else {
            const auto &api = py::detail::npy_api::get();
            if (reinterpret_cast<PyTypeObject *>(Py_TYPE(out.ptr())) != api.PyArray_Type_)
                return py::none();
            res = py::reinterpret_borrow<py::array>(out);
            const auto need = py::array::c_style;
            if (res.ndim() != 2 || res.shape(0) != k_ + 1 || res.shape(1) != n_ ||
                !res.dtype().is(dtype_) || !(res.flags() & need) || !res.writeable())
                return py::none();
            const auto lo = reinterpret_cast<std::uintptr_t>(res.data()),
                       xa = reinterpret_cast<std::uintptr_t>(px);
            const auto bytes = static_cast<std::uintptr_t>(res.nbytes()),
                       xbytes = static_cast<std::uintptr_t>(n_) * dtype_.itemsize();
            if (overlap(xa, xbytes, lo, bytes)) return py::none();
        }
        Raw rp = raw(indptr_, "indptr"), rd = raw(data_, "data");
        const bool finite = with_value(rd, "data", [&](auto dv) {
            using V = std::remove_const_t<std::remove_pointer_t<decltype(dv)>>;
            const V *xv = static_cast<const V *>(px);
            bool ok = true;
            for (i64 i = 0; i < n_; ++i) ok &= std::isfinite(xv[i]);
            return ok;
        });
        if (!finite) return py::none();   // the Python path names the problem
        void *po = res.mutable_data();
        with_index(rp, "indptr", [&](auto ip) {
            using I = std::remove_const_t<std::remove_pointer_t<decltype(ip)>>;
            return with_value(rd, "data", [&](auto dv) {
                using V = std::remove_const_t<std::remove_pointer_t<decltype(dv)>>;
                Unlocked nogil(std::max<i64>(k_, 1) * (n_ + static_cast<i64>(indices_.size())));
                csr_powers_t<I, V>(ip, static_cast<const I *>(indices_.data()), dv, n_,
                                   static_cast<const V *>(px), static_cast<V *>(po), 1, k_,
                                   coefs_.data(), true, threads(threads_));
                return 0;
            });
        });
        return std::move(res);
    }

  private:
    py::array indptr_, indices_, data_;
    i64 k_;
    int threads_;
    std::vector<double> coefs_;
};

// ---- the kernels' ctypes calls ------------------------------------------------------------------
// Data addresses of a call's arrays (None stays None).  numpy's ``a.ctypes.data`` builds a Python
// helper object per array: about 8 µs each right after a kernel has streamed the caches away,
// which for spmv was 3 % of the product.
py::tuple addresses(const py::args &arrays) {
    py::tuple out(arrays.size());
    for (std::size_t i = 0; i < arrays.size(); ++i) {
        py::handle a = arrays[i];
        if (a.is_none())
            out[i] = py::none();
        else if (py::isinstance<py::array>(a))
            out[i] = py::int_(reinterpret_cast<std::uintptr_t>(
                py::reinterpret_borrow<py::array>(a).data()));
        else
            throw py::type_error("addresses: numpy arrays or None expected");
    }
    return out;
}

}  // namespace

PYBIND11_MODULE(_planner, m) {
    m.doc() = "Native plan builder of asp-mpk (see asp_mpk.native for the Python interface).";
    py::module_::import("atexit").attr("register")(py::cpp_function(&wait_for_passes));
#if defined(__unix__) || defined(__APPLE__)
    pthread_atfork(nullptr, nullptr, [] {
        forks.fetch_add(1, std::memory_order_relaxed);
        // the passes other threads ran at the fork are not the child's: its exit waited for
        // them for ever (the forking thread holds the GIL, so it runs none)
        passes_without_gil.store(0);
    });
#endif
    m.def("addresses", &addresses, "Data addresses of numpy arrays (None for None), as ints.");
    m.def("copies", &copies, py::arg("arrays"), py::arg("threads") = 0,
          "New copies of C-contiguous arrays, copied over `threads` threads (0: one per "
          "hardware thread).");
    m.def("checksum", &checksum, py::arg("arrays"), py::arg("threads") = 0,
          "64-bit position-dependent checksum of the bytes of C-contiguous arrays, on at most "
          "`threads` threads (0: one per hardware thread); the value does not depend on it.");
    m.def("check_csr", &check_csr, py::arg("indptr"), py::arg("indices"), py::arg("ncols"),
          py::arg("threads") = 0,
          "Validate CSR structure (ValueError naming the problem); {'canonical': sorted+unique}.");
    m.def("value_flags", &value_flags, py::arg("data"), py::arg("threads") = 0,
          "{'finite': all values finite, 'zeros': some value is 0}.");
    m.def("analyse", &analyse, py::arg("indptr"), py::arg("indices"), py::arg("data"),
          py::arg("max_diagonals"), py::arg("block_sizes"),
          "Bandwidth, diagonals, symmetry, constant diagonals, dense blocks.");
    m.def("dia_arrays", &dia_arrays, py::arg("indptr"), py::arg("indices"), py::arg("data"),
          py::arg("offsets"), "(ndiag, n) DIA values D[d, i] = A[i, i + offsets[d]].");
    m.def("permuted_bandwidth", &permuted_bandwidth, py::arg("indptr"), py::arg("indices"),
          py::arg("perm"), "Bandwidth of A[perm][:, perm].");
    m.def("csr_powers", &csr_powers, py::arg("indptr"), py::arg("indices"), py::arg("data"),
          py::arg("xs"), py::arg("out"), py::arg("coefs"), py::arg("monomial"),
          py::arg("threads") = 1,
          "Matrix powers (or a three-term basis) by k CSR products into out; `threads` split "
          "the rows (0: one per hardware thread); the result does not depend on it.");
    m.def("csr_product_entry", &csr_product_entry, py::arg("indptr"), py::arg("data"),
          "Address of y = A x over CSR arrays of these dtypes, for Product (SciPy's sums).");
    m.def("cg_apply_dot", &cg_apply_dot, py::arg("indptr"), py::arg("indices"), py::arg("data"),
          py::arg("p"), py::arg("q"), py::arg("threads"),
          "q = A p for a float64 CSR matrix; returns p.q (threads split the rows)");
    m.def("cg_update", &cg_update, py::arg("alpha"), py::arg("x"), py::arg("p"), py::arg("r"),
          py::arg("q"), py::arg("threads"), "x += alpha p, r -= alpha q; returns r.r");
    m.def("cg_direction", &cg_direction, py::arg("beta"), py::arg("r"), py::arg("p"),
          py::arg("threads"), "p = r + beta p");
    m.def("closures", &closures, py::arg("indptr"), py::arg("indices"), py::arg("order"),
          py::arg("bounds"), py::arg("k"), py::arg("sym"), py::arg("max_entries"),
          "PA1 ghost closures and local CSR matrices (None when larger than max_entries).");
    py::class_<WriteCheck>(m, "WriteCheck",
                           "The arrays as write-watched and checksummed (see asp_mpk.writewatch).")
        .def(py::init<int, const py::tuple &, std::uintptr_t, bool>(), py::arg("pagemap"),
             py::arg("arrays"), py::arg("page"), py::arg("fast"))
        .def("clean", &WriteCheck::clean, py::arg("arrays"),
             "True when the arrays are the same buffers with the same layout and end bytes, "
             "and no page of them was written since they were protected.");
    py::class_<Product>(m, "Product",
                        "spmv of one watched matrix by its tuned kernel, in one native call.")
        .def(py::init<py::object, py::object, py::tuple, py::object, std::uintptr_t,
                      std::vector<std::uintptr_t>, i64, py::dtype, int, py::object>(),
             py::arg("check"), py::arg("type"), py::arg("names"), py::arg("shape"),
             py::arg("entry"), py::arg("matrix"), py::arg("n"), py::arg("dtype"),
             py::arg("threads"), py::arg("keep"))
        .def("__call__", &Product::call, py::arg("A"), py::arg("x"), py::arg("out"),
             "A @ x into out (a new array when None); None where the Python path must decide.");
    py::class_<CSRPowers>(m, "CSRPowers",
                          "matrix_powers of one watched matrix by CSR products, in one native "
                          "call.")
        .def(py::init<py::object, py::object, py::tuple, py::object, py::array, py::array,
                      py::array, i64, int>(),
             py::arg("check"), py::arg("type"), py::arg("names"), py::arg("shape"),
             py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("k"),
             py::arg("threads"))
        .def("__call__", &CSRPowers::call, py::arg("A"), py::arg("x"), py::arg("out"),
             "[x, A x, ..., A^k x] into out (a new array when None); None where the Python "
             "path must decide.");
}

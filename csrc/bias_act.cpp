// bias_act CPU kernel: fused bias + activation + gain + clamp and its two gradient modes, with
// the bias gradient summed in the same pass as the input gradient (mode 1, db != nullptr).
//
// Layouts: [outer, C, inner] with inner > 1 (NCHW feature maps) runs one row of `inner`
// contiguous values per (outer, channel), bias constant along the row; [outer, C] (fully
// connected layers, and channels-last maps viewed as [N*H*W, C]) runs rows of C with the bias
// varying along them. Every inner loop is a plain `omp simd` loop over restrict pointers, one
// template instance per (activation, mode, clamp), with the clamp and the activation's kinks
// written as selects (min/max/blend) so that AVX2 vectorizes them as well as AVX-512 does (an
// `if` that zeroes the gradient, or a lambda over captured pointers, kept GCC from vectorizing
// the NCHW loop at all: that made the forward slower than PyTorch's on AVX2 machines).
#include "bias_act.h"

#include <algorithm>
#include <vector>

#include "bias_act_math.h"

namespace {

template <int ACT, int MODE, bool CLAMP, typename T>
struct Elem {
    T alpha, gain, clamp;
    inline T operator()(T z, T dy, T ddz) const {
        if constexpr (MODE == 0) {
            T v = lg::act_f<ACT>(z, alpha) * gain;
            if constexpr (CLAMP) v = std::min(std::max(v, -clamp), clamp);
            return v;
        } else {
            T g = MODE == 1 ? dy * gain * lg::act_d1<ACT>(z, alpha)
                            : ddz * dy * gain * lg::act_d2<ACT>(z, alpha);
            if constexpr (CLAMP) {
                // torch.clamp's gradient passes where -clamp <= v <= clamp.
                const T v = lg::act_f<ACT>(z, alpha) * gain;
                g = (v >= -clamp && v <= clamp) ? g : T(0);
            }
            return g;
        }
    }
};

// One NCHW row: bias constant; returns the sum of the outputs when SUM (mode 1's db).
template <int MODE, bool SUM, typename E, typename T>
inline T row_const_bias(const E& e, int64_t n, const T* __restrict x, T bias,
                        const T* __restrict dy, const T* __restrict ddz, T* __restrict out) {
    T s = T(0);
    const E el = e;  // see row_vec_bias
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) {
        const T v = el(x[i] + bias, MODE >= 1 ? dy[i] : T(0), MODE == 2 ? ddz[i] : T(0));
        out[i] = v;
        if constexpr (SUM) s += v;
    }
    return s;
}

// One [C] row with a per-channel bias (b may be null); adds the outputs into acc when SUM.
template <int MODE, bool SUM, bool BIAS, typename E, typename T>
inline void row_vec_bias(const E& e, int64_t n, const T* __restrict x, const T* __restrict b,
                         const T* __restrict dy, const T* __restrict ddz, T* __restrict out,
                         T* __restrict acc) {
    const E el = e;  // a local copy: through the reference GCC reloaded (and did not vectorize)
#pragma omp simd   // the constants per element; [64, 512] lrelu+clamp ran 40x slower
    for (int64_t c = 0; c < n; ++c) {
        const T v = el(x[c] + (BIAS ? b[c] : T(0)), MODE >= 1 ? dy[c] : T(0),
                      MODE == 2 ? ddz[c] : T(0));
        out[c] = v;
        if constexpr (SUM) acc[c] += v;
    }
}

// Rows of [outer, C] per db partial: fixed, so the summation order (and the result) does not
// depend on the thread count.
constexpr int64_t kRowBlock = 64;

template <int ACT, int MODE, bool CLAMP, typename T>
void run(const BiasActParams& p, const T* __restrict x, const T* __restrict b,
         const T* __restrict dy, const T* __restrict ddz, T* __restrict out, T* __restrict db) {
    const Elem<ACT, MODE, CLAMP, T> e{T(p.alpha), T(p.gain), T(p.clamp)};
    const int64_t C = p.channels, inner = p.inner, outer = p.outer;
    const bool sum = MODE == 1 && db != nullptr;
    if (inner == 1) {
        // [outer, C]: the bias (and db) varies along the contiguous axis.
        if (MODE != 1 || !sum) {
#pragma omp parallel for num_threads(p.num_threads) schedule(static)
            for (int64_t o = 0; o < outer; ++o) {
                const int64_t k = o * C;
                const T* d = MODE >= 1 ? dy + k : nullptr;
                const T* dd = MODE == 2 ? ddz + k : nullptr;
                if (p.has_bias) row_vec_bias<MODE, false, true>(e, C, x + k, b, d, dd, out + k, (T*)nullptr);
                else row_vec_bias<MODE, false, false>(e, C, x + k, b, d, dd, out + k, (T*)nullptr);
            }
            return;
        }
        if constexpr (MODE != 1) return;
        const int64_t blocks = (outer + kRowBlock - 1) / kRowBlock;
        std::vector<T> part(static_cast<size_t>(blocks) * C, T(0));
        const int threads = static_cast<int>(std::min<int64_t>(p.num_threads, blocks));
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            T* acc = part.data() + blk * C;
            for (int64_t o = blk * kRowBlock; o < std::min(outer, (blk + 1) * kRowBlock); ++o) {
                const int64_t k = o * C;
                row_vec_bias<MODE, true, true>(e, C, x + k, b, dy + k, (const T*)nullptr, out + k, acc);
            }
        }
        for (int64_t c = 0; c < C; ++c) {
            double s = 0.0;
            for (int64_t blk = 0; blk < blocks; ++blk) s += double(part[blk * C + c]);
            db[c] = T(s);
        }
        return;
    }
    // [outer, C, inner]: one bias per contiguous row of `inner` values.
    const int64_t rows = outer * C;
    std::vector<T> part(sum ? static_cast<size_t>(rows) : 0);
#pragma omp parallel for num_threads(p.num_threads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t k = r * inner;
        const T bias = p.has_bias ? b[r % C] : T(0);
        const T* d = MODE >= 1 ? dy + k : nullptr;
        const T* dd = MODE == 2 ? ddz + k : nullptr;
        if (sum) part[r] = row_const_bias<MODE, true>(e, inner, x + k, bias, d, dd, out + k);
        else row_const_bias<MODE, false>(e, inner, x + k, bias, d, dd, out + k);
    }
    if (sum)
        for (int64_t c = 0; c < C; ++c) {
            double s = 0.0;
            for (int64_t o = 0; o < outer; ++o) s += double(part[o * C + c]);
            db[c] = T(s);
        }
}

template <int ACT, typename T>
void by_mode(const BiasActParams& p, const T* x, const T* b, const T* dy, const T* ddz, T* out, T* db) {
    const bool cl = p.clamp >= 0;
    switch (p.mode) {
        case 0: return cl ? run<ACT, 0, true>(p, x, b, dy, ddz, out, db) : run<ACT, 0, false>(p, x, b, dy, ddz, out, db);
        case 1: return cl ? run<ACT, 1, true>(p, x, b, dy, ddz, out, db) : run<ACT, 1, false>(p, x, b, dy, ddz, out, db);
        default: return cl ? run<ACT, 2, true>(p, x, b, dy, ddz, out, db) : run<ACT, 2, false>(p, x, b, dy, ddz, out, db);
    }
}

}  // namespace

template <typename T>
void bias_act_cpu(const BiasActParams& p, const T* x, const T* b, const T* dy, const T* ddz, T* out,
                  T* db) {
    if (p.mode != 1 || !p.has_bias) db = nullptr;
    switch (p.act) {
        case 1: return by_mode<1>(p, x, b, dy, ddz, out, db);
        case 2: return by_mode<2>(p, x, b, dy, ddz, out, db);
        case 3: return by_mode<3>(p, x, b, dy, ddz, out, db);
        case 4: return by_mode<4>(p, x, b, dy, ddz, out, db);
        case 5: return by_mode<5>(p, x, b, dy, ddz, out, db);
        case 6: return by_mode<6>(p, x, b, dy, ddz, out, db);
        case 7: return by_mode<7>(p, x, b, dy, ddz, out, db);
        case 8: return by_mode<8>(p, x, b, dy, ddz, out, db);
        default: return by_mode<9>(p, x, b, dy, ddz, out, db);
    }
}

template void bias_act_cpu<float>(const BiasActParams&, const float*, const float*, const float*,
                                  const float*, float*, float*);
template void bias_act_cpu<double>(const BiasActParams&, const double*, const double*,
                                   const double*, const double*, double*, double*);

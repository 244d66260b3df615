// bias_act CPU kernel: fused bias + activation + gain + clamp and its two gradient modes,
// OpenMP over rows, one template instance per (activation, mode, clamp) so the inner loops
// carry no branches on the arguments and vectorize where the math allows.
#include "bias_act.h"

#include "bias_act_math.h"

namespace {

template <int ACT, int MODE, bool CLAMP, typename T>
void run(const BiasActParams& p, const T* __restrict x, const T* __restrict b,
         const T* __restrict dy, const T* __restrict ddz, T* __restrict out) {
    const T alpha = T(p.alpha), gain = T(p.gain), clamp = T(p.clamp);
    const int64_t C = p.channels, inner = p.inner;
    auto elem = [&](int64_t i, T bias) -> T {
        const T d = MODE >= 1 ? dy[i] : T(0);
        const T dd = MODE == 2 ? ddz[i] : T(0);
        return lg::bias_act_elem<ACT, MODE, CLAMP, T>(x[i] + bias, alpha, gain, clamp, d, dd);
    };
    if (inner == 1 && p.has_bias) {
        // [outer, C] (fully connected layers): the bias varies along the contiguous axis.
#pragma omp parallel for num_threads(p.num_threads) schedule(static)
        for (int64_t o = 0; o < p.outer; ++o)
            for (int64_t c = 0; c < C; ++c) out[o * C + c] = elem(o * C + c, b[c]);
    } else {
        // [outer, C, inner] (feature maps): one bias per contiguous run of `inner` values.
#pragma omp parallel for num_threads(p.num_threads) schedule(static)
        for (int64_t r = 0; r < p.outer * C; ++r) {
            const T bias = p.has_bias ? b[r % C] : T(0);
            for (int64_t i = r * inner; i < (r + 1) * inner; ++i) out[i] = elem(i, bias);
        }
    }
}

template <int ACT, typename T>
void by_mode(const BiasActParams& p, const T* x, const T* b, const T* dy, const T* ddz, T* out) {
    const bool cl = p.clamp >= 0;
    switch (p.mode) {
        case 0: return cl ? run<ACT, 0, true>(p, x, b, dy, ddz, out) : run<ACT, 0, false>(p, x, b, dy, ddz, out);
        case 1: return cl ? run<ACT, 1, true>(p, x, b, dy, ddz, out) : run<ACT, 1, false>(p, x, b, dy, ddz, out);
        default: return cl ? run<ACT, 2, true>(p, x, b, dy, ddz, out) : run<ACT, 2, false>(p, x, b, dy, ddz, out);
    }
}

}  // namespace

template <typename T>
void bias_act_cpu(const BiasActParams& p, const T* x, const T* b, const T* dy, const T* ddz, T* out) {
    switch (p.act) {
        case 1: return by_mode<1>(p, x, b, dy, ddz, out);
        case 2: return by_mode<2>(p, x, b, dy, ddz, out);
        case 3: return by_mode<3>(p, x, b, dy, ddz, out);
        case 4: return by_mode<4>(p, x, b, dy, ddz, out);
        case 5: return by_mode<5>(p, x, b, dy, ddz, out);
        case 6: return by_mode<6>(p, x, b, dy, ddz, out);
        case 7: return by_mode<7>(p, x, b, dy, ddz, out);
        case 8: return by_mode<8>(p, x, b, dy, ddz, out);
        default: return by_mode<9>(p, x, b, dy, ddz, out);
    }
}

template void bias_act_cpu<float>(const BiasActParams&, const float*, const float*, const float*,
                                  const float*, float*);
template void bias_act_cpu<double>(const BiasActParams&, const double*, const double*,
                                   const double*, const double*, double*);

// scaled_bias_act CPU kernels (see scaled_bias_act.h): OpenMP over samples, inner loops over
// the contiguous axis (channels for NHWC, pixels for NCHW) that the compiler vectorizes.
//
// Why: after a modulated conv, StyleGAN2 demodulates (x * scale), adds noise, adds the bias and
// applies lrelu * gain; as separate ops that is two passes forward and about six backward over
// the largest tensors of the generator. Here it is one each way.
#include "scaled_bias_act.h"

#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

template <int ACT, typename T>
inline T act_fwd(T v, T alpha) {
    if constexpr (ACT == 2) return v > T(0) ? v : T(0);
    if constexpr (ACT == 3) return v > T(0) ? v : v * alpha;
    return v;
}

// gain * act'(v) * [not clamped], from y = clamp(act(v) * gain) with gain > 0.
template <int ACT, bool CLAMP, typename T>
inline T grad_factor(T y, T alpha, T gain, T clamp) {
    T g = gain;
    if constexpr (ACT == 2) g = y > T(0) ? gain : T(0);
    if constexpr (ACT == 3) g = y > T(0) ? gain : gain * alpha;
    if constexpr (CLAMP) g = (y > -clamp && y < clamp) ? g : T(0);
    return g;
}

template <int ACT, bool CLAMP, typename T>
void fwd(const ScaledBiasActParams& p, const T* __restrict x, const T* __restrict scale,
         const T* __restrict noise, const T* __restrict b, T* __restrict y) {
    const T alpha = T(p.alpha), gain = T(p.gain), clamp = T(p.clamp);
    const int64_t N = p.N, C = p.C, HW = p.HW;
    auto out = [&](T v) {
        v = act_fwd<ACT>(v, alpha) * gain;
        if constexpr (CLAMP) v = std::min(std::max(v, -clamp), clamp);
        return v;
    };
    if (p.nhwc) {
#pragma omp parallel for num_threads(p.num_threads) schedule(static)
        for (int64_t r = 0; r < N * HW; ++r) {
            const int64_t n = r / HW;
            const T nz = p.has_noise ? noise[r] : T(0);
            const T* s = p.has_scale ? scale + n * C : nullptr;
            const T* xr = x + r * C;
            T* yr = y + r * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c)
                yr[c] = out(xr[c] * (s ? s[c] : T(1)) + nz + (p.has_bias ? b[c] : T(0)));
        }
    } else {
#pragma omp parallel for num_threads(p.num_threads) schedule(static)
        for (int64_t r = 0; r < N * C; ++r) {
            const int64_t n = r / C, c = r % C;
            const T s = p.has_scale ? scale[r] : T(1), bias = p.has_bias ? b[c] : T(0);
            const T* nz = p.has_noise ? noise + n * HW : nullptr;
            const T* xr = x + r * HW;
            T* yr = y + r * HW;
#pragma omp simd
            for (int64_t i = 0; i < HW; ++i) yr[i] = out(xr[i] * s + (nz ? nz[i] : T(0)) + bias);
        }
    }
}

// Parallel over samples: a sample's dscale and dnoise entries belong to one thread; db is
// summed per thread, then across threads.
template <int ACT, bool CLAMP, typename T>
void bwd(const ScaledBiasActParams& p, const T* __restrict dy, const T* __restrict x,
         const T* __restrict y, const T* __restrict scale, T* __restrict dx, T* __restrict dscale,
         T* __restrict dnoise, T* __restrict db) {
    const T alpha = T(p.alpha), gain = T(p.gain), clamp = T(p.clamp);
    const int64_t N = p.N, C = p.C, HW = p.HW;
    const int threads = std::max(1, std::min<int>(p.num_threads, static_cast<int>(N)));
    std::vector<T> db_part(db ? static_cast<size_t>(threads) * C : 0, T(0));
#pragma omp parallel num_threads(threads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        T* dbt = db ? db_part.data() + static_cast<size_t>(tid) * C : nullptr;
        std::vector<T> acc(p.nhwc ? C : 0);
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; ++n) {
            const T* s = p.has_scale ? scale + n * C : nullptr;
            if (p.nhwc) {
                std::fill(acc.begin(), acc.end(), T(0));
                for (int64_t i = 0; i < HW; ++i) {
                    const int64_t o = (n * HW + i) * C;
                    T nsum = T(0);
#pragma omp simd reduction(+ : nsum)
                    for (int64_t c = 0; c < C; ++c) {
                        const T t = dy[o + c] * grad_factor<ACT, CLAMP>(y[o + c], alpha, gain, clamp);
                        if (dx) dx[o + c] = s ? t * s[c] : t;
                        acc[c] += t * x[o + c];
                        if (dbt) dbt[c] += t;
                        nsum += t;
                    }
                    if (dnoise) dnoise[n * HW + i] = nsum;
                }
                if (dscale)
                    for (int64_t c = 0; c < C; ++c) dscale[n * C + c] = acc[c];
            } else {
                T* dn = dnoise ? dnoise + n * HW : nullptr;
                if (dn) std::fill(dn, dn + HW, T(0));
                for (int64_t c = 0; c < C; ++c) {
                    const int64_t o = (n * C + c) * HW;
                    const T sc = s ? s[c] : T(1);
                    T ssum = T(0), bsum = T(0);
#pragma omp simd reduction(+ : ssum, bsum)
                    for (int64_t i = 0; i < HW; ++i) {
                        const T t = dy[o + i] * grad_factor<ACT, CLAMP>(y[o + i], alpha, gain, clamp);
                        if (dx) dx[o + i] = t * sc;
                        ssum += t * x[o + i];
                        bsum += t;
                        if (dn) dn[i] += t;
                    }
                    if (dscale) dscale[n * C + c] = ssum;
                    if (dbt) dbt[c] += bsum;
                }
            }
        }
    }
    if (db) {
        std::fill(db, db + C, T(0));
        for (int t = 0; t < threads; ++t)
            for (int64_t c = 0; c < C; ++c) db[c] += db_part[static_cast<size_t>(t) * C + c];
    }
}

}  // namespace

// One instance per (activation, clamp on/off), so the inner loops carry no branches on them.
#define LG_SBA_DISPATCH(CALL)                                               \
    do {                                                                    \
        const bool cl = p.clamp >= 0;                                       \
        switch (p.act) {                                                    \
            case 2: if (cl) CALL(2, true); else CALL(2, false); break;     \
            case 3: if (cl) CALL(3, true); else CALL(3, false); break;     \
            default: if (cl) CALL(1, true); else CALL(1, false); break;    \
        }                                                                   \
    } while (0)

template <typename T>
void scaled_bias_act_fwd_cpu(const ScaledBiasActParams& p, const T* x, const T* scale, const T* noise,
                             const T* b, T* y) {
#define LG_SBA_FWD(A, K) fwd<A, K, T>(p, x, scale, noise, b, y)
    LG_SBA_DISPATCH(LG_SBA_FWD);
#undef LG_SBA_FWD
}

template <typename T>
void scaled_bias_act_bwd_cpu(const ScaledBiasActParams& p, const T* dy, const T* x, const T* y,
                             const T* scale, T* dx, T* dscale, T* dnoise, T* db) {
#define LG_SBA_BWD(A, K) bwd<A, K, T>(p, dy, x, y, scale, dx, dscale, dnoise, db)
    LG_SBA_DISPATCH(LG_SBA_BWD);
#undef LG_SBA_BWD
}

template void scaled_bias_act_fwd_cpu<float>(const ScaledBiasActParams&, const float*, const float*,
                                             const float*, const float*, float*);
template void scaled_bias_act_fwd_cpu<double>(const ScaledBiasActParams&, const double*, const double*,
                                              const double*, const double*, double*);
template void scaled_bias_act_bwd_cpu<float>(const ScaledBiasActParams&, const float*, const float*,
                                             const float*, const float*, float*, float*, float*, float*);
template void scaled_bias_act_bwd_cpu<double>(const ScaledBiasActParams&, const double*, const double*,
                                              const double*, const double*, double*, double*, double*,
                                              double*);

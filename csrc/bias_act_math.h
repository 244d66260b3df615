// bias_act math: the activations and their first and second derivatives, shared by the CPU
// (.cpp) and CUDA (.cu) kernels so both compute exactly the same formulas.
#pragma once
#include <math.h>

#ifdef __CUDACC__
#define LG_HD __host__ __device__ __forceinline__
#else
#define LG_HD inline
#endif

namespace lg {

LG_HD float exp_(float v) { return expf(v); }
LG_HD double exp_(double v) { return exp(v); }
LG_HD float expm1_(float v) { return expm1f(v); }
LG_HD double expm1_(double v) { return expm1(v); }
LG_HD float log1p_(float v) { return log1pf(v); }
LG_HD double log1p_(double v) { return log1p(v); }
LG_HD float tanh_(float v) { return tanhf(v); }
LG_HD double tanh_(double v) { return tanh(v); }

template <typename A>
LG_HD A sigmoid_(A z) { return A(1) / (A(1) + exp_(-z)); }

// SELU constants (Klambauer et al., 2017), as in torch.nn.functional.selu.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
// softplus returns z itself above this, as torch.nn.functional.softplus does.
constexpr double kSoftplusThreshold = 20.0;

template <int ACT, typename A>
LG_HD A act_f(A z, A alpha) {
    if constexpr (ACT == 1) return z;
    if constexpr (ACT == 2) return z > A(0) ? z : A(0);
    if constexpr (ACT == 3) return z > A(0) ? z : z * alpha;
    if constexpr (ACT == 4) return tanh_(z);
    if constexpr (ACT == 5) return sigmoid_(z);
    if constexpr (ACT == 6) return z > A(0) ? z : expm1_(z);
    if constexpr (ACT == 7) return z > A(0) ? A(kSeluScale) * z : A(kSeluScale * kSeluAlpha) * expm1_(z);
    if constexpr (ACT == 8) return z > A(kSoftplusThreshold) ? z : log1p_(exp_(z));
    if constexpr (ACT == 9) return z * sigmoid_(z);
    return z;
}

template <int ACT, typename A>
LG_HD A act_d1(A z, A alpha) {
    if constexpr (ACT == 1) return A(1);
    if constexpr (ACT == 2) return z > A(0) ? A(1) : A(0);
    if constexpr (ACT == 3) return z > A(0) ? A(1) : alpha;
    if constexpr (ACT == 4) { const A t = tanh_(z); return A(1) - t * t; }
    if constexpr (ACT == 5) { const A s = sigmoid_(z); return s * (A(1) - s); }
    if constexpr (ACT == 6) return z > A(0) ? A(1) : exp_(z);
    if constexpr (ACT == 7) return z > A(0) ? A(kSeluScale) : A(kSeluScale * kSeluAlpha) * exp_(z);
    if constexpr (ACT == 8) return z > A(kSoftplusThreshold) ? A(1) : sigmoid_(z);
    if constexpr (ACT == 9) { const A s = sigmoid_(z); return s * (A(1) + z * (A(1) - s)); }
    return A(1);
}

template <int ACT, typename A>
LG_HD A act_d2(A z, A alpha) {
    (void)alpha;
    if constexpr (ACT == 4) { const A t = tanh_(z); return A(-2) * t * (A(1) - t * t); }
    if constexpr (ACT == 5) { const A s = sigmoid_(z); return s * (A(1) - s) * (A(1) - A(2) * s); }
    if constexpr (ACT == 6) return z > A(0) ? A(0) : exp_(z);
    if constexpr (ACT == 7) return z > A(0) ? A(0) : A(kSeluScale * kSeluAlpha) * exp_(z);
    if constexpr (ACT == 8) {
        if (z > A(kSoftplusThreshold)) return A(0);
        const A s = sigmoid_(z);
        return s * (A(1) - s);
    }
    if constexpr (ACT == 9) {
        const A s = sigmoid_(z);
        return s * (A(1) - s) * (A(2) + z * (A(1) - A(2) * s));
    }
    return A(0);  // linear, relu, lrelu: piecewise linear
}

// One element of mode 0/1/2 (see bias_act.h). `clamp` is only read when CLAMP is true; the
// clamp's gradient passes where -clamp <= act(z)*gain <= clamp, as torch.clamp's does.
template <int ACT, int MODE, bool CLAMP, typename A>
LG_HD A bias_act_elem(A z, A alpha, A gain, A clamp, A dy, A ddz) {
    if constexpr (MODE == 0) {
        A v = act_f<ACT>(z, alpha) * gain;
        if constexpr (CLAMP) v = v < -clamp ? -clamp : (v > clamp ? clamp : v);
        return v;
    } else {
        A g = MODE == 1 ? dy * gain * act_d1<ACT>(z, alpha) : ddz * dy * gain * act_d2<ACT>(z, alpha);
        if constexpr (CLAMP) {
            const A v = act_f<ACT>(z, alpha) * gain;
            if (v < -clamp || v > clamp) g = A(0);
        }
        return g;
    }
}

}  // namespace lg

// scaled_bias_act: the epilogue of a modulated convolution in one pass,
//   y = clamp(act(x * scale[n,c] + noise[n,h,w] + b[c]) * gain),
// and its gradient w.r.t. all four inputs in one pass. CPU only; piecewise-linear activations
// (the derivative is read from the sign of y, so gain must be > 0).
#pragma once
#include <cstdint>

struct ScaledBiasActParams {
    int64_t N, C, HW;  // x is [N, C, H*W] (nhwc false) or [N, H*W, C] (nhwc true) in memory
    bool nhwc;
    bool has_scale, has_noise, has_bias;  // scale [N, C], noise [N, H*W], b [C]
    int act;                               // 1 linear, 2 relu, 3 lrelu
    double alpha, gain, clamp;             // clamp < 0: off
    int num_threads;
};

template <typename T>
void scaled_bias_act_fwd_cpu(const ScaledBiasActParams& p, const T* x, const T* scale, const T* noise,
                             const T* b, T* y);

// dx like x; dscale [N, C]; dnoise [N, H*W]; db [C] (each may be null when not needed).
template <typename T>
void scaled_bias_act_bwd_cpu(const ScaledBiasActParams& p, const T* dy, const T* x, const T* y,
                             const T* scale, T* dx, T* dscale, T* dnoise, T* db);

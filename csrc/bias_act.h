// bias_act kernels: the plain C++ interface shared by the CPU/CUDA kernels and their bindings.
#pragma once
#include <cstdint>

// x is viewed as [outer, channels, inner]; the bias is indexed by the channel.
// mode 0: out = clamp(act(x + b) * gain)                 (forward)
// mode 1: out = dy * gain * act'(x + b) * [not clamped]  (gradient w.r.t. x)
// mode 2: out = ddz * dy * gain * act''(x + b) * [not clamped]  (its gradient w.r.t. x)
// act: 1 linear, 2 relu, 3 lrelu, 4 tanh, 5 sigmoid, 6 elu, 7 selu, 8 softplus, 9 swish
// (the cuda_idx of lightning_gans.ops.bias_act.ACTIVATIONS); clamp < 0 means off.
struct BiasActParams {
    int64_t outer, channels, inner;
    int act, mode;
    double alpha, gain, clamp;
    bool has_bias;
    int num_threads;  // CPU only
};

// db (mode 1 with a bias only, else ignored; may be null): also writes the bias gradient,
// out summed over every axis but the channel's, in the same pass.
template <typename T>
void bias_act_cpu(const BiasActParams& p, const T* x, const T* b, const T* dy, const T* ddz, T* out,
                  T* db = nullptr);

// dtype: 0 float32, 1 float64, 2 float16, 3 bfloat16. Returns nullptr or the CUDA error string.
const char* bias_act_cuda(const BiasActParams& p, int dtype, const void* x, const void* b,
                          const void* dy, const void* ddz, void* out, void* stream);

// bias_act CUDA kernel: elementwise, grid-stride; one kernel per (dtype, activation), with the
// mode and clamp as uniform branches (the op is memory-bound).
#include "bias_act.h"
#include "bias_act_math.h"
#include "cuda_types.cuh"

namespace {

template <int ACT, typename A>
__device__ __forceinline__ A eval(int mode, bool clamped, A z, A alpha, A gain, A clamp, A dy, A ddz) {
    if (mode == 0)
        return clamped ? lg::bias_act_elem<ACT, 0, true>(z, alpha, gain, clamp, dy, ddz)
                       : lg::bias_act_elem<ACT, 0, false>(z, alpha, gain, clamp, dy, ddz);
    if (mode == 1)
        return clamped ? lg::bias_act_elem<ACT, 1, true>(z, alpha, gain, clamp, dy, ddz)
                       : lg::bias_act_elem<ACT, 1, false>(z, alpha, gain, clamp, dy, ddz);
    return clamped ? lg::bias_act_elem<ACT, 2, true>(z, alpha, gain, clamp, dy, ddz)
                   : lg::bias_act_elem<ACT, 2, false>(z, alpha, gain, clamp, dy, ddz);
}

template <typename T, int ACT>
__global__ void bias_act_kernel(BiasActParams p, int64_t numel, const T* __restrict__ x,
                                const T* __restrict__ b, const T* __restrict__ dy,
                                const T* __restrict__ ddz, T* __restrict__ out) {
    using A = typename lg::AccType<T>::type;
    const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
    const bool clamped = p.clamp >= 0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
         i += int64_t(blockDim.x) * gridDim.x) {
        A z = lg::load(x + i);
        if (p.has_bias) z += lg::load(b + (i / p.inner) % p.channels);
        const A d = p.mode >= 1 ? lg::load(dy + i) : A(0);
        const A dd = p.mode == 2 ? lg::load(ddz + i) : A(0);
        lg::store(out + i, eval<ACT, A>(p.mode, clamped, z, alpha, gain, clamp, d, dd));
    }
}

template <typename T>
const char* launch(const BiasActParams& p, const void* x, const void* b, const void* dy,
                   const void* ddz, void* out, cudaStream_t stream) {
    const int64_t numel = p.outer * p.channels * p.inner;
    const int block = 256;
    const int64_t want = (numel + block - 1) / block;
    const unsigned grid = unsigned(want < 65536 ? want : 65536);
    auto args = [&](auto kernel) {
        kernel<<<grid, block, 0, stream>>>(p, numel, static_cast<const T*>(x), static_cast<const T*>(b),
                                           static_cast<const T*>(dy), static_cast<const T*>(ddz),
                                           static_cast<T*>(out));
    };
    switch (p.act) {
        case 1: args(bias_act_kernel<T, 1>); break;
        case 2: args(bias_act_kernel<T, 2>); break;
        case 3: args(bias_act_kernel<T, 3>); break;
        case 4: args(bias_act_kernel<T, 4>); break;
        case 5: args(bias_act_kernel<T, 5>); break;
        case 6: args(bias_act_kernel<T, 6>); break;
        case 7: args(bias_act_kernel<T, 7>); break;
        case 8: args(bias_act_kernel<T, 8>); break;
        case 9: args(bias_act_kernel<T, 9>); break;
        default: return "bias_act_cuda: unknown activation";
    }
    return lg::launch_error();
}

}  // namespace

const char* bias_act_cuda(const BiasActParams& p, int dtype, const void* x, const void* b,
                          const void* dy, const void* ddz, void* out, void* stream) {
    auto s = static_cast<cudaStream_t>(stream);
    switch (dtype) {
        case 0: return launch<float>(p, x, b, dy, ddz, out, s);
        case 1: return launch<double>(p, x, b, dy, ddz, out, s);
        case 2: return launch<__half>(p, x, b, dy, ddz, out, s);
        case 3: return launch<__nv_bfloat16>(p, x, b, dy, ddz, out, s);
        default: return "bias_act_cuda: unsupported dtype";
    }
}

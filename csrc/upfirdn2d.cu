// upfirdn2d CUDA kernel: one thread per output pixel, visiting only the taps that meet a
// non-inserted input sample (polyphase), looping over planes along the grid's z axis.
#include "cuda_types.cuh"
#include "upfirdn2d.h"

namespace {

// First tap k in [0, up) with (base + k) % up == 0, and the input index it reads.
__device__ __forceinline__ void first_tap(int base, int up, int& k, int& i) {
    k = ((-base) % up + up) % up;
    i = (base + k) / up;  // exact division
}

template <typename T, typename A>
__global__ void upfirdn2d_kernel(Upfirdn2dParams p, const T* __restrict__ x, const A* __restrict__ f,
                                 bool flip, A gain, T* __restrict__ y) {
    const int ox = blockIdx.x * blockDim.x + threadIdx.x;
    const int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= p.out_w || oy >= p.out_h) return;
    int kx0, ix0, ky0, iy0;
    first_tap(ox * p.down_x - p.pad_x0, p.up_x, kx0, ix0);
    first_tap(oy * p.down_y - p.pad_y0, p.up_y, ky0, iy0);
    const size_t in_plane = size_t(p.in_h) * p.in_w, out_plane = size_t(p.out_h) * p.out_w;
    for (int64_t n = blockIdx.z; n < p.planes; n += gridDim.z) {
        const T* xp = x + n * in_plane;
        A acc = A(0);
        for (int ky = ky0, iy = iy0; ky < p.f_h; ky += p.up_y, ++iy) {
            if (iy < 0 || iy >= p.in_h) continue;
            const int fy = flip ? ky : p.f_h - 1 - ky;  // taps are the filter reversed unless flip
            const A wy = p.separable ? f[fy] : A(1);
            const A* frow = p.separable ? f : f + size_t(fy) * p.f_w;
            for (int kx = kx0, ix = ix0; kx < p.f_w; kx += p.up_x, ++ix) {
                if (ix < 0 || ix >= p.in_w) continue;
                const int fx = flip ? kx : p.f_w - 1 - kx;
                acc += wy * frow[fx] * lg::load(xp + size_t(iy) * p.in_w + ix);
            }
        }
        lg::store(y + n * out_plane + size_t(oy) * p.out_w + ox, acc * gain);
    }
}

template <typename T>
const char* launch(const Upfirdn2dParams& p, const void* x, const void* f, bool flip, double gain,
                   void* y, cudaStream_t stream) {
    using A = typename lg::AccType<T>::type;
    const dim3 block(32, 8);
    const dim3 grid((p.out_w + 31) / 32, (p.out_h + 7) / 8, unsigned(p.planes < 65535 ? p.planes : 65535));
    upfirdn2d_kernel<T, A><<<grid, block, 0, stream>>>(p, static_cast<const T*>(x),
                                                       static_cast<const A*>(f), flip, A(gain),
                                                       static_cast<T*>(y));
    return lg::launch_error();
}

}  // namespace

const char* upfirdn2d_cuda(const Upfirdn2dParams& p, int dtype, const void* x, const void* f,
                           bool flip_filter, double gain, void* y, void* stream) {
    auto s = static_cast<cudaStream_t>(stream);
    switch (dtype) {
        case 0: return launch<float>(p, x, f, flip_filter, gain, y, s);
        case 1: return launch<double>(p, x, f, flip_filter, gain, y, s);
        case 2: return launch<__half>(p, x, f, flip_filter, gain, y, s);
        case 3: return launch<__nv_bfloat16>(p, x, f, flip_filter, gain, y, s);
        default: return "upfirdn2d_cuda: unsupported dtype";
    }
}

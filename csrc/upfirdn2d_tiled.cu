// upfirdn2d CUDA kernel, shared-memory tiled (opt-in: LG_UPFIRDN2D=tiled). One block owns a
// 32 x 32 output tile of one image plane at a time: it stages the input samples that tile reads
// (the tile's footprint plus the filter halo, zero outside the image, converted to float) and the
// correlation taps in shared memory once, then each thread computes four outputs of one column
// from shared memory alone. The direct kernel (upfirdn2d.cu) instead reads every tap's sample from
// global memory per output pixel. Up/down factors are template parameters so that the polyphase
// tap loops unroll; the cases StyleGAN2 runs (filter only, up 2, down 2; filters up to 4 x 4,
// separable or 2-D; float32/float16/bfloat16) have instances, the rest go to the direct kernel.
#include "cuda_types.cuh"
#include "upfirdn2d.h"

namespace {

constexpr int kThreadsX = 32, kThreadsY = 8, kRowsPerThread = 4;
constexpr int kTileW = kThreadsX, kTileH = kThreadsY * kRowsPerThread;
constexpr int kMaxTaps = 4;  // filter width/height limit of the instances

// Input samples read along one axis by TILE consecutive outputs: their upsampled footprint
// spans (TILE - 1) * DOWN + kMaxTaps positions, of which at most this many are real samples.
template <int UP, int DOWN, int TILE>
__host__ __device__ constexpr int span() {
    return ((TILE - 1) * DOWN + kMaxTaps + UP - 1) / UP;
}

__device__ __forceinline__ int floor_div(int a, int b) { return (a >= 0 ? a : a - b + 1) / b; }

// Along one axis: for upsampled position u (output * down - pad0), the first tap k in [0, UP)
// that meets a real sample, and that sample's index relative to the tile's first staged sample.
template <int UP>
__device__ __forceinline__ void first_tap(int u, int start, int& k, int& s) {
    k = ((-u) % UP + UP) % UP;
    s = (u + k) / UP - start;  // exact division
}

template <typename T, int UP, int DOWN>
__global__ void __launch_bounds__(kThreadsX * kThreadsY)
upfirdn2d_tiled_kernel(Upfirdn2dParams p, const T* __restrict__ x, const float* __restrict__ f,
                       bool flip, float gain, T* __restrict__ y) {
    static_assert(kMaxTaps % UP == 0, "tap loops assume kMaxTaps is a multiple of UP");
    constexpr int SW = span<UP, DOWN, kTileW>(), SH = span<UP, DOWN, kTileH>();
    constexpr int kTapsPerAxis = kMaxTaps / UP;
    __shared__ float taps[kMaxTaps][kMaxTaps];  // correlation taps [ky][kx], gain folded in
    __shared__ float tile[SH][SW];

    const int tid = threadIdx.y * kThreadsX + threadIdx.x;
    if (tid < kMaxTaps * kMaxTaps) {  // the filter reversed unless flip, as the direct kernel
        const int ky = tid / kMaxTaps, kx = tid % kMaxTaps;
        float w = 0.f;
        if (ky < p.f_h && kx < p.f_w) {
            const int fy = flip ? ky : p.f_h - 1 - ky, fx = flip ? kx : p.f_w - 1 - kx;
            w = (p.separable ? f[fy] * f[fx] : f[fy * p.f_w + fx]) * gain;
        }
        taps[ky][kx] = w;
    }

    const int ox0 = blockIdx.x * kTileW, oy0 = blockIdx.y * kTileH;
    const int ux0 = ox0 * DOWN - p.pad_x0, uy0 = oy0 * DOWN - p.pad_y0;
    const int ix_start = floor_div(ux0 + UP - 1, UP), iy_start = floor_div(uy0 + UP - 1, UP);
    const int ox = ox0 + threadIdx.x;
    int kx0, sx;
    first_tap<UP>(ox * DOWN - p.pad_x0, ix_start, kx0, sx);
    const size_t in_plane = size_t(p.in_h) * p.in_w, out_plane = size_t(p.out_h) * p.out_w;

    for (int64_t n = blockIdx.z; n < p.planes; n += gridDim.z) {
        const T* xp = x + n * in_plane;
        __syncthreads();  // the taps are written; the previous plane's tile is no longer read
        for (int i = tid; i < SH * SW; i += kThreadsX * kThreadsY) {
            const int r = i / SW, c = i - r * SW;
            const int iy = iy_start + r, ix = ix_start + c;
            float v = 0.f;
            if (iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w)
                v = lg::load(xp + size_t(iy) * p.in_w + ix);
            tile[r][c] = v;
        }
        __syncthreads();
        if (ox >= p.out_w) continue;
#pragma unroll
        for (int row = 0; row < kRowsPerThread; ++row) {
            const int oy = oy0 + threadIdx.y + row * kThreadsY;
            if (oy >= p.out_h) break;
            int ky0, sy;
            first_tap<UP>(oy * DOWN - p.pad_y0, iy_start, ky0, sy);
            float acc = 0.f;
#pragma unroll
            for (int jy = 0; jy < kTapsPerAxis; ++jy) {
                const int ky = ky0 + jy * UP;
                if (ky >= p.f_h) break;  // taps past the filter: never touch their samples
#pragma unroll
                for (int jx = 0; jx < kTapsPerAxis; ++jx) {
                    const int kx = kx0 + jx * UP;
                    if (kx < p.f_w) acc += taps[ky][kx] * tile[sy + jy][sx + jx];
                }
            }
            lg::store(y + n * out_plane + size_t(oy) * p.out_w + ox, acc);
        }
    }
}

// Which instance serves a call: 0 none, 1 filter only, 2 up 2, 3 down 2 (same factor on x and y).
int variant(const Upfirdn2dParams& p) {
    if (p.f_w > kMaxTaps || p.f_h > kMaxTaps || p.up_x != p.up_y || p.down_x != p.down_y) return 0;
    if (p.up_x == 1 && p.down_x == 1) return 1;
    if (p.up_x == 2 && p.down_x == 1) return 2;
    if (p.up_x == 1 && p.down_x == 2) return 3;
    return 0;
}

template <typename T, int UP, int DOWN>
const char* launch(const Upfirdn2dParams& p, const void* x, const void* f, bool flip, double gain,
                   void* y, cudaStream_t stream) {
    const dim3 block(kThreadsX, kThreadsY);
    const dim3 grid((p.out_w + kTileW - 1) / kTileW, (p.out_h + kTileH - 1) / kTileH,
                    unsigned(p.planes < 65535 ? p.planes : 65535));
    upfirdn2d_tiled_kernel<T, UP, DOWN><<<grid, block, 0, stream>>>(
        p, static_cast<const T*>(x), static_cast<const float*>(f), flip, float(gain),
        static_cast<T*>(y));
    return lg::launch_error();
}

template <typename T>
const char* launch_variant(const Upfirdn2dParams& p, const void* x, const void* f, bool flip,
                           double gain, void* y, cudaStream_t s) {
    switch (variant(p)) {
        case 1: return launch<T, 1, 1>(p, x, f, flip, gain, y, s);
        case 2: return launch<T, 2, 1>(p, x, f, flip, gain, y, s);
        case 3: return launch<T, 1, 2>(p, x, f, flip, gain, y, s);
        default: return "upfirdn2d_cuda_tiled: no tiled instance for this call";
    }
}

}  // namespace

bool upfirdn2d_tiled_supported(const Upfirdn2dParams& p, int dtype) {
    return (dtype == 0 || dtype == 2 || dtype == 3) && variant(p) != 0;
}

const char* upfirdn2d_cuda_tiled(const Upfirdn2dParams& p, int dtype, const void* x, const void* f,
                                 bool flip_filter, double gain, void* y, void* stream) {
    auto s = static_cast<cudaStream_t>(stream);
    switch (dtype) {
        case 0: return launch_variant<float>(p, x, f, flip_filter, gain, y, s);
        case 2: return launch_variant<__half>(p, x, f, flip_filter, gain, y, s);
        case 3: return launch_variant<__nv_bfloat16>(p, x, f, flip_filter, gain, y, s);
        default: return "upfirdn2d_cuda_tiled: float32, float16 or bfloat16 only";
    }
}

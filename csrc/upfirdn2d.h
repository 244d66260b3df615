// upfirdn2d kernels: the plain C++ interface shared by the CPU/CUDA kernels and their bindings.
// No torch headers here: the kernel files compile in seconds without them.
#pragma once
#include <cstdint>

// One call: `planes` independent images of in_h x in_w (N*C of them, contiguous), each
// upsampled by zero insertion, padded (negative crops), correlated with the taps, downsampled.
struct Upfirdn2dParams {
    int64_t planes;
    int in_h, in_w, out_h, out_w;
    int up_x, up_y, down_x, down_y;
    int pad_x0, pad_y0;  // the far-side pads are implied by out_h / out_w
    int f_w, f_h;        // filter width and height
    bool separable;      // taps = [f_w x-taps][f_h y-taps]; else f_h*f_w row-major 2-D taps
    int num_threads;     // CPU only: OpenMP threads (torch.get_num_threads())
};

// CPU: `taps` are the final correlation taps (already flipped as needed, gain applied).
template <typename T>
void upfirdn2d_cpu(const Upfirdn2dParams& p, const T* x, const T* taps, T* y);

// CPU, channels-last: x is [N, in_h, in_w, C] and y [N, out_h, out_w, C] in memory (planes = N*C).
template <typename T>
void upfirdn2d_cpu_nhwc(const Upfirdn2dParams& p, int C, const T* x, const T* taps, T* y);

// CUDA: `f` is the filter as given (reversed into taps unless flip_filter), in the accumulation
// type (double for double data, float otherwise), and `gain` scales the result; the kernel does
// both itself so that the host never reads device memory. dtype: 0 float32, 1 float64,
// 2 float16, 3 bfloat16. Returns nullptr on success, else the CUDA error string.
const char* upfirdn2d_cuda(const Upfirdn2dParams& p, int dtype, const void* x, const void* f,
                           bool flip_filter, double gain, void* y, void* stream);

// CUDA, shared-memory tiled (upfirdn2d_tiled.cu; LG_UPFIRDN2D=tiled): the same contract as
// upfirdn2d_cuda (f in float), for the calls upfirdn2d_tiled_supported accepts: float32/float16/
// bfloat16, up == 1 or 2 with down == 1, or down == 2 with up == 1 (same on x and y), filters up
// to 4 x 4. The binding sends every other call to upfirdn2d_cuda.
bool upfirdn2d_tiled_supported(const Upfirdn2dParams& p, int dtype);
const char* upfirdn2d_cuda_tiled(const Upfirdn2dParams& p, int dtype, const void* x, const void* f,
                                 bool flip_filter, double gain, void* y, void* stream);

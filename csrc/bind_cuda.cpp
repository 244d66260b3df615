// Python binding of the CUDA kernels (module lg_ops_cuda_*): checks, device guard, stream, dtypes.
// Compiled by the host compiler; the kernels themselves are pure CUDA (.cu) and see no torch.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "bind_common.h"

namespace {

int dtype_code(const torch::Tensor& x) {
    switch (x.scalar_type()) {
        case torch::kFloat: return 0;
        case torch::kDouble: return 1;
        case torch::kHalf: return 2;
        case torch::kBFloat16: return 3;
        default: TORCH_CHECK(false, "CUDA kernels take float32/64, float16 or bfloat16, got ", x.scalar_type());
    }
    return -1;
}

// tiled: the shared-memory tiled kernel where it has an instance for the call, else the direct
// one; strict: a call without a tiled instance is an error (tests use it to prove the tiled ran).
torch::Tensor run_upfirdn2d(torch::Tensor x, torch::Tensor f, int upx, int upy, int downx, int downy,
                            int px0, int px1, int py0, int py1, bool flip_filter, double gain,
                            bool tiled, bool strict) {
    TORCH_CHECK(x.is_cuda(), "upfirdn2d (cuda kernels): x must be a CUDA tensor");
    const c10::cuda::CUDAGuard guard(x.device());
    const Upfirdn2dParams p = lg::upfirdn2d_params(x, f, upx, upy, downx, downy, px0, px1, py0, py1);
    const int code = dtype_code(x);
    x = x.contiguous();
    f = f.to(x.device(), code == 1 ? torch::kDouble : torch::kFloat).contiguous();
    auto y = torch::empty({x.size(0), x.size(1), p.out_h, p.out_w}, x.options());
    if (y.numel() == 0) return y;
    tiled = tiled && upfirdn2d_tiled_supported(p, code);
    TORCH_CHECK(tiled || !strict, "upfirdn2d_tiled(strict): no tiled instance for this call (",
                x.scalar_type(), ", up ", upx, "x", upy, ", down ", downx, "x", downy, ", filter ",
                p.f_h, "x", p.f_w, ")");
    const auto kernel = tiled ? upfirdn2d_cuda_tiled : upfirdn2d_cuda;
    const char* err = kernel(p, code, x.data_ptr(), f.data_ptr(), flip_filter, gain, y.data_ptr(),
                             c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == nullptr, "upfirdn2d CUDA kernel failed: ", err);
    return y;
}

torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int upx, int upy, int downx, int downy,
                        int px0, int px1, int py0, int py1, bool flip_filter, double gain) {
    return run_upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain,
                         false, false);
}

torch::Tensor upfirdn2d_tiled(torch::Tensor x, torch::Tensor f, int upx, int upy, int downx,
                              int downy, int px0, int px1, int py0, int py1, bool flip_filter,
                              double gain, bool strict) {
    return run_upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain,
                         true, strict);
}

torch::Tensor bias_act(torch::Tensor x, std::optional<torch::Tensor> b,
                       std::optional<torch::Tensor> dy, std::optional<torch::Tensor> ddz, int mode,
                       int64_t dim, int act, double alpha, double gain, double clamp) {
    TORCH_CHECK(x.is_cuda(), "bias_act (cuda kernels): x must be a CUDA tensor");
    const c10::cuda::CUDAGuard guard(x.device());
    const BiasActParams p = lg::bias_act_params(x, b, dy, ddz, mode, dim, act, alpha, gain, clamp);
    const int code = dtype_code(x);
    x = x.contiguous();
    for (auto* t : {&b, &dy, &ddz})
        if (*t) **t = (*t)->contiguous();
    auto out = torch::empty_like(x, torch::MemoryFormat::Contiguous);
    if (x.numel() == 0) return out;
    const char* err = bias_act_cuda(p, code, x.data_ptr(), lg::ptr_or_null(b), lg::ptr_or_null(dy),
                                    lg::ptr_or_null(ddz), out.data_ptr(),
                                    c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == nullptr, "bias_act CUDA kernel failed: ", err);
    return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("upfirdn2d", &upfirdn2d, "upfirdn2d on CUDA tensors (see csrc/upfirdn2d.h)");
    m.def("upfirdn2d_tiled", &upfirdn2d_tiled,
          "upfirdn2d on CUDA tensors, shared-memory tiled where it has an instance");
    m.def("bias_act", &bias_act, "bias_act on CUDA tensors (see csrc/bias_act.h)");
}

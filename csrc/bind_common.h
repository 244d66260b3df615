// Argument checks and parameter setup shared by the CPU and CUDA Python bindings.
#pragma once
#include <torch/extension.h>

#include <optional>

#include "bias_act.h"
#include "upfirdn2d.h"

namespace lg {

// Output size and checks of upfirdn2d, mirroring the reference path's rules.
inline Upfirdn2dParams upfirdn2d_params(const torch::Tensor& x, const torch::Tensor& f, int upx,
                                        int upy, int downx, int downy, int px0, int px1, int py0,
                                        int py1) {
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got ", x.sizes());
    TORCH_CHECK(f.dim() == 1 || f.dim() == 2, "upfirdn2d: filter must be 1-D or 2-D, got ", f.sizes());
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: up/down must be >= 1");
    Upfirdn2dParams p{};
    p.planes = x.size(0) * x.size(1);
    p.in_h = static_cast<int>(x.size(2));
    p.in_w = static_cast<int>(x.size(3));
    p.f_w = static_cast<int>(f.size(-1));
    p.f_h = static_cast<int>(f.size(0));  // a 1-D filter is square: f_h == f_w
    const int64_t ph = int64_t(p.in_h) * upy + py0 + py1, pw = int64_t(p.in_w) * upx + px0 + px1;
    TORCH_CHECK(ph >= p.f_h && pw >= p.f_w, "upfirdn2d: padded input (", ph, ", ", pw,
                ") is smaller than the filter (", p.f_h, ", ", p.f_w, ")");
    p.out_h = static_cast<int>((ph - p.f_h) / downy + 1);
    p.out_w = static_cast<int>((pw - p.f_w) / downx + 1);
    p.up_x = upx, p.up_y = upy, p.down_x = downx, p.down_y = downy;
    p.pad_x0 = px0, p.pad_y0 = py0;
    p.separable = f.dim() == 1;
    p.num_threads = 1;
    return p;
}

// x viewed as [outer, C, inner] around `dim`; b, dy, ddz checked against it.
inline BiasActParams bias_act_params(const torch::Tensor& x, const std::optional<torch::Tensor>& b,
                                     const std::optional<torch::Tensor>& dy,
                                     const std::optional<torch::Tensor>& ddz, int mode, int64_t dim,
                                     int act, double alpha, double gain, double clamp) {
    TORCH_CHECK(act >= 1 && act <= 9, "bias_act: unknown activation index ", act);
    TORCH_CHECK(mode >= 0 && mode <= 2, "bias_act: mode must be 0, 1 or 2");
    TORCH_CHECK(mode < 1 || (dy && dy->sizes() == x.sizes()), "bias_act: dy must match x");
    TORCH_CHECK(mode < 2 || (ddz && ddz->sizes() == x.sizes()), "bias_act: ddz must match x");
    BiasActParams p{};
    p.outer = 1, p.channels = 1, p.inner = 1;
    if (x.dim() > 0) {
        dim = ((dim % x.dim()) + x.dim()) % x.dim();
        for (int64_t i = 0; i < dim; ++i) p.outer *= x.size(i);
        p.channels = x.size(dim);
        for (int64_t i = dim + 1; i < x.dim(); ++i) p.inner *= x.size(i);
    }
    p.has_bias = b.has_value();
    TORCH_CHECK(!b || (b->dim() == 1 && b->size(0) == p.channels), "bias_act: bias of shape ",
                b ? b->sizes() : x.sizes(), " does not match x.shape[", dim, "]=", p.channels);
    for (const auto* t : {&b, &dy, &ddz})
        TORCH_CHECK(!*t || ((*t)->scalar_type() == x.scalar_type() && (*t)->device() == x.device()),
                    "bias_act: b, dy and ddz must have x's dtype and device");
    p.act = act, p.mode = mode, p.alpha = alpha, p.gain = gain, p.clamp = clamp;
    p.num_threads = 1;
    return p;
}

// A 4-D tensor laid out channels-last (NHWC) and not also plain contiguous (C == 1 or H*W == 1
// are both; those take the NCHW path).
inline bool is_channels_last(const torch::Tensor& x) {
    return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

inline const void* ptr_or_null(const std::optional<torch::Tensor>& t) {
    return t ? t->data_ptr() : nullptr;
}

}  // namespace lg

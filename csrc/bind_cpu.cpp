// Python binding of the CPU kernels (module lg_ops_cpu_*): checks, taps, threads, dtypes.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "bind_common.h"
#include "scaled_bias_act.h"

namespace {

// OpenMP threads for a call doing about `work` multiply-adds: small calls stay on one thread,
// where waking the pool would cost more than it saves.
int threads_for(double work) {
    return work < 65536.0 ? 1 : at::get_num_threads();
}

// Threads for a memory-bound elementwise pass over `n` values: one per 32768 values (torch's
// own grain size, at::internal::GRAIN_SIZE), as many as torch uses. Measured on a busy 2-core
// VM: a [64, 512] bias_act forward took 0.4 ms on 2 threads (waking the second one) against
// 0.1 ms for torch's single-threaded ops; from 2 x 32768 values on, the split pays.
int threads_for_elementwise(int64_t n) {
    const int64_t by_size = std::max<int64_t>(1, n / 32768);
    return static_cast<int>(std::min<int64_t>(by_size, at::get_num_threads()));
}

// Correlation taps from the filter the way the reference makes them (cast to the data dtype,
// scale by gain**(ndim/2), flip unless flip_filter). A 2-D filter that is an outer product
// (StyleGAN2's default [1,3,3,1] x [1,3,3,1]) is factored so the kernel runs separably.
template <typename T>
std::vector<T> make_taps(const torch::Tensor& f_in, bool flip, double gain, Upfirdn2dParams& p) {
    const torch::Tensor f = f_in.to(torch::kCPU, c10::CppTypeToScalarType<T>::value).contiguous();
    const T* fd = f.data_ptr<T>();
    const T scale = T(std::pow(gain, f.dim() / 2.0));
    const int fw = p.f_w, fh = p.f_h;
    if (f.dim() == 1) {
        std::vector<T> t(fw + fh);
        for (int k = 0; k < fw; ++k) t[k] = t[fw + k] = fd[flip ? k : fw - 1 - k] * scale;
        return t;
    }
    std::vector<T> g(static_cast<size_t>(fw) * fh);
    for (int ky = 0; ky < fh; ++ky)
        for (int kx = 0; kx < fw; ++kx)
            g[ky * fw + kx] = fd[(flip ? ky : fh - 1 - ky) * fw + (flip ? kx : fw - 1 - kx)] * scale;
    // Rank-1 test around the largest tap: g[i][j] == g[i][q] * g[p][j] / g[p][q].
    size_t piv = 0;
    for (size_t i = 1; i < g.size(); ++i)
        if (std::abs(g[i]) > std::abs(g[piv])) piv = i;
    const double gmax = std::abs(double(g[piv]));
    if (gmax == 0.0) return g;
    const int pr = int(piv) / fw, pc = int(piv) % fw;
    const double tol = 8.0 * std::numeric_limits<T>::epsilon() * gmax;
    for (int ky = 0; ky < fh; ++ky)
        for (int kx = 0; kx < fw; ++kx) {
            const double r = double(g[ky * fw + pc]) * double(g[pr * fw + kx]) / double(g[piv]);
            if (std::abs(r - double(g[ky * fw + kx])) > tol) return g;
        }
    std::vector<T> t(fw + fh);
    for (int kx = 0; kx < fw; ++kx) t[kx] = T(double(g[pr * fw + kx]) / double(g[piv]));
    for (int ky = 0; ky < fh; ++ky) t[fw + ky] = g[ky * fw + pc];
    p.separable = true;
    return t;
}

torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int upx, int upy, int downx, int downy,
                        int px0, int px1, int py0, int py1, bool flip_filter, double gain) {
    TORCH_CHECK(x.device().is_cpu(), "upfirdn2d (cpu kernels): x must be on the CPU");
    TORCH_CHECK(x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble,
                "upfirdn2d (cpu kernels): x must be float32 or float64, got ", x.scalar_type());
    Upfirdn2dParams p = lg::upfirdn2d_params(x, f, upx, upy, downx, downy, px0, px1, py0, py1);
    // Channels-last input stays channels-last (the layout the CPU convolutions are fastest in);
    // anything else is made NCHW-contiguous.
    const bool nhwc = lg::is_channels_last(x);
    const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    x = x.contiguous(format);
    auto y = torch::empty({x.size(0), x.size(1), p.out_h, p.out_w}, x.options().memory_format(format));
    if (y.numel() == 0) return y;
    const double taps = double(p.f_w) * p.f_h / (double(upx) * upy);
    p.num_threads = threads_for(double(y.numel()) * taps);
    const int C = static_cast<int>(x.size(1));
    if (x.scalar_type() == torch::kFloat) {
        const auto t = make_taps<float>(f, flip_filter, gain, p);
        if (nhwc) upfirdn2d_cpu_nhwc<float>(p, C, x.data_ptr<float>(), t.data(), y.data_ptr<float>());
        else upfirdn2d_cpu<float>(p, x.data_ptr<float>(), t.data(), y.data_ptr<float>());
    } else {
        const auto t = make_taps<double>(f, flip_filter, gain, p);
        if (nhwc) upfirdn2d_cpu_nhwc<double>(p, C, x.data_ptr<double>(), t.data(), y.data_ptr<double>());
        else upfirdn2d_cpu<double>(p, x.data_ptr<double>(), t.data(), y.data_ptr<double>());
    }
    return y;
}

// One bias_act kernel call; with `db` (mode 1 and a bias) the bias gradient is written there too.
torch::Tensor bias_act_impl(torch::Tensor x, std::optional<torch::Tensor> b,
                            std::optional<torch::Tensor> dy, std::optional<torch::Tensor> ddz,
                            int mode, int64_t dim, int act, double alpha, double gain, double clamp,
                            torch::Tensor* db) {
    TORCH_CHECK(x.device().is_cpu(), "bias_act (cpu kernels): x must be on the CPU");
    TORCH_CHECK(x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble,
                "bias_act (cpu kernels): x must be float32 or float64, got ", x.scalar_type());
    BiasActParams p = lg::bias_act_params(x, b, dy, ddz, mode, dim, act, alpha, gain, clamp);
    // Channels-last feature maps: viewed as [N*H*W, C] with the bias along the contiguous axis.
    const bool nhwc = lg::is_channels_last(x) && p.outer == x.size(0) && p.channels == x.size(1);
    const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    if (nhwc) p.outer *= p.inner, p.inner = 1;
    x = x.contiguous(format);
    for (auto* t : {&dy, &ddz})
        if (*t) **t = (*t)->contiguous(format);
    if (b) *b = b->contiguous();
    auto out = torch::empty_like(x, format);
    if (db) *db = torch::zeros({p.channels}, x.options());
    if (x.numel() == 0) return out;
    p.num_threads = threads_for_elementwise(x.numel());
    if (x.scalar_type() == torch::kFloat) {
        bias_act_cpu<float>(p, x.data_ptr<float>(), static_cast<const float*>(lg::ptr_or_null(b)),
                            static_cast<const float*>(lg::ptr_or_null(dy)),
                            static_cast<const float*>(lg::ptr_or_null(ddz)), out.data_ptr<float>(),
                            db ? db->data_ptr<float>() : nullptr);
    } else {
        bias_act_cpu<double>(p, x.data_ptr<double>(), static_cast<const double*>(lg::ptr_or_null(b)),
                             static_cast<const double*>(lg::ptr_or_null(dy)),
                             static_cast<const double*>(lg::ptr_or_null(ddz)), out.data_ptr<double>(),
                             db ? db->data_ptr<double>() : nullptr);
    }
    return out;
}

torch::Tensor bias_act(torch::Tensor x, std::optional<torch::Tensor> b,
                       std::optional<torch::Tensor> dy, std::optional<torch::Tensor> ddz, int mode,
                       int64_t dim, int act, double alpha, double gain, double clamp) {
    return bias_act_impl(x, b, dy, ddz, mode, dim, act, alpha, gain, clamp, nullptr);
}

// The first-order backward in one pass: [dx, db] with dx = mode 1's output and db its sum over
// every axis but `dim` (what x.grad and b.grad are).
std::vector<torch::Tensor> bias_act_grad(torch::Tensor x, torch::Tensor b, torch::Tensor dy,
                                         int64_t dim, int act, double alpha, double gain,
                                         double clamp) {
    torch::Tensor db;
    auto dx = bias_act_impl(x, b, dy, std::nullopt, 1, dim, act, alpha, gain, clamp, &db);
    return {dx, db};
}

// The vector ISA this module was compiled for (LG_CPU_ISA / the CPU; see ops/_jit.py).
#if defined(__AVX512F__)
constexpr const char* kIsa = "avx512";
#elif defined(__AVX2__)
constexpr const char* kIsa = "avx2";
#else
constexpr const char* kIsa = "generic";
#endif

// Checks and parameters of scaled_bias_act: x [N, C, H, W] (NCHW or channels-last),
// scale [N, C], noise [N, 1, H, W], b [C], all of x's dtype.
ScaledBiasActParams sba_params(const torch::Tensor& x, const std::optional<torch::Tensor>& scale,
                               const std::optional<torch::Tensor>& noise,
                               const std::optional<torch::Tensor>& b, int act, double alpha,
                               double gain, double clamp) {
    TORCH_CHECK(x.device().is_cpu() && x.dim() == 4, "scaled_bias_act (cpu kernels): x must be a 4-D CPU tensor");
    TORCH_CHECK(x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble,
                "scaled_bias_act (cpu kernels): x must be float32 or float64, got ", x.scalar_type());
    TORCH_CHECK(act >= 1 && act <= 3, "scaled_bias_act: activation must be linear, relu or lrelu");
    TORCH_CHECK(gain > 0, "scaled_bias_act: gain must be > 0");
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    TORCH_CHECK(!scale || scale->sizes() == torch::IntArrayRef({N, C}), "scaled_bias_act: scale must be [N, C]");
    TORCH_CHECK(!noise || noise->sizes() == torch::IntArrayRef({N, 1, H, W}),
                "scaled_bias_act: noise must be [N, 1, H, W]");
    TORCH_CHECK(!b || b->sizes() == torch::IntArrayRef({C}), "scaled_bias_act: b must be [C]");
    for (const auto* t : {&scale, &noise, &b})
        TORCH_CHECK(!*t || ((*t)->scalar_type() == x.scalar_type() && (*t)->device().is_cpu()),
                    "scaled_bias_act: scale, noise and b must have x's dtype and device");
    ScaledBiasActParams p{};
    p.N = N, p.C = C, p.HW = H * W;
    p.nhwc = lg::is_channels_last(x);
    p.has_scale = scale.has_value(), p.has_noise = noise.has_value(), p.has_bias = b.has_value();
    p.act = act, p.alpha = alpha, p.gain = gain, p.clamp = clamp;
    p.num_threads = threads_for(4.0 * double(x.numel()));
    return p;
}

template <typename T>
const T* cptr(const std::optional<torch::Tensor>& t) {
    return t ? t->data_ptr<T>() : nullptr;
}

torch::Tensor scaled_bias_act_fwd(torch::Tensor x, std::optional<torch::Tensor> scale,
                                  std::optional<torch::Tensor> noise, std::optional<torch::Tensor> b,
                                  int act, double alpha, double gain, double clamp) {
    const ScaledBiasActParams p = sba_params(x, scale, noise, b, act, alpha, gain, clamp);
    const auto format = p.nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    x = x.contiguous(format);
    for (auto* t : {&scale, &noise, &b})
        if (*t) **t = (*t)->contiguous();
    auto y = torch::empty_like(x, format);
    if (x.numel() == 0) return y;
    if (x.scalar_type() == torch::kFloat)
        scaled_bias_act_fwd_cpu<float>(p, x.data_ptr<float>(), cptr<float>(scale), cptr<float>(noise),
                                       cptr<float>(b), y.data_ptr<float>());
    else
        scaled_bias_act_fwd_cpu<double>(p, x.data_ptr<double>(), cptr<double>(scale), cptr<double>(noise),
                                        cptr<double>(b), y.data_ptr<double>());
    return y;
}

// [dx, dscale, dnoise, db]; an entry is an empty tensor where `need` says it is not wanted.
std::vector<torch::Tensor> scaled_bias_act_bwd(torch::Tensor dy, torch::Tensor x, torch::Tensor y,
                                               std::optional<torch::Tensor> scale, std::vector<bool> need,
                                               int act, double alpha, double gain, double clamp) {
    TORCH_CHECK(need.size() == 4, "scaled_bias_act: need must have 4 flags");
    const ScaledBiasActParams p = sba_params(x, scale, std::nullopt, std::nullopt, act, alpha, gain, clamp);
    TORCH_CHECK(dy.sizes() == x.sizes() && y.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type() &&
                y.scalar_type() == x.scalar_type(), "scaled_bias_act: dy and y must match x");
    const auto format = p.nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    x = x.contiguous(format), y = y.contiguous(format), dy = dy.contiguous(format);
    if (scale) *scale = scale->contiguous();
    const auto opt = x.options();
    auto dx = need[0] ? torch::empty_like(x, format) : torch::Tensor();
    auto dscale = need[1] ? torch::empty({p.N, p.C}, opt) : torch::Tensor();
    auto dnoise = need[2] ? torch::empty({p.N, 1, x.size(2), x.size(3)}, opt) : torch::Tensor();
    auto db = need[3] ? torch::empty({p.C}, opt) : torch::Tensor();
    if (x.numel() == 0) {
        for (auto* t : {&dscale, &dnoise, &db})
            if (t->defined()) t->zero_();
        return {dx, dscale, dnoise, db};
    }
    auto ptr = [](torch::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; };
    if (x.scalar_type() == torch::kFloat)
        scaled_bias_act_bwd_cpu<float>(p, dy.data_ptr<float>(), x.data_ptr<float>(), y.data_ptr<float>(),
                                       cptr<float>(scale), static_cast<float*>(ptr(dx)),
                                       static_cast<float*>(ptr(dscale)), static_cast<float*>(ptr(dnoise)),
                                       static_cast<float*>(ptr(db)));
    else
        scaled_bias_act_bwd_cpu<double>(p, dy.data_ptr<double>(), x.data_ptr<double>(), y.data_ptr<double>(),
                                        cptr<double>(scale), static_cast<double*>(ptr(dx)),
                                        static_cast<double*>(ptr(dscale)), static_cast<double*>(ptr(dnoise)),
                                        static_cast<double*>(ptr(db)));
    return {dx, dscale, dnoise, db};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("upfirdn2d", &upfirdn2d, "upfirdn2d on CPU tensors (see csrc/upfirdn2d.h)");
    m.def("bias_act", &bias_act, "bias_act on CPU tensors (see csrc/bias_act.h)");
    m.def("bias_act_grad", &bias_act_grad, "bias_act's gradients [dx, db] in one pass");
    m.attr("isa") = kIsa;
    m.def("scaled_bias_act_fwd", &scaled_bias_act_fwd, "modulated-conv epilogue (see csrc/scaled_bias_act.h)");
    m.def("scaled_bias_act_bwd", &scaled_bias_act_bwd, "its gradient w.r.t. x, scale, noise and b");
}

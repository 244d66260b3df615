// upfirdn2d CPU kernel: polyphase FIR resampling of image planes, OpenMP over planes.
//
// Written from the definition (upsample by zero insertion, pad/crop, correlate, downsample)
// rearranged so that no inserted zero is multiplied and no discarded output is computed. Along
// one axis, output o = c + m*P (phase class c) reads input i = i0[c] + j + m*S with tap
// k0[c] + j*up, j < nt[c]. Each plane is copied once into a zero-padded buffer whose rows are
// split into S interleaved phases; then every (class, tap) is a fixed source pointer with a
// fixed row stride, and all the work is one primitive, combine(): dst[r][m] = sum_j w[j] *
// src_j[r][m], vectorized over m with the taps unrolled and held in registers.
#include "upfirdn2d.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <numeric>
#include <vector>

namespace {

inline int floor_div(int a, int b) {
    const int q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// The polyphase decomposition of one axis.
struct Axis {
    int in = 0, out = 0, up = 1, taps = 1;
    int P = 1, S = 1;                         // output classes; input step per class step
    std::vector<int> k0, i0, nt, count, off;  // per class: first tap, first input, #taps, #outputs, offset
    int lo = 0, hi = 0;                       // input range read: lo <= 0 <= in <= hi

    Axis(int in_, int out_, int up_, int down, int pad0, int taps_)
        : in(in_), out(out_), up(up_), taps(taps_) {
        const int g = std::gcd(up, down);
        P = up / g;
        S = down / g;
        k0.resize(P), i0.resize(P), nt.resize(P), count.resize(P), off.resize(P);
        hi = in;
        for (int c = 0, acc = 0; c < P; ++c) {
            const int base = c * down - pad0;  // upsampled input index under tap 0 of output c
            k0[c] = ((-base) % up + up) % up;
            i0[c] = floor_div(base + k0[c], up);
            nt[c] = k0[c] < taps ? (taps - k0[c] + up - 1) / up : 0;
            count[c] = c < out ? (out - c + P - 1) / P : 0;
            off[c] = acc;
            acc += count[c];
            if (nt[c] > 0 && count[c] > 0) {
                lo = std::min(lo, i0[c]);
                hi = std::max(hi, i0[c] + nt[c] - 1 + (count[c] - 1) * S + 1);
            }
        }
    }
    int phase_len() const { return (hi - lo + S - 1) / S; }
    int row_len() const { return S * phase_len(); }
    // Offset, within a prepared row, of input index i0[c] + j (see prepare_plane).
    ptrdiff_t at(int c, int j) const {
        const int pi = i0[c] + j - lo;
        return static_cast<ptrdiff_t>(pi % S) * phase_len() + pi / S;
    }
};

// dst[r*ds + m] (+)= sum_j w[j] * src[j][r*ss + m] for r < rows, m < n; NT taps unrolled.
template <int NT, typename T>
void combine_fixed(int rows, int n, const T* const* src, ptrdiff_t ss, const T* w, T* dst,
                   ptrdiff_t ds, bool accumulate) {
    T wr[NT];
    const T* s[NT];
    for (int j = 0; j < NT; ++j) wr[j] = w[j], s[j] = src[j];
    for (int r = 0; r < rows; ++r) {
        T* d = dst + r * ds;
        const ptrdiff_t o = r * ss;
        if (accumulate) {
#pragma omp simd
            for (int m = 0; m < n; ++m) {
                T v = d[m];
                for (int j = 0; j < NT; ++j) v += wr[j] * s[j][o + m];
                d[m] = v;
            }
        } else {
#pragma omp simd
            for (int m = 0; m < n; ++m) {
                T v = wr[0] * s[0][o + m];
                for (int j = 1; j < NT; ++j) v += wr[j] * s[j][o + m];
                d[m] = v;
            }
        }
    }
}

template <typename T>
void combine(int rows, int n, int nt, const T* const* src, ptrdiff_t ss, const T* w, T* dst,
             ptrdiff_t ds, bool accumulate) {
    if (rows <= 0 || n <= 0) return;
    if (ss == n && ds == n) n *= rows, rows = 1;  // contiguous rows: one long loop
    if (nt == 0) {
        if (!accumulate)
            for (int r = 0; r < rows; ++r) std::fill(dst + r * ds, dst + r * ds + n, T(0));
        return;
    }
    for (int j0 = 0; j0 < nt; j0 += 8) {  // more than 8 taps: chunks of 8, accumulated
        const bool acc = accumulate || j0 > 0;
        const T* const* s = src + j0;
        const T* wj = w + j0;
        switch (std::min(8, nt - j0)) {
            case 1: combine_fixed<1>(rows, n, s, ss, wj, dst, ds, acc); break;
            case 2: combine_fixed<2>(rows, n, s, ss, wj, dst, ds, acc); break;
            case 3: combine_fixed<3>(rows, n, s, ss, wj, dst, ds, acc); break;
            case 4: combine_fixed<4>(rows, n, s, ss, wj, dst, ds, acc); break;
            case 5: combine_fixed<5>(rows, n, s, ss, wj, dst, ds, acc); break;
            case 6: combine_fixed<6>(rows, n, s, ss, wj, dst, ds, acc); break;
            case 7: combine_fixed<7>(rows, n, s, ss, wj, dst, ds, acc); break;
            default: combine_fixed<8>(rows, n, s, ss, wj, dst, ds, acc); break;
        }
    }
}

template <int S, typename T>
void gather(T* __restrict dst, const T* __restrict src, int n) {
    for (int q = 0; q < n; ++q) dst[q] = src[q * S];
}

// Copy input rows [r0, r1) into buf (rows outside the input are zero), each row zero-padded to
// [ax.lo, ax.hi) and split into ax.S phases: row[r*Q + q] = padded[r + q*S].
template <typename T>
void prepare_rows(const T* __restrict x, const Axis& ax, int in_h, int r0, int r1, T* __restrict buf) {
    const int Q = ax.phase_len(), S = ax.S, lo = ax.lo, RS = ax.row_len();
    for (int iy = r0; iy < r1; ++iy) {
        T* __restrict dst = buf + static_cast<size_t>(iy - r0) * RS;
        if (iy < 0 || iy >= in_h) {
            std::fill(dst, dst + RS, T(0));
            continue;
        }
        const T* __restrict row = x + static_cast<size_t>(iy) * ax.in;
        if (S == 1) {
            std::fill(dst, dst - lo, T(0));
            std::memcpy(dst - lo, row, sizeof(T) * ax.in);
            std::fill(dst - lo + ax.in, dst + Q, T(0));
            continue;
        }
        for (int r = 0; r < S; ++r, dst += Q) {
            // Phase r, slot q holds input index r + q*S + lo: valid for q in [q0, q1).
            const int q0 = std::max(0, (-lo - r + S - 1) / S);
            const int q1 = std::min(Q, std::max(q0, (ax.in - lo - r + S - 1) / S));
            std::fill(dst, dst + q0, T(0));
            const T* src = row + (r + lo + q0 * S);
            switch (S) {  // constant strides let the compiler vectorize the gather
                case 2: gather<2>(dst + q0, src, q1 - q0); break;
                case 4: gather<4>(dst + q0, src, q1 - q0); break;
                default: for (int q = q0; q < q1; ++q) dst[q] = src[(q - q0) * S];
            }
            std::fill(dst + q1, dst + Q, T(0));
        }
    }
}

// Class-major rows (x classes one after another) -> interleaved output rows.
template <typename T>
void scatter_rows(const T* __restrict cm, const Axis& ax, int rows, T* __restrict out) {
    for (int r = 0; r < rows; ++r, cm += ax.out, out += ax.out)
        for (int c = 0; c < ax.P; ++c)
            for (int m = 0; m < ax.count[c]; ++m) out[c + m * ax.P] = cm[ax.off[c] + m];
}

// A strip: y-class indices [m0, m1), i.e. output rows [m0*P, m1*P), reading input rows [r0, r1).
struct Strip {
    int m0, m1, r0, r1;
    int rows(const Axis& ay, int c) const { return std::max(0, std::min(m1, ay.count[c]) - m0); }
    // Offset of tap j of class c for the strip's first index, in rows of the strip's buffers.
    int row_of(const Axis& ay, int c, int j) const { return ay.i0[c] + j + m0 * ay.S - r0; }
};

// Separable taps: the x pass turns the strip's prepared rows into tmp, the y pass combines tmp
// rows into dst (the strip's output rows, class-major in x).
template <typename T>
void strip_separable(const Axis& ax, const Axis& ay, const Strip& st, const T* buf, const T* tx,
                     const T* ty, T* tmp, T* dst) {
    const ptrdiff_t RS = ax.row_len(), Wo = ax.out;
    const T* src[8];
    T w[8];
    for (int c = 0; c < ax.P; ++c) {
        for (int j0 = 0; j0 < std::max(ax.nt[c], 1); j0 += 8) {
            const int n = std::min(8, ax.nt[c] - j0);
            for (int j = 0; j < n; ++j) {
                src[j] = buf + ax.at(c, j0 + j);
                w[j] = tx[ax.k0[c] + (j0 + j) * ax.up];
            }
            combine(st.r1 - st.r0, ax.count[c], n, src, RS, w, tmp + ax.off[c], Wo, j0 > 0);
        }
    }
    for (int c = 0; c < ay.P; ++c) {
        for (int j0 = 0; j0 < std::max(ay.nt[c], 1); j0 += 8) {
            const int n = std::min(8, ay.nt[c] - j0);
            for (int j = 0; j < n; ++j) {
                src[j] = tmp + st.row_of(ay, c, j0 + j) * Wo;
                w[j] = ty[ay.k0[c] + (j0 + j) * ay.up];
            }
            combine(st.rows(ay, c), static_cast<int>(Wo), n, src, ay.S * Wo, w, dst + c * Wo,
                    ay.P * Wo, j0 > 0);
        }
    }
}

// Full 2-D taps: for each (y class, x class) one combine over all its (ky, kx) taps.
template <typename T>
void strip_2d(const Axis& ax, const Axis& ay, const Strip& st, const T* buf, const T* g, int fw,
              T* dst, std::vector<const T*>& src, std::vector<T>& w) {
    const ptrdiff_t RS = ax.row_len(), Wo = ax.out;
    for (int cy = 0; cy < ay.P; ++cy) {
        for (int cx = 0; cx < ax.P; ++cx) {
            src.clear(), w.clear();
            for (int jy = 0; jy < ay.nt[cy]; ++jy)
                for (int jx = 0; jx < ax.nt[cx]; ++jx) {
                    src.push_back(buf + st.row_of(ay, cy, jy) * RS + ax.at(cx, jx));
                    w.push_back(g[static_cast<size_t>(ay.k0[cy] + jy * ay.up) * fw + ax.k0[cx] + jx * ax.up]);
                }
            combine(st.rows(ay, cy), ax.count[cx], static_cast<int>(src.size()), src.data(),
                    ay.S * RS, w.data(), dst + cy * Wo + ax.off[cx], ay.P * Wo, false);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Channels-last (NHWC) layout: the C values of a pixel are contiguous, so every tap is a
// vector operation over channels (x pass) or over a whole output row of Wo*C values (y pass).

// Along one axis, for each output o: the taps that meet a real (not inserted) input sample
// inside the input, as (first input index, first tap, count); taps step by `up`.
struct TapRuns {
    std::vector<int> i0, k0, n;
    TapRuns(int in, int out, int up, int down, int pad0, int taps) : i0(out), k0(out), n(out) {
        for (int o = 0; o < out; ++o) {
            const int base = o * down - pad0;
            const int k = ((-base) % up + up) % up;
            const int i = floor_div(base + k, up);
            const int nt = k < taps ? (taps - k + up - 1) / up : 0;
            const int jlo = std::max(0, -i), jhi = std::min(nt, in - i);
            i0[o] = i + jlo, k0[o] = k + jlo * up, n[o] = std::max(0, jhi - jlo);
        }
    }
};

// out[ox*C + c] (for `rows` rows of strides ss/ds) = sum of the x taps of output ox.
template <typename T>
void x_pass_nhwc(const TapRuns& tx, int up, const T* taps, int C, int rows, const T* x,
                 ptrdiff_t ss, T* out, ptrdiff_t ds, int out_w, std::vector<const T*>& src,
                 std::vector<T>& w) {
    for (int ox = 0; ox < out_w; ++ox) {
        const int n = tx.n[ox];
        src.resize(std::max(n, 1)), w.resize(std::max(n, 1));
        for (int j = 0; j < n; ++j) {
            src[j] = x + static_cast<ptrdiff_t>(tx.i0[ox] + j) * C;
            w[j] = taps[tx.k0[ox] + j * up];
        }
        combine(rows, C, n, src.data(), ss, w.data(), out + static_cast<ptrdiff_t>(ox) * C, ds, false);
    }
}

}  // namespace

template <typename T>
void upfirdn2d_cpu_nhwc(const Upfirdn2dParams& p, int C, const T* x, const T* taps, T* y) {
    const TapRuns tx(p.in_w, p.out_w, p.up_x, p.down_x, p.pad_x0, p.f_w);
    const TapRuns ty(p.in_h, p.out_h, p.up_y, p.down_y, p.pad_y0, p.f_h);
    const int64_t N = p.planes / C;
    const ptrdiff_t in_row = static_cast<ptrdiff_t>(p.in_w) * C, out_row = static_cast<ptrdiff_t>(p.out_w) * C;
    // Blocks of output rows sized so the x-pass rows they need stay in cache (~256 KiB).
    const int B = std::max(1, std::min(p.out_h, static_cast<int>(65536 / std::max<ptrdiff_t>(out_row, 1))));
    const int blocks = (p.out_h + B - 1) / B;
#pragma omp parallel num_threads(p.num_threads)
    {
        std::vector<T> tmp;
        std::vector<const T*> src;
        std::vector<T> w;
#pragma omp for schedule(static)
        for (int64_t task = 0; task < N * blocks; ++task) {
            const int64_t n = task / blocks;
            const int oy0 = static_cast<int>(task % blocks) * B, oy1 = std::min(p.out_h, oy0 + B);
            const T* xn = x + n * p.in_h * in_row;
            T* yn = y + n * p.out_h * out_row;
            if (p.separable) {
                int r0 = p.in_h, r1 = 0;  // input rows the block reads
                for (int oy = oy0; oy < oy1; ++oy)
                    if (ty.n[oy] > 0) r0 = std::min(r0, ty.i0[oy]), r1 = std::max(r1, ty.i0[oy] + ty.n[oy]);
                if (r1 > r0) {
                    tmp.resize(static_cast<size_t>(r1 - r0) * out_row);
                    x_pass_nhwc(tx, p.up_x, taps, C, r1 - r0, xn + r0 * in_row, in_row, tmp.data(), out_row,
                                p.out_w, src, w);
                }
                const T* ytaps = taps + p.f_w;
                for (int oy = oy0; oy < oy1; ++oy) {
                    const int n_t = ty.n[oy];
                    src.resize(std::max(n_t, 1)), w.resize(std::max(n_t, 1));
                    for (int j = 0; j < n_t; ++j) {
                        src[j] = tmp.data() + (ty.i0[oy] + j - r0) * out_row;
                        w[j] = ytaps[ty.k0[oy] + j * p.up_y];
                    }
                    combine(1, static_cast<int>(out_row), n_t, src.data(), 0, w.data(), yn + oy * out_row, 0, false);
                }
            } else {
                for (int oy = oy0; oy < oy1; ++oy)
                    for (int ox = 0; ox < p.out_w; ++ox) {
                        src.clear(), w.clear();
                        for (int jy = 0; jy < ty.n[oy]; ++jy)
                            for (int jx = 0; jx < tx.n[ox]; ++jx) {
                                src.push_back(xn + (ty.i0[oy] + jy) * in_row + static_cast<ptrdiff_t>(tx.i0[ox] + jx) * C);
                                w.push_back(taps[static_cast<size_t>(ty.k0[oy] + jy * p.up_y) * p.f_w + tx.k0[ox] + jx * p.up_x]);
                            }
                        combine(1, C, static_cast<int>(src.size()), src.data(), 0, w.data(),
                                yn + oy * out_row + static_cast<ptrdiff_t>(ox) * C, 0, false);
                    }
            }
        }
    }
}

template void upfirdn2d_cpu_nhwc<float>(const Upfirdn2dParams&, int, const float*, const float*, float*);
template void upfirdn2d_cpu_nhwc<double>(const Upfirdn2dParams&, int, const double*, const double*, double*);

template <typename T>
void upfirdn2d_cpu(const Upfirdn2dParams& p, const T* x, const T* taps, T* y) {
    const Axis ax(p.in_w, p.out_w, p.up_x, p.down_x, p.pad_x0, p.f_w);
    const Axis ay(p.in_h, p.out_h, p.up_y, p.down_y, p.pad_y0, p.f_h);
    const size_t in_plane = static_cast<size_t>(p.in_h) * p.in_w;
    const size_t out_plane = static_cast<size_t>(p.out_h) * p.out_w;
    // Input rows read by y-class index 0 (a strip of M indices reads span + (M-1)*S rows).
    int first = 0, last = 0;
    bool any = false;
    for (int c = 0; c < ay.P; ++c)
        if (ay.nt[c] > 0 && ay.count[c] > 0) {
            first = any ? std::min(first, ay.i0[c]) : ay.i0[c];
            last = any ? std::max(last, ay.i0[c] + ay.nt[c]) : ay.i0[c] + ay.nt[c];
            any = true;
        }
    const int span = last - first, count = ay.count[0];
    // Strips sized so that their buffers stay in the L2 cache (~128 KiB of float).
    const int row_elems = ax.row_len() + (p.separable ? p.out_w : 0);
    const int M = std::max(1, std::min(count, (32768 / row_elems - span) / ay.S));
    const int max_rows = span + (M - 1) * ay.S;
#pragma omp parallel num_threads(p.num_threads)
    {
        // Per-thread scratch, reused across the strips and planes this thread handles.
        std::vector<T> buf(static_cast<size_t>(max_rows) * ax.row_len()), tmp, cm, w;
        std::vector<const T*> src;
        if (p.separable) tmp.resize(static_cast<size_t>(max_rows) * p.out_w);
        if (ax.P > 1) cm.resize(static_cast<size_t>(M) * ay.P * p.out_w);
#pragma omp for schedule(static)
        for (int64_t n = 0; n < p.planes; ++n) {
            for (int m0 = 0; m0 < count; m0 += M) {
                const int m1 = std::min(count, m0 + M);
                const Strip st{m0, m1, first + m0 * ay.S, first + m0 * ay.S + (any ? span + (m1 - m0 - 1) * ay.S : 0)};
                const int row0 = m0 * ay.P, rows = std::min(m1 * ay.P, p.out_h) - row0;
                T* out = y + n * out_plane + static_cast<size_t>(row0) * p.out_w;
                T* dst = ax.P > 1 ? cm.data() : out;  // class-major first when x has phases
                prepare_rows(x + n * in_plane, ax, p.in_h, st.r0, st.r1, buf.data());
                if (p.separable)
                    strip_separable(ax, ay, st, buf.data(), taps, taps + p.f_w, tmp.data(), dst);
                else
                    strip_2d(ax, ay, st, buf.data(), taps, p.f_w, dst, src, w);
                if (ax.P > 1) scatter_rows(cm.data(), ax, rows, out);
            }
        }
    }
}

template void upfirdn2d_cpu<float>(const Upfirdn2dParams&, const float*, const float*, float*);
template void upfirdn2d_cpu<double>(const Upfirdn2dParams&, const double*, const double*, double*);

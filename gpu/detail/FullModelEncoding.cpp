// Host-only encoding of a full-covariance model for the CUDA E-step (FullModelEncoding.h).
#include "gpu/detail/FullModelEncoding.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "gpu/detail/ModelEncoding.h"

namespace faiss_gmm::gpu::detail {

FullModel encode_full(const GmmModel& model) {
    if (model.covariance_type != CovarianceType::Full) throw std::logic_error("encode_full: not a full model");
    constexpr double kLog2e = 1.4426950408889634074;
    FullModel fm;
    const int64_t K = model.K, d = model.d;
    fm.K = K;
    fm.d = d;
    fm.means = model.means;
    model.stacked_precision_factors(fm.w, fm.mproj);
    const std::vector<double> c = model.log_constants();
    fm.logc2.resize(size_t(K));
    for (int64_t k = 0; k < K; k++) fm.logc2[size_t(k)] = float(kLog2e * c[size_t(k)]);
    const int64_t DP = (d + 31) / 32 * 32;
    fm.DP = int(DP);
    fm.wh.assign(size_t(K * DP * DP), 0);
    fm.wl.assign(size_t(K * DP * DP), 0);
    fm.kinv.resize(size_t(K));
    fm.mproj_padded.assign(size_t(K * DP), 0.f);
    for (int64_t k = 0; k < K; k++) {
        const float* row = fm.w.data() + size_t(k * d * d);
        float mx = 0;
        for (int64_t i = 0; i < d * d; i++) mx = std::max(mx, std::fabs(row[i]));
        int e = 0;
        std::frexp(mx, &e); // mx in [2^(e−1), 2^e)
        const float s = pow2i(14 - e), inv = pow2i(e - 14);
        fm.kinv[size_t(k)] = inv;
        for (int64_t j = 0; j < d; j++) {
            for (int64_t i = 0; i < d; i++) {
                const float v = s * row[j * d + i];
                const uint16_t hi = host_f16(v);
                const size_t at = size_t((k * DP + j) * DP + i);
                fm.wh[at] = hi;
                fm.wl[at] = host_f16(float(double(v) - host_f16_value(hi)));
            }
            fm.mproj_padded[size_t(k * DP + j)] = fm.mproj[size_t(k * d + j)];
        }
    }
    return fm;
}

std::vector<uint16_t> pack_full_factors_sm90(const std::vector<uint16_t>& w, int64_t K, int64_t DP, int64_t W) {
    // The 8 rows i of a row block of column j are contiguous on both sides (w: [k][j][i]; the layout:
    // (j % 8)·8 + i % 8 within a core matrix), so each is one 16-byte copy, at the place
    // full_sm90_factor_index gives its first row. (set_model runs this every EM iteration: entry by
    // entry through full_sm90_factor_index it took ~55 ms per operand at K = 1024, d = 128 on the
    // 2-core dev VM.)
    const int64_t H = full_sm90_factor_halves(DP, W);
    std::vector<uint16_t> out(size_t(K * H));
    for (int64_t k = 0; k < K; k++) {
        for (int64_t i0 = 0; i0 < DP; i0 += 8) {
            for (int64_t j = 8 * full_sm90_first_block(W, i0 / 16); j < DP; j++) {
                std::memcpy(&out[size_t(k * H + full_sm90_factor_index(DP, W, j, i0))],
                            &w[size_t((k * DP + j) * DP + i0)], 8 * sizeof(uint16_t));
            }
        }
    }
    return out;
}

} // namespace faiss_gmm::gpu::detail

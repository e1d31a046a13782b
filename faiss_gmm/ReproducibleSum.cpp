#include "ReproducibleSum.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "ParallelRanges.h"

namespace faiss_gmm {

namespace {

constexpr double kTwo32 = 4294967296.0;       // 2^32
constexpr double kTwoM32 = 1.0 / 4294967296.0; // 2^-32
/// Limbs receive values below 2^32 per addition: after 2^20 additions they are
/// below 2^52, so a merge of two such states stays below 2^53 (exact).
constexpr int64_t kAdditionsBeforeCarry = int64_t(1) << 20;
/// Limbs per thread of the large passes (1 MiB, ~0.1 ms of memory traffic per thread against
/// ~15 µs to start one): once per reproducible EM iteration, so at K = 1024, d = 128 spherical
/// (532K limbs) the add takes 4 threads and result() (kValuesPerThread) 4, which the GPU's EM
/// iteration (~2 ms per million rows) waits for (bench/results/gpu_reproducible_sums.md, run 8).
constexpr int64_t kLimbsPerThread = int64_t(1) << 17;
/// Values per thread of values(): each reads its kLimbs limbs and carries them (~4 ns a value).
constexpr int64_t kValuesPerThread = int64_t(1) << 15;
constexpr int kExactMinExponent = ExactSums::kMinExponent;

/// Carries limbs[0..count) (stride apart) upward so that all but the top one
/// lie in [0, 2^32): a canonical form of the same exact value.
inline void carry_up(double* limbs, int count, size_t stride) {
    for (int j = 0; j + 1 < count; j++) {
        double& l = limbs[size_t(j) * stride];
        const double c = std::floor(l * kTwoM32);
        l -= c * kTwo32;
        limbs[size_t(j + 1) * stride] += c;
    }
}

} // namespace

int scale_exponent_for(double bound) {
    if (!(bound > 0)) return 0;
    if (!std::isfinite(bound)) throw std::invalid_argument("scale_exponent_for: the bound is not finite");
    int e = 0;
    const double m = std::frexp(bound, &e); // bound = m · 2^e, m in [0.5, 1)
    return m == 0.5 ? e - 1 : e;
}

// ---- ExactSums ----

void ExactSums::resize(size_t n) {
    n_ = n;
    limbs_.assign(n * kLimbs, 0.0);
    pending_ = 0;
}

void ExactSums::clear() {
    std::fill(limbs_.begin(), limbs_.end(), 0.0);
    pending_ = 0;
}

void ExactSums::add(size_t i, double v) {
    if (v == 0) return;
    if (!std::isfinite(v)) throw std::invalid_argument("ExactSums: a value to add is not finite");
    int e = 0;
    const double m = std::frexp(v, &e);             // v = m · 2^e, 0.5 <= |m| < 1
    const double mantissa = std::ldexp(m, 53);      // an integer, |mantissa| < 2^53
    const int p = e - 53 - kExactMinExponent;       // v = mantissa · 2^(p + kExactMinExponent)
    const int limb = p >> 5;
    const double x = std::ldexp(mantissa, p & 31);  // exact: 53 bits shifted, below 2^85
    const double a = std::trunc(x * kTwoM32);
    const double b = std::trunc(a * kTwoM32);
    double* l = limbs_.data() + i * kLimbs + limb;
    l[0] += x - a * kTwo32; // each part below 2^32 in magnitude, exact
    l[1] += a - b * kTwo32;
    l[2] += b;
    if (++pending_ >= kAdditionsBeforeCarry) normalize();
}

void ExactSums::add(const double* values) {
    for (size_t i = 0; i < n_; i++) add(i, values[i]);
}

void ExactSums::normalize() {
    for (size_t i = 0; i < n_; i++) carry_up(limbs_.data() + i * kLimbs, kLimbs, 1);
    pending_ = 0;
}

void ExactSums::merge(const ExactSums& other) {
    if (other.n_ != n_) throw std::invalid_argument("ExactSums::merge: sizes differ");
    normalize();
    for (size_t t = 0; t < limbs_.size(); t++) limbs_[t] += other.limbs_[t];
    normalize();
}

void ExactSums::add_limbs(const int64_t* limbs) {
    normalize(); // every limb below 2^32, so one addition below 2^52 stays exact
    for (size_t t = 0; t < limbs_.size(); t++) limbs_[t] += double(limbs[t]);
    normalize();
}

double ExactSums::value(size_t i) const {
    double l[kLimbs];
    std::copy(limbs_.begin() + i * kLimbs, limbs_.begin() + (i + 1) * kLimbs, l);
    carry_up(l, kLimbs, 1);
    // Now every limb but the top one is in [0, 2^32), and the top one carries
    // the sign: a negative sum is turned into its magnitude first, so that the
    // limbs are not a huge negative top plus large positive lower limbs.
    const bool negative = l[kLimbs - 1] < 0;
    if (negative) {
        for (double& v : l) v = -v;
        carry_up(l, kLimbs, 1);
    }
    double r = 0;
    for (int j = kLimbs - 1; j >= 0; j--) r += std::ldexp(l[j], 32 * j + kExactMinExponent);
    return negative ? -r : r;
}

// ---- FixedPointSums ----

void FixedPointSums::resize(size_t n) {
    n_ = n;
    runs_.clear();
    if (n > 0) runs_.push_back(Run{0, n, 1.0, 1.0});
    limbs_.assign(n * kLimbs, 0.0);
    pending_ = 0;
    zero_ = false;
}

void FixedPointSums::clear() {
    zero_ = true;
    pending_ = 0;
}

std::vector<double>& FixedPointSums::materialized() {
    if (zero_) {
        double* sums = limbs_.data();
        parallel_ranges(int64_t(limbs_.size()), kLimbsPerThread, [&](int64_t a, int64_t b) {
            std::fill(sums + a, sums + b, 0.0);
        });
        zero_ = false;
    }
    return limbs_;
}

void FixedPointSums::set_scale(size_t begin, size_t end, int exponent) {
    if (begin > end || end > n_) throw std::out_of_range("FixedPointSums::set_scale: range outside the sums");
    if (begin == end) return;
    // The runs before begin and after end keep their scales (cut at begin / end).
    std::vector<Run> runs;
    for (const Run& r : runs_) {
        if (r.begin < begin) runs.push_back(Run{r.begin, std::min(r.end, begin), r.scale, r.inv_scale});
    }
    runs.push_back(Run{begin, end, std::ldexp(1.0, exponent), std::ldexp(1.0, -exponent)});
    for (const Run& r : runs_) {
        if (r.end > end) runs.push_back(Run{std::max(r.begin, end), r.end, r.scale, r.inv_scale});
    }
    runs_ = std::move(runs);
}

void FixedPointSums::add(const double* values) {
    add_segment(0, values, n_);
    done();
}

void FixedPointSums::done() {
    if (++pending_ >= kAdditionsBeforeCarry) normalize();
}

void FixedPointSums::add_segment(size_t begin, const double* values, size_t count) {
    if (begin + count > n_) throw std::out_of_range("FixedPointSums::add_segment: past the end of the sums");
    materialized();
    const size_t end = begin + count;
    for (const Run& r : runs_) {
        const size_t b = std::max(begin, r.begin), e = std::min(end, r.end);
        if (b >= e) continue;
        double* __restrict l0 = limbs_.data() + b;
        double* __restrict l1 = l0 + n_;
        double* __restrict l2 = l1 + n_;
        double* __restrict l3 = l2 + n_;
        const double* __restrict v = values + (b - begin);
        const double inv = r.inv_scale;
        // q − trunc(q) is exact, and so are the scalings by powers of two: every
        // limb receives an exact integer, and what is left below 2^-96 is dropped.
#pragma omp simd
        for (size_t i = 0; i < e - b; i++) {
            double q = v[i] * inv;
            const double t0 = std::trunc(q);
            q = (q - t0) * kTwo32;
            const double t1 = std::trunc(q);
            q = (q - t1) * kTwo32;
            const double t2 = std::trunc(q);
            q = (q - t2) * kTwo32;
            l0[i] += t0;
            l1[i] += t1;
            l2[i] += t2;
            l3[i] += std::trunc(q);
        }
    }
}

void FixedPointSums::normalize() {
    pending_ = 0;
    if (zero_) return; // zero is canonical
    // Carry limb 3 → 2 → 1 → 0 (limb 0, the integer part, keeps the sign).
    for (int j = kLimbs - 1; j >= 1; j--) {
        double* __restrict lo = limbs_.data() + size_t(j) * n_;
        double* __restrict hi = lo - n_;
        for (size_t i = 0; i < n_; i++) {
            const double c = std::floor(lo[i] * kTwoM32);
            lo[i] -= c * kTwo32;
            hi[i] += c;
        }
    }
}

void FixedPointSums::merge(const FixedPointSums& other) {
    if (other.n_ != n_) throw std::invalid_argument("FixedPointSums::merge: sizes differ");
    if (other.zero_) return;
    normalize();
    materialized();
    for (size_t t = 0; t < limbs_.size(); t++) limbs_[t] += other.limbs_[t];
    normalize();
}

void FixedPointSums::add_limbs(const int32_t* limbs, int nlimbs) {
    if (nlimbs < 1 || nlimbs > kLimbs) {
        throw std::invalid_argument("FixedPointSums::add_limbs: " + std::to_string(nlimbs) +
                                    " limbs per value, expected 1 to " + std::to_string(kLimbs));
    }
    // Exact additions (integers below 2^32 each), so any split gives the same limbs. Threads
    // for large sums (full covariances: K·d(d+1)/2 values, 8.4M at K = 1024, d = 128): the pass
    // is memory-bound (bench/results/gpu_reproducible_sums.md). After clear(), the limbs are
    // written instead (the ones not given: zero), one pass over them instead of two.
    const int64_t given = int64_t(nlimbs) * int64_t(n_);
    double* sums = limbs_.data();
    if (zero_) {
        parallel_ranges(int64_t(limbs_.size()), kLimbsPerThread, [&](int64_t a, int64_t b) {
            const int64_t g = std::clamp(given, a, b);
            for (int64_t t = a; t < g; t++) sums[t] = double(limbs[t]);
            std::fill(sums + g, sums + b, 0.0);
        });
        zero_ = false;
    } else {
        parallel_ranges(given, kLimbsPerThread, [&](int64_t a, int64_t b) {
            for (int64_t t = a; t < b; t++) sums[t] += double(limbs[t]);
        });
    }
    done();
}

namespace {

/// std::floor(x · 2^-32) for an integer-valued x below 2^63 (a limb), the same bits: an
/// arithmetic shift of x as an integer (exact), and x · 2^-32 for a zero (its sign, as floor
/// keeps it). Inline: std::floor is a library call without SSE4.1 in the baseline instruction
/// set, and grid_value takes three per value.
inline double carry_of(double x) {
    return x == 0.0 ? x * kTwoM32 : double(int64_t(x) >> 32);
}

/// Sum i of limb-major limbs (n per limb) in units of its grid, rounded once: the limbs put in
/// canonical form (as normalize()) and combined from the smallest. value() and values().
inline double grid_value(const double* limbs, size_t n, size_t i) {
    double l[FixedPointSums::kLimbs];
    for (int j = 0; j < FixedPointSums::kLimbs; j++) l[j] = limbs[size_t(j) * n + i];
    for (int j = FixedPointSums::kLimbs - 1; j >= 1; j--) {
        const double c = carry_of(l[j]);
        l[j] -= c * kTwo32;
        l[j - 1] += c;
    }
    const double frac = (l[1] + (l[2] + l[3] * kTwoM32) * kTwoM32) * kTwoM32;
    return l[0] + frac;
}

} // namespace

double FixedPointSums::value(size_t i) const {
    if (zero_) return 0.0;
    // The run holding i: the last one that begins at or before it.
    const auto run = std::upper_bound(runs_.begin(), runs_.end(), i,
                                      [](size_t v, const Run& r) { return v < r.begin; }) - 1;
    return grid_value(limbs_.data(), n_, i) * run->scale;
}

void FixedPointSums::values(size_t begin, size_t end, double* out) const {
    if (begin > end || end > n_) throw std::out_of_range("FixedPointSums::values: range outside the sums");
    if (zero_) {
        std::fill(out, out + (end - begin), 0.0);
        return;
    }
    // Each value on its own (no carries between values), so pieces on threads give the same bits.
    // The runs are disjoint and in order (set_scale): each piece walks them from its first value's
    // run instead of searching per value.
    parallel_ranges(int64_t(end - begin), kValuesPerThread, [&](int64_t a, int64_t b) {
        const size_t first = begin + size_t(a), last = begin + size_t(b);
        auto run = std::upper_bound(runs_.begin(), runs_.end(), first,
                                    [](size_t v, const Run& r) { return v < r.begin; }) - 1;
        for (size_t i = first; i < last; ++run) {
            const size_t stop = std::min(last, run->end);
            const double scale = run->scale;
            for (; i < stop; i++) out[i - begin] = grid_value(limbs_.data(), n_, i) * scale;
        }
    });
}

} // namespace faiss_gmm

// Reproducible sums (issue 13, item 1): ExactSums and FixedPointSums give the
// same bits for any order and grouping of the same values, and are accurate to
// the bounds stated in ReproducibleSum.h; the CPU E-step's reproducible path
// gives the same statistics for any thread count and any block-aligned cut of
// the rows into calls; BlockAlignedRows hands every row to exactly one rank.
#include <gtest/gtest.h>

#include <omp.h>
#include <quadmath.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "faiss_gmm/BlockAlignedRows.h"
#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/ReproducibleSum.h"
#include "faiss_gmm/SufficientStats.h"
#include "gpu/detail/LimbFormat.h"
#include "error_bounds.h"
#include "test_helpers.h"

using namespace faiss_gmm;

namespace {

/// Values of wildly different magnitudes and both signs.
std::vector<double> wide_values(size_t n, uint64_t seed, int min_exp, int max_exp) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> mant(0.5, 1.0);
    std::uniform_int_distribution<int> ex(min_exp, max_exp);
    std::vector<double> v(n);
    for (double& x : v) x = std::ldexp(mant(rng), ex(rng)) * (rng() & 1 ? 1 : -1);
    return v;
}

/// The sum in binary128 (113-bit mantissa). For n values within 2^±40 of each
/// other, its error is below n·2^-113 of the largest: far below half an ulp of
/// a double, so rounding it to double gives the correctly rounded exact sum.
double quad_sum(const std::vector<double>& v) {
    __float128 s = 0;
    for (double x : v) s += x;
    return double(s);
}

double ulp(double x) {
    return std::nextafter(std::fabs(x), INFINITY) - std::fabs(x);
}

} // namespace

TEST(ReproducibleSum, ExactSumsIsExactWhereDoubleSummationLosesEverything) {
    ExactSums s(1);
    for (double v : {0x1p100, 1.0, -0x1p100, 0x1p-1074, -1.0}) s.add(0, v);
    EXPECT_EQ(s.value(0), 0x1p-1074); // the smallest subnormal survives 2^100 ± 2^100
    ExactSums big(1);
    for (double v : {0x1.fffffffffffffp1023, 0x1.fffffffffffffp1023, -0x1.fffffffffffffp1023}) big.add(0, v);
    EXPECT_EQ(big.value(0), 0x1.fffffffffffffp1023); // an intermediate beyond DBL_MAX
}

TEST(ReproducibleSum, ExactSumsSameBitsInAnyOrderAndGrouping) {
    std::vector<double> v = wide_values(20000, 1, -300, 300);
    ExactSums a(1);
    for (double x : v) a.add(0, x);
    std::mt19937_64 rng(2);
    for (int rep = 0; rep < 5; rep++) {
        std::shuffle(v.begin(), v.end(), rng);
        // Cut into 1..7 groups summed apart, then merged in a random order.
        const size_t groups = 1 + rng() % 7;
        std::vector<ExactSums> parts(groups, ExactSums(1));
        for (size_t i = 0; i < v.size(); i++) parts[rng() % groups].add(0, v[i]);
        ExactSums total(1);
        for (const ExactSums& p : parts) total.merge(p);
        EXPECT_EQ(total.value(0), a.value(0)) << "repetition " << rep;
    }
}

TEST(ReproducibleSum, ExactSumsIsCorrectToOneUlp) {
    // value() rounds the canonical limbs top-down: within 1 ulp of the exact sum
    // (each step adds a non-negative term below the ulp of what is already there
    // once the top limbs are in), here against a binary128 reference.
    for (uint64_t seed = 0; seed < 10; seed++) {
        const std::vector<double> v = wide_values(5000, 10 + seed, -40, 40);
        ExactSums s(1);
        for (double x : v) s.add(0, x);
        const double want = quad_sum(v);
        EXPECT_LE(std::fabs(s.value(0) - want), ulp(want)) << "seed " << seed;
    }
}

TEST(ReproducibleSum, FixedPointSumsSameBitsAndWithinTheTruncationBound) {
    const size_t n = 37;
    std::mt19937_64 rng(3);
    std::vector<std::vector<double>> rows(3000, std::vector<double>(n));
    for (auto& r : rows) r = wide_values(n, rng(), -30, 10); // below the scale 2^10
    FixedPointSums a(n);
    a.set_scale(0, n, 10);
    for (const auto& r : rows) a.add(r.data());
    for (int rep = 0; rep < 3; rep++) {
        std::shuffle(rows.begin(), rows.end(), rng);
        FixedPointSums p1(n), p2(n);
        p1.set_scale(0, n, 10);
        p2.set_scale(0, n, 10);
        for (size_t i = 0; i < rows.size(); i++) (i % 3 ? p1 : p2).add(rows[i].data());
        p2.merge(p1);
        for (size_t i = 0; i < n; i++) ASSERT_EQ(p2.value(i), a.value(i)) << "value " << i;
    }
    // Each addition drops less than 2^-96 of the scale; value() rounds once more
    // per limb (3 roundings of at most half an ulp, plus the exact-sum ulp).
    for (size_t i = 0; i < n; i++) {
        std::vector<double> col;
        for (const auto& r : rows) col.push_back(r[i]);
        const double want = quad_sum(col);
        const double bound = double(rows.size()) * 0x1p-96 * 0x1p10 + 2 * ulp(want);
        EXPECT_LE(std::fabs(a.value(i) - want), bound) << "value " << i;
    }
}

TEST(ReproducibleSum, FixedPointLimbsSurviveASumOverRanks) {
    // An allreduce adds the normalized limbs of every rank in any order: integers
    // below 2^32 each, so the double sum is exact.
    const size_t n = 5;
    std::vector<FixedPointSums> ranks(4, FixedPointSums(n));
    FixedPointSums one(n);
    one.set_scale(0, n, 3);
    std::mt19937_64 rng(4);
    for (auto& r : ranks) r.set_scale(0, n, 3);
    for (int i = 0; i < 4000; i++) {
        const std::vector<double> v = wide_values(n, rng(), -60, 2);
        ranks[size_t(i) % 4].add(v.data());
        one.add(v.data());
    }
    std::vector<double> reduced(ranks[0].limbs().size(), 0.0);
    for (int r : {2, 0, 3, 1}) {
        ranks[size_t(r)].normalize();
        for (size_t t = 0; t < reduced.size(); t++) reduced[t] += ranks[size_t(r)].limbs()[t];
    }
    ranks[0].limbs() = reduced;
    ranks[0].normalize();
    for (size_t i = 0; i < n; i++) EXPECT_EQ(ranks[0].value(i), one.value(i));
}

namespace {

/// A plausible partial of one 4096-row block: second moments of either sign for full
/// covariances (off-diagonal entries), positive for the others.
SufficientStats random_block_partial(int64_t K, int64_t d, CovarianceType type, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    SufficientStats p(K, d, type);
    p.n = 4096;
    p.loglik = -1e4 * (1.5 + u(rng));
    for (auto& v : p.nk) v = 2048 * (1 + u(rng));
    for (auto& v : p.sum_x) v = 3e4 * u(rng);
    for (auto& v : p.sum_sq) v = 1e6 * (type == CovarianceType::Full ? u(rng) : 1 + u(rng));
    return p;
}

} // namespace

TEST(ReproducibleSum, AccumulatorTakesLimbsComputedElsewhere) {
    // The CUDA E-step's contract (gpu/detail/ReproducibleLimbs.h): each worker puts its block
    // partials on the accumulator's grids truncated toward zero at 2^-64 of the scale, sums them as
    // integers and hands over three balanced 32-bit limbs per value (L1, L2 in [-2^31, 2^31)),
    // which StatsAccumulator::add_limbs adds for every worker. With partials on that grid
    // (multiples of 2^-40; the scales are 1, 2^3 and 2^10), the same bits as adding the partials
    // one by one, for any split; after clear() the first add_limbs writes the limbs instead of
    // adding them, which must not matter either.
    const int64_t K = 3, d = 4;
    std::mt19937_64 rng(11);
    auto on_grid = [](std::vector<double>& v) {
        for (double& x : v) x = std::ldexp(std::round(std::ldexp(x, 40)), -40);
    };
    std::vector<SufficientStats> partials;
    for (int b = 0; b < 60; b++) {
        partials.push_back(random_block_partial(K, d, CovarianceType::Spherical, rng));
        on_grid(partials.back().nk);
        on_grid(partials.back().sum_x);
        on_grid(partials.back().sum_sq);
    }
    StatsAccumulator direct(K, d, CovarianceType::Spherical);
    direct.set_row_bounds(8.0, 600.0);
    for (const auto& p : partials) direct.add(p);
    SufficientStats want;
    direct.result(want);
    constexpr double kTwo31 = 2147483648.0, kTwo32 = 4294967296.0;
    for (int workers : {1, 2, 3}) {
        for (bool cleared : {false, true}) {
            StatsAccumulator via(K, d, CovarianceType::Spherical);
            via.set_row_bounds(8.0, 600.0);
            if (cleared) via.clear();
            for (int w = 0; w < workers; w++) {
                // One worker's limbs: the same grids, its blocks only, carried (canonical).
                StatsAccumulator mine(K, d, CovarianceType::Spherical);
                mine.set_row_bounds(8.0, 600.0);
                int64_t rows = 0;
                for (size_t b = size_t(w); b < partials.size(); b += size_t(workers)) {
                    mine.add(partials[b]);
                    rows += int64_t(partials[b].n);
                }
                const std::vector<double> flat = mine.flat(); // [n | 72 loglik limbs | 4 × nvalues], carried
                std::vector<int64_t> loglik(flat.begin() + 1, flat.begin() + 1 + ExactSums::kLimbs);
                for (size_t t = 0; t < loglik.size(); t++) ASSERT_EQ(double(loglik[t]), flat[t + 1]) << "limb " << t;
                // The canonical limbs (1..3 in [0, 2^32)) cut as the GPU hands them over: balanced.
                const size_t nv = mine.nvalues();
                const double* l = flat.data() + 1 + ExactSums::kLimbs;
                std::vector<int32_t> values(3 * nv);
                for (size_t t = 0; t < nv; t++) {
                    ASSERT_EQ(l[3 * nv + t], 0.0) << "value " << t << " is not on the 2^-64 grid";
                    double l0 = l[t], l1 = l[nv + t], l2 = l[2 * nv + t];
                    if (l2 >= kTwo31) {
                        l2 -= kTwo32;
                        l1 += 1;
                    }
                    if (l1 >= kTwo31) {
                        l1 -= kTwo32;
                        l0 += 1;
                    }
                    ASSERT_LT(std::fabs(l0), kTwo31) << "limb 0 of value " << t;
                    values[t] = int32_t(l0);
                    values[nv + t] = int32_t(l1);
                    values[2 * nv + t] = int32_t(l2);
                }
                via.add_limbs(rows, loglik.data(), values.data(), 3);
            }
            SufficientStats got;
            via.result(got);
            const std::string label = std::to_string(workers) + " workers" + (cleared ? ", cleared" : "");
            EXPECT_EQ(got.n, want.n) << label;
            EXPECT_EQ(got.loglik, want.loglik) << label;
            EXPECT_EQ(got.nk, want.nk) << label;
            EXPECT_EQ(got.sum_x, want.sum_x) << label;
            EXPECT_EQ(got.sum_sq, want.sum_sq) << label;
        }
    }
    EXPECT_EQ(direct.x_exponent(), 3);
    EXPECT_EQ(direct.sq_exponent(), 10);
}

TEST(ReproducibleSum, ResultOverwritesWhateverTheOutputHeld) {
    // result() resizes its output instead of zeroing it first: statistics read into an output
    // that held others (NaNs of the same shape, a larger or a smaller shape, another covariance
    // type) are the ones read into a fresh one, shape included.
    const int64_t K = 3, d = 4;
    std::mt19937_64 rng(12);
    StatsAccumulator acc(K, d, CovarianceType::Diagonal);
    acc.set_row_bounds(8.0, 600.0);
    for (int b = 0; b < 5; b++) acc.add(random_block_partial(K, d, CovarianceType::Diagonal, rng));
    SufficientStats want;
    acc.result(want);
    SufficientStats nans(K, d, CovarianceType::Diagonal);
    for (auto* v : {&nans.nk, &nans.sum_x, &nans.sum_sq}) std::fill(v->begin(), v->end(), std::nan(""));
    nans.n = nans.loglik = std::nan("");
    std::vector<SufficientStats> outs = {nans, SufficientStats(7, 9, CovarianceType::Full),
                                         SufficientStats(1, 2, CovarianceType::Spherical),
                                         SufficientStats(K, d, CovarianceType::Full, false)};
    for (size_t o = 0; o < outs.size(); o++) {
        SufficientStats& got = outs[o];
        acc.result(got);
        EXPECT_EQ(got.K, K) << "output " << o;
        EXPECT_EQ(got.d, d) << "output " << o;
        EXPECT_EQ(got.covariance_type, CovarianceType::Diagonal) << "output " << o;
        EXPECT_EQ(got.n, want.n) << "output " << o;
        EXPECT_EQ(got.loglik, want.loglik) << "output " << o;
        EXPECT_EQ(got.nk, want.nk) << "output " << o;
        EXPECT_EQ(got.sum_x, want.sum_x) << "output " << o;
        EXPECT_EQ(got.sum_sq, want.sum_sq) << "output " << o;
    }
}

TEST(ReproducibleSum, GpuLimbFormatAddsUpExactly) {
    // The CUDA E-step's device format (gpu/detail/LimbFormat.h, host code too): 2^12 partials q
    // (the most one value gets in a call piece) of every magnitude up to the 2^22 limit, both
    // signs, put on the 2^-64 grid (grid_limbs), their two integers summed as the device's
    // atomics do (any order: integers), cut into three 32-bit limbs (cut_limbs) and added to
    // FixedPointSums: the limbs must hold exactly Σ trunc(q·2^64)·2^-64, computed in binary128
    // (exact here: 113 bits span 2^34 .. 2^-64). Then the limits: partials at the edge of the
    // grid, non-finite ones, and sums whose L0 leaves 32 bits.
    using gpu::detail::cut_limbs;
    using gpu::detail::grid_limbs;
    constexpr int kParts = 4096;
    std::mt19937_64 rng(21);
    std::uniform_real_distribution<double> u(0.5, 1.0);
    std::uniform_int_distribution<int> e(-80, 21);
    auto check = [](const std::vector<double>& q, const std::string& label) {
        long long hi = 0, lo = 0;
        __float128 want = 0;
        for (double v : q) {
            long long l[gpu::detail::kDeviceLimbs];
            ASSERT_TRUE(grid_limbs(v, l)) << label << ": " << v;
            ASSERT_TRUE(std::llabs(l[1]) < (1ll << 40) && (l[1] == 0 || (l[1] < 0) == (v < 0))) << label << ": " << v;
            hi += l[0];
            lo += l[1];
            want += truncq(__float128(v) * 18446744073709551616.0Q) / 18446744073709551616.0Q; // 2^64
        }
        int32_t limbs[gpu::detail::kHostLimbs];
        ASSERT_TRUE(cut_limbs(hi, lo, limbs)) << label;
        EXPECT_LT(std::llabs(limbs[1]), (1ll << 31) + 1) << label;
        FixedPointSums sums(1);
        sums.clear();
        sums.add_limbs(limbs, gpu::detail::kHostLimbs);
        const std::vector<double>& l = sums.limbs();
        const __float128 got = __float128(l[0]) + __float128(l[1]) / 4294967296.0Q +
                               __float128(l[2]) / 18446744073709551616.0Q + __float128(l[3]) / 79228162514264337593543950336.0Q;
        EXPECT_TRUE(got == want) << label << ": " << double(got) << " vs " << double(want);
    };
    std::vector<double> q(kParts);
    for (double& v : q) v = std::ldexp(u(rng), e(rng)) * (rng() % 2 ? 1 : -1);
    check(q, "wide magnitudes");
    std::shuffle(q.begin(), q.end(), rng);
    check(q, "shuffled");
    for (double& v : q) v = std::ldexp(u(rng), 18); // Σ ~ 2^30: L0 just inside 32 bits
    check(q, "large positive");
    for (double& v : q) v = -std::ldexp(u(rng), 18);
    check(q, "large negative");
    for (double& v : q) v = (rng() % 2 ? 1 : -1) * std::ldexp(1.0, -70); // below the grid: 0 each
    check(q, "below the grid");
    long long l[gpu::detail::kDeviceLimbs];
    EXPECT_TRUE(grid_limbs(std::nextafter(4194304.0, 0.0), l));
    EXPECT_FALSE(grid_limbs(4194304.0, l));
    EXPECT_FALSE(grid_limbs(-4194304.0, l));
    EXPECT_FALSE(grid_limbs(std::nan(""), l));
    EXPECT_FALSE(grid_limbs(INFINITY, l));
    EXPECT_EQ(l[0], 0);
    EXPECT_EQ(l[1], 0);
    // 2^12 partials just below 2^22: Σ q ~ 2^34, L0 leaves 32 bits (the call then throws); no
    // integer wrapped on the way (hi < 2^58), so the check sees it.
    long long hi = 0, lo = 0;
    for (int i = 0; i < kParts; i++) {
        ASSERT_TRUE(grid_limbs(std::nextafter(4194304.0, 0.0), l));
        hi += l[0];
        lo += l[1];
    }
    int32_t limbs[gpu::detail::kHostLimbs];
    EXPECT_FALSE(cut_limbs(hi, lo, limbs));
    EXPECT_FALSE(cut_limbs(-hi, 0, limbs));
}

TEST(ReproducibleSum, ValuesInOnePassAreTheBitsOfValue) {
    // FixedPointSums::values (StatsAccumulator::result's read of every value) walks the scales'
    // runs instead of searching each value's: the same arithmetic, so the same bits as value(i),
    // on runs of three scales, from adds of doubles of either sign and from GPU-style int32
    // limbs, for ranges that start and end inside runs, and for cleared sums. n is large enough
    // that values() and add_limbs() split the work across threads (more than 2 × 2^13 values,
    // 2 × 2^15 limbs: kValuesPerPiece, kLimbsPerPiece), with pieces that begin inside runs.
    const size_t n = 100000;
    FixedPointSums s(n);
    s.set_scale(0, 30000, -3);
    s.set_scale(30000, 70000, 11);
    s.set_scale(70000, n, 40);
    std::mt19937_64 rng(77);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    std::vector<double> v(n);
    for (int rep = 0; rep < 5; rep++) {
        for (size_t i = 0; i < n; i++) v[i] = std::ldexp(u(rng), int(rng() % 60) - 20);
        s.add(v.data());
    }
    std::vector<int32_t> limbs(3 * n);
    for (int32_t& l : limbs) l = int32_t(uint32_t(rng()));
    s.add_limbs(limbs.data(), 3);
    auto check = [&](size_t begin, size_t end, const std::string& what) {
        std::vector<double> got(end - begin);
        s.values(begin, end, got.data());
        for (size_t i = begin; i < end; i++) {
            const double want = s.value(i);
            EXPECT_EQ(std::memcmp(&got[i - begin], &want, sizeof(double)), 0)
                    << what << ": value " << i << ": " << got[i - begin] << " vs " << want;
        }
    };
    check(0, n, "all");
    check(12345, 81111, "inside runs");
    // Against the canonical form computed here, on limbs set directly: zeros of both signs,
    // negative limbs, the largest a limb holds (2^53 − 1), and the added ones above.
    std::vector<double>& L = s.limbs();
    const double edge[] = {0.0, -0.0, 1.0, -1.0, 4294967295.0, -4294967296.0, 9007199254740991.0,
                           -9007199254740991.0, 123456789.0, -0.0};
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < FixedPointSums::kLimbs; j++) {
            if ((i + size_t(j)) % 3 == 0) L[size_t(j) * n + i] = edge[(i * 7 + size_t(j)) % 10];
        }
    }
    std::vector<double> got(n);
    s.values(0, n, got.data());
    for (size_t i = 0; i < n; i++) {
        double l[FixedPointSums::kLimbs];
        for (int j = 0; j < FixedPointSums::kLimbs; j++) l[j] = L[size_t(j) * n + i];
        for (int j = FixedPointSums::kLimbs - 1; j >= 1; j--) {
            const double c = std::floor(l[j] / 4294967296.0);
            l[j] -= c * 4294967296.0;
            l[j - 1] += c;
        }
        const double frac = (l[1] + (l[2] + l[3] / 4294967296.0) / 4294967296.0) / 4294967296.0;
        const double want = (l[0] + frac) * std::ldexp(1.0, i < 30000 ? -3 : i < 70000 ? 11 : 40);
        EXPECT_EQ(std::memcmp(&got[i], &want, sizeof(double)), 0) << "value " << i << ": " << got[i] << " vs " << want;
    }
    check(30000, 70000, "one run");
    check(5, 5, "empty");
    s.clear();
    check(0, n, "cleared");
    std::vector<double> out(1);
    EXPECT_THROW(s.values(n, n + 1, out.data()), std::out_of_range);
}

namespace {

/// FixedPointSums::value(i) as it was before values() went to vector lanes (9ebfbc4): the
/// canonical carries by an arithmetic shift of each limb as an int64 (a zero carry keeping the
/// limb's sign), the limbs combined from the smallest. The reference the new formulation must
/// match bit for bit.
double scalar_grid_value(const double* limbs, size_t n, size_t i) {
    const auto carry_of = [](double x) { return x == 0.0 ? x * 0x1p-32 : double(int64_t(x) >> 32); };
    double l[FixedPointSums::kLimbs];
    for (int j = 0; j < FixedPointSums::kLimbs; j++) l[j] = limbs[size_t(j) * n + i];
    for (int j = FixedPointSums::kLimbs - 1; j >= 1; j--) {
        const double c = carry_of(l[j]);
        l[j] -= c * 0x1p32;
        l[j - 1] += c;
    }
    return l[0] + (l[1] + (l[2] + l[3] * 0x1p-32) * 0x1p-32) * 0x1p-32;
}

/// A limb (an integer-valued double) of one of the kinds values() must carry exactly: zeros of
/// both signs, a GPU's balanced int32 limb, sums of a few, multiples of 2^32 and their
/// neighbours (carries at the edge), any magnitude below 2^51 (values()' vector lanes) and, if
/// `large`, 2^51 and beyond up to 2^53 − 1 (its scalar fallback).
double random_limb(std::mt19937_64& rng, bool large) {
    const double sign = rng() & 1 ? 1.0 : -1.0;
    switch (rng() % (large ? 9 : 6)) {
        case 0: return sign * 0.0;
        case 1: return double(int32_t(uint32_t(rng())));
        case 2: {
            double sum = 0;
            for (int k = 0; k < 3; k++) sum += double(int32_t(uint32_t(rng())));
            return sum;
        }
        case 3: return double((int64_t(rng() % (uint64_t(1) << 19)) - (int64_t(1) << 18)) * (int64_t(1) << 32) +
                              int64_t(rng() % 3) - 1); // below 2^51
        case 4: return sign * double(rng() >> (14 + rng() % 50)); // below 2^50
        case 5: return sign * (0x1p51 - 1.0);                      // the largest the lanes take
        case 6: return sign * (0x1p51 + double(rng() % 4));
        case 7: return sign * double(rng() % (uint64_t(1) << 53)); // up to 2^53 − 1
        default: return sign * (0x1p53 - 1.0);
    }
}

} // namespace

TEST(ReproducibleSum, VectorValuesAreTheBitsOfTheScalarCarries) {
    // values() and value() carry in double arithmetic without branches (vector lanes) while limbs
    // 1..3 are below 2^51, by std::floor otherwise: the bits of the scalar int64 carries above
    // for every kind of limb, on sums large enough for values() to split across threads (pieces
    // of kValuesPerPiece = 2^13 values), with runs of three scales. Large limbs only in the
    // middle run, so the other runs take the vector lanes; limb 0 takes any value (it only
    // receives a carry).
    const size_t n = 3 * (size_t(1) << 15) + 1234;
    const size_t run1 = 40000, run2 = 70000;
    FixedPointSums s(n);
    s.set_scale(0, run1, -7);
    s.set_scale(run1, run2, 0);
    s.set_scale(run2, n, 33);
    std::mt19937_64 rng(2024);
    for (int rep = 0; rep < 3; rep++) {
        std::vector<double>& L = s.limbs();
        for (size_t i = 0; i < n; i++) {
            const bool large = i >= run1 && i < run2;
            L[i] = random_limb(rng, true);
            for (int j = 1; j < FixedPointSums::kLimbs; j++) L[size_t(j) * n + i] = random_limb(rng, large);
        }
        std::vector<double> got(n);
        s.values(0, n, got.data());
        for (size_t i = 0; i < n; i++) {
            const double scale = std::ldexp(1.0, i < run1 ? -7 : i < run2 ? 0 : 33);
            const double want = scalar_grid_value(L.data(), n, i) * scale;
            ASSERT_EQ(std::memcmp(&got[i], &want, sizeof(double)), 0)
                    << "repetition " << rep << ", value " << i << ": " << got[i] << " vs " << want << " (limbs "
                    << L[i] << ", " << L[n + i] << ", " << L[2 * n + i] << ", " << L[3 * n + i] << ")";
            const double one = s.value(i);
            ASSERT_EQ(std::memcmp(&one, &want, sizeof(double)), 0) << "value(" << i << "): " << one << " vs " << want;
        }
        // A range that starts and ends inside runs, cut into other pieces.
        const size_t begin = 12345, end = n - 999;
        std::vector<double> part(end - begin);
        s.values(begin, end, part.data());
        ASSERT_EQ(std::memcmp(part.data(), got.data() + begin, part.size() * sizeof(double)), 0);
    }
}

TEST(ReproducibleSum, NormalizeCarriesToTheCanonicalLimbs) {
    // normalize() carries in vector lanes while limbs 1..3 are below 2^51 and by std::floor
    // otherwise, in pieces on threads: every limb equals the scalar carries' (as numbers: the sign
    // of a zero limb may differ, which no value reads), limbs 1..3 end in [0, 2^32), and the
    // values keep their bits. Large limbs in the middle third only; limb 0 any value.
    const size_t n = 3 * (size_t(1) << 13) + 555;
    FixedPointSums s(n);
    std::mt19937_64 rng(31);
    std::vector<double>& L = s.limbs();
    for (size_t i = 0; i < n; i++) {
        L[i] = random_limb(rng, true);
        const bool large = i >= n / 3 && i < 2 * n / 3;
        for (int j = 1; j < FixedPointSums::kLimbs; j++) L[size_t(j) * n + i] = random_limb(rng, large);
    }
    std::vector<double> want = L, before(n), after(n);
    for (int j = FixedPointSums::kLimbs - 1; j >= 1; j--) {
        for (size_t i = 0; i < n; i++) {
            const double c = std::floor(want[size_t(j) * n + i] / 4294967296.0);
            want[size_t(j) * n + i] -= c * 4294967296.0;
            want[size_t(j - 1) * n + i] += c;
        }
    }
    s.values(0, n, before.data());
    s.normalize();
    const std::vector<double>& got = s.limbs();
    for (size_t t = 0; t < got.size(); t++) {
        ASSERT_EQ(got[t], want[t]) << "limb " << t / n << " of value " << t % n;
        if (t >= n) ASSERT_TRUE(got[t] >= 0 && got[t] < 4294967296.0) << "limb " << t / n << " of value " << t % n;
    }
    s.values(0, n, after.data());
    EXPECT_EQ(std::memcmp(before.data(), after.data(), n * sizeof(double)), 0);
}

TEST(ReproducibleSum, LimbsNotGivenSinceClearReadAsZeros) {
    // After clear(), add_limbs() of 1 to 3 limbs per value stores only those: the others keep
    // whatever the sums held before (here: large limbs of either sign) and must read as zeros
    // everywhere: in values() and value() (which then carry only the stored limbs), in a later
    // add_limbs() of more limbs, normalize(), merge() either way, and limbs(). Against the
    // scalar reference on limbs kept here, sizes split across threads.
    const size_t n = 3 * (size_t(1) << 13) + 777;
    std::mt19937_64 rng(99);
    auto expect_values = [&](const FixedPointSums& s, const std::vector<double>& ref, const std::string& what) {
        std::vector<double> got(n);
        s.values(0, n, got.data());
        for (size_t i = 0; i < n; i++) {
            const double want = scalar_grid_value(ref.data(), n, i) * 0x1p-5;
            ASSERT_EQ(std::memcmp(&got[i], &want, sizeof(double)), 0) << what << ": value " << i;
            const double one = s.value(i);
            ASSERT_EQ(std::memcmp(&one, &want, sizeof(double)), 0) << what << ": value(" << i << ")";
        }
    };
    for (int nlimbs = 1; nlimbs < FixedPointSums::kLimbs; nlimbs++) {
        const std::string label = std::to_string(nlimbs) + " limbs given";
        FixedPointSums s(n);
        s.set_scale(0, n, -5);
        for (double& l : s.limbs()) l = random_limb(rng, true); // stale after clear()
        s.clear();
        std::vector<double> ref(n * FixedPointSums::kLimbs, 0.0);
        std::vector<int32_t> given(size_t(nlimbs + 1) * n);
        for (int32_t& g : given) g = int32_t(uint32_t(rng()));
        s.add_limbs(given.data(), nlimbs);
        for (size_t t = 0; t < size_t(nlimbs) * n; t++) ref[t] += given[t];
        expect_values(s, ref, label);
        FixedPointSums into(n), from(n);
        into.set_scale(0, n, -5);
        into.merge(s); // partly stored sums merged into others
        expect_values(into, ref, label + ", merged into fresh sums");
        s.add_limbs(given.data(), nlimbs + 1); // one more limb: written, the others added
        for (size_t t = 0; t < size_t(nlimbs + 1) * n; t++) ref[t] += given[t];
        expect_values(s, ref, label + ", then " + std::to_string(nlimbs + 1));
        from.clear();
        from.add_limbs(given.data(), 1);
        s.merge(from); // partly stored sums merged into these
        for (size_t t = 0; t < n; t++) ref[t] += given[t];
        expect_values(s, ref, label + ", then merged with one limb");
        s.clear();
        s.add_limbs(given.data(), nlimbs);
        s.normalize();
        std::fill(ref.begin(), ref.end(), 0.0);
        for (size_t t = 0; t < size_t(nlimbs) * n; t++) ref[t] = given[t];
        expect_values(s, ref, label + ", normalized");
        s.clear();
        s.add_limbs(given.data(), nlimbs);
        const std::vector<double>& L = s.limbs();
        for (size_t t = size_t(nlimbs) * n; t < L.size(); t++) ASSERT_EQ(L[t], 0.0) << label << ": limb slot " << t;
    }
}

TEST(ReproducibleSum, LargeLimbAddsAndClearsSplitAcrossThreads) {
    // FixedPointSums::add_limbs and the zeroing that clear() leaves for later split sums of 2^16
    // limbs or more across threads (2 × kLimbsPerPiece; faiss_gmm/ParallelRanges.h): 3·2^18
    // values (3·2^20 limbs: many pieces) must get every limb, once, as one thread would: a
    // different int32 of either sign in each of the three limbs given per value; added to zeros, then after clear()
    // written and added once more, against 2× each given limb (limb 3: zero) slot by slot.
    const size_t n = size_t(3) << 18, given = 3 * n, nl = n * FixedPointSums::kLimbs;
    FixedPointSums sums(n);
    std::vector<int32_t> limbs(given);
    for (size_t t = 0; t < given; t++) limbs[t] = int32_t(int64_t(t * 2654435761u % 4294967291u) - 2147483645);
    sums.add_limbs(limbs.data(), 3);
    sums.clear();
    sums.add_limbs(limbs.data(), 3);
    sums.add_limbs(limbs.data(), 3);
    for (size_t t = 0; t < nl; t++) ASSERT_EQ(sums.limbs()[t], t < given ? 2.0 * limbs[t] : 0.0) << "limb slot " << t;
    sums.add_limbs(limbs.data(), 3);
    sums.clear();
    EXPECT_EQ(sums.value(0), 0.0);
    for (size_t t = 0; t < nl; t++) ASSERT_EQ(sums.limbs()[t], 0.0) << "limb slot " << t;
    EXPECT_THROW(sums.add_limbs(limbs.data(), 5), std::invalid_argument);
    EXPECT_THROW(sums.add_limbs(limbs.data(), 0), std::invalid_argument);
}

TEST(ReproducibleSum, ClearedSumsAreZeroForEveryUse) {
    // clear() only marks the sums zero (the limbs are zeroed when first used): every other use
    // must see zeros. Values added after clear() or merged into / from cleared sums give the
    // bits of sums that never held anything.
    const size_t n = 5;
    std::vector<double> v = {1.5, -2.25, 3e-9, 7.0, -0.125}, w = {0.5, 4.0, -1e-12, 2.0, 9.75};
    FixedPointSums fresh(n), cleared(n), other(n);
    for (FixedPointSums* s : {&fresh, &cleared, &other}) s->set_scale(0, n, 4);
    fresh.add(v.data());
    cleared.add(w.data());
    cleared.clear();
    for (size_t i = 0; i < n; i++) EXPECT_EQ(cleared.value(i), 0.0) << "value " << i;
    cleared.normalize();
    cleared.add(v.data());
    for (size_t i = 0; i < n; i++) EXPECT_EQ(cleared.value(i), fresh.value(i)) << "value " << i;
    other.add(w.data());
    other.clear();
    cleared.merge(other); // a cleared other adds nothing
    for (size_t i = 0; i < n; i++) EXPECT_EQ(cleared.value(i), fresh.value(i)) << "value " << i;
    other.merge(fresh); // into cleared sums
    for (size_t i = 0; i < n; i++) EXPECT_EQ(other.value(i), fresh.value(i)) << "value " << i;
    other.clear();
    EXPECT_EQ(other.limbs(), std::vector<double>(n * FixedPointSums::kLimbs, 0.0));
}

TEST(ReproducibleSum, SecondMomentsAddedByComponentAreTheSameBits) {
    // The full-covariance CPU E-step deposits a block's N_k and Σ r x (add_first_moments)
    // apart from each component's second moment (add_second_moment), so that no partial
    // holds all K·d(d+1)/2 of them: the same values on the same grids, so the same bits as
    // add() of whole partials, whatever the order of the components.
    const int64_t K = 5, d = 3, nsq = SufficientStats::nsq_of(CovarianceType::Full, d);
    std::mt19937_64 rng(12);
    StatsAccumulator whole(K, d, CovarianceType::Full), by_component(K, d, CovarianceType::Full);
    whole.set_row_bounds(8.0, 600.0);
    by_component.set_row_bounds(8.0, 600.0);
    for (int b = 0; b < 40; b++) {
        const SufficientStats p = random_block_partial(K, d, CovarianceType::Full, rng);
        whole.add(p);
        for (int64_t t = 0; t < K; t++) {
            const int64_t k = (t * 3 + b) % K; // another order each block
            by_component.add_second_moment(k, p.sum_sq.data() + k * nsq);
        }
        SufficientStats first(K, d, CovarianceType::Full, false);
        first.n = p.n;
        first.loglik = p.loglik;
        first.nk = p.nk;
        first.sum_x = p.sum_x;
        EXPECT_TRUE(first.sum_sq.empty());
        by_component.add_first_moments(first);
    }
    SufficientStats want, got;
    whole.result(want);
    by_component.result(got);
    EXPECT_EQ(got.n, want.n);
    EXPECT_EQ(got.loglik, want.loglik);
    EXPECT_EQ(got.nk, want.nk);
    EXPECT_EQ(got.sum_x, want.sum_x);
    EXPECT_EQ(got.sum_sq, want.sum_sq);
    EXPECT_THROW(by_component.add_second_moment(K, want.sum_sq.data()), std::out_of_range);
    EXPECT_THROW(by_component.add_first_moments(SufficientStats(K + 1, d, CovarianceType::Full)),
                 std::invalid_argument);
}

TEST(ReproducibleSum, ScaleExponentIsTheNextPowerOfTwo) {
    EXPECT_EQ(scale_exponent_for(1.0), 0);
    EXPECT_EQ(scale_exponent_for(1.5), 1);
    EXPECT_EQ(scale_exponent_for(1024.0), 10);
    EXPECT_EQ(scale_exponent_for(0.3), -1);
    EXPECT_EQ(scale_exponent_for(0.0), 0);
    EXPECT_THROW(scale_exponent_for(INFINITY), std::invalid_argument);
    EXPECT_THROW(ExactSums(1).add(0, NAN), std::invalid_argument);
}

TEST(ReproducibleSum, CpuEStepSameStatisticsForAnyThreadsAndBlockAlignedCalls) {
    const int64_t n = 5 * kReproducibleBlockRows + 123, d = 9, K = 11;
    const std::vector<float> x = faiss_gmm::testing::clustered_data(n, d, K, 1.0f, 31);
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal, CovarianceType::Full}) {
        const GmmModel model = faiss_gmm::testing::random_model(K, d, type, 1.0f, 32);
        double x_bound = 0, mean_norm = 0;
        for (float v : x) x_bound = std::max(x_bound, double(std::fabs(v)));
        for (float v : model.means) mean_norm = std::max(mean_norm, double(std::fabs(v)));
        mean_norm *= std::sqrt(double(d));
        const double sq_bound = std::pow(std::sqrt(double(d)) * x_bound + mean_norm, 2); // ‖x − μ‖² <= (‖x‖ + ‖μ‖)²
        auto run = [&](int threads, int64_t call_rows) {
            EStepCpu estep(64, threads);
            estep.set_model(model, nullptr);
            StatsAccumulator acc(K, d, type);
            acc.set_row_bounds(x_bound, sq_bound);
            for (int64_t i0 = 0; i0 < n; i0 += call_rows) {
                estep.accumulate_reproducible(VectorBlock{x.data() + i0 * d, DataType::Float32,
                                                          std::min(call_rows, n - i0), d},
                                              acc);
            }
            SufficientStats s;
            acc.result(s);
            return s;
        };
        const SufficientStats want = run(1, n);
        for (int threads : {2, 3}) {
            for (int64_t call_rows : {kReproducibleBlockRows, 2 * kReproducibleBlockRows, n}) {
                const SufficientStats got = run(threads, call_rows);
                const std::string what = std::to_string(threads) + " threads, calls of " + std::to_string(call_rows);
                EXPECT_EQ(got.loglik, want.loglik) << what;
                EXPECT_EQ(got.nk, want.nk) << what;
                EXPECT_EQ(got.sum_x, want.sum_x) << what;
                EXPECT_EQ(got.sum_sq, want.sum_sq) << what;
            }
        }
        // And the values are the E-step's, against the float64 reference, within the
        // rounding-error bound for these rows and this model (error_bounds.h; the exact
        // sums' grid truncation, <= 2^-96 of the row bound per value, is far inside its
        // double-summation term).
        // Full covariances: error_bounds.h does not model their E-step; test_full_covariance
        // checks it against the reference within its own bound (FullEStepShapes).
        if (type == CovarianceType::Full) continue;
        SufficientStats ref(K, d, type);
        reference_estep(model, nullptr, n, x.data(), ref);
        const VectorBlock rows{x.data(), DataType::Float32, n, d};
        faiss_gmm::testing::expect_stats_within_bound(want, ref,
                                                      faiss_gmm::testing::estep_error_bound(model, nullptr, rows, 64),
                                                      to_string(type));
    }
}

TEST(ReproducibleSum, BlockAlignedRowsOnOneRankCoverEveryRowOnce) {
    const int64_t n = 3 * kReproducibleBlockRows + 7, d = 2;
    std::vector<float> x(size_t(n * d));
    std::iota(x.begin(), x.end(), 0.0f);
    MemoryVectorSource src(n, d, x.data());
    SingleProcessCommunicator comm;
    GlobalRows rows;
    rows.range = {0, n};
    rows.total = n;
    BlockAlignedRows blocks(comm, src, rows, kReproducibleBlockRows, 1500); // rounded down to one block per call
    EXPECT_EQ(blocks.ncalls(), 4);
    EXPECT_EQ(blocks.rows(), n);
    std::vector<uint8_t> scratch;
    int64_t next = 0;
    for (int64_t c = 0; c < blocks.ncalls(); c++) {
        const VectorBlock b = blocks.call(c, scratch);
        EXPECT_EQ(blocks.first_global_row(c), next);
        std::vector<float> row(d);
        b.row_to_float(0, row.data());
        EXPECT_EQ(row[0], float(next * d));
        next += b.n;
    }
    EXPECT_EQ(next, n);
}

TEST(ReproducibleSum, OverlappingScalesKeepTheLastOnePerValue) {
    // Scales are kept as runs (not one per value): later set_scale() calls cut the
    // runs they overlap. 9·2^-95 lands on grid 2^(e − 96) of scale 2^e truncated toward
    // zero: 0 for e = 6, 2·2^-93 = 2^-92 for e = 3, itself for e = -2.
    FixedPointSums sums(10);
    sums.set_scale(0, 10, 3);
    sums.set_scale(2, 5, -2);
    sums.set_scale(4, 8, 6);
    sums.set_scale(9, 9, 40); // empty: no effect
    const double v = 9 * std::ldexp(1.0, -95);
    const std::vector<double> values(10, v);
    sums.add(values.data());
    const int want_exp[10] = {3, 3, -2, -2, 6, 6, 6, 6, 3, 3};
    for (int i = 0; i < 10; i++) {
        const double want = want_exp[i] == 6 ? 0.0 : want_exp[i] == 3 ? std::ldexp(1.0, -92) : v;
        EXPECT_EQ(sums.value(size_t(i)), want) << "value " << i << ", scale 2^" << want_exp[i];
    }
    EXPECT_THROW(sums.set_scale(5, 11, 0), std::out_of_range);
}

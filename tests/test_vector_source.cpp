// Float64VectorSource (faiss_gmm/VectorSource.h): float64 rows served as their
// float32 values (the conversion's rounding is the only change, so the test
// expects float(x) bit for bit), in the serial and the multi-threaded chunk
// sizes, for any range; bad ranges and arguments are refused with a message.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "faiss_gmm/VectorSource.h"

using namespace faiss_gmm;

namespace {

std::vector<double> random_doubles(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g(0.0, 1e3);
    std::vector<double> x(n);
    for (double& v : x) v = g(rng);
    return x;
}

void expect_float_values(const VectorBlock& b, const double* want, const std::string& what) {
    ASSERT_EQ(b.type, DataType::Float32) << what;
    const float* got = static_cast<const float*>(b.data);
    size_t bad = 0;
    for (size_t i = 0; i < size_t(b.n * b.d); i++) {
        const float w = float(want[i]);
        bad += std::memcmp(&got[i], &w, sizeof(float)) != 0;
    }
    EXPECT_EQ(bad, 0u) << what << ": values that are not float(x)";
}

} // namespace

TEST(Float64VectorSource, ServesEveryRangeAsItsFloat32Values) {
    // 9,000 × 37 = 333,000 elements: the whole read is split over threads (2^16
    // elements each at least), small reads are converted on the caller's thread.
    const int64_t n = 9000, d = 37;
    const std::vector<double> x = random_doubles(size_t(n * d), 1);
    const Float64VectorSource src(n, d, x.data());
    EXPECT_EQ(src.ntotal(), n);
    EXPECT_EQ(src.d(), d);
    EXPECT_EQ(src.type(), DataType::Float32);
    std::vector<uint8_t> scratch;
    for (auto [i0, m] : {std::pair<int64_t, int64_t>{0, n}, {0, 1}, {17, 3}, {n - 5, 5}, {4000, 3001}, {n, 0}}) {
        const VectorBlock b = src.read(i0, m, scratch);
        EXPECT_EQ(b.n, m);
        EXPECT_EQ(b.d, d);
        expect_float_values(b, x.data() + i0 * d, "rows [" + std::to_string(i0) + ", " + std::to_string(i0 + m) + ")");
    }
}

TEST(Float64VectorSource, ValuesBeyondFloat32BecomeInfiniteAndAreReported) {
    std::vector<double> x = random_doubles(4 * 3, 2);
    x[2 * 3 + 1] = 1e300;
    const Float64VectorSource src(4, 3, x.data());
    std::vector<uint8_t> scratch;
    const VectorBlock b = src.read(0, 4, scratch);
    EXPECT_TRUE(std::isinf(static_cast<const float*>(b.data)[2 * 3 + 1]));
    try {
        check_finite(b, 100);
        FAIL() << "an infinite converted value passed check_finite";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("input row 102, column 1 is infinite"), std::string::npos) << e.what();
    }
}

TEST(Float64VectorSource, RefusesBadArgumentsAndRanges) {
    const std::vector<double> x(6, 1.0);
    EXPECT_THROW(Float64VectorSource(2, 0, x.data()), std::invalid_argument);
    EXPECT_THROW(Float64VectorSource(-1, 3, x.data()), std::invalid_argument);
    EXPECT_THROW(Float64VectorSource(2, 3, nullptr), std::invalid_argument);
    EXPECT_NO_THROW(Float64VectorSource(0, 3, nullptr)); // no rows: nothing to point at
    const Float64VectorSource src(2, 3, x.data());
    std::vector<uint8_t> scratch;
    EXPECT_THROW(src.read(1, 2, scratch), std::out_of_range);
    EXPECT_THROW(src.read(-1, 1, scratch), std::out_of_range);
}

TEST(VectorBlock, SliceRefusesRowsOutsideTheBlock) {
    const std::vector<float> x(5 * 2, 0.0f);
    const VectorBlock b{x.data(), DataType::Float32, 5, 2};
    const VectorBlock s = b.slice(1, 4);
    EXPECT_EQ(s.n, 4);
    EXPECT_EQ(static_cast<const float*>(s.data), x.data() + 2);
    EXPECT_EQ(b.slice(5, 0).n, 0); // the empty slice at the end is allowed
    EXPECT_THROW(b.slice(2, 4), std::out_of_range);
    EXPECT_THROW(b.slice(-1, 1), std::out_of_range);
    EXPECT_THROW(b.slice(0, -1), std::out_of_range);
    try {
        b.slice(3, 3);
        FAIL() << "a slice past the end was accepted";
    } catch (const std::out_of_range& e) {
        EXPECT_NE(std::string(e.what()).find("rows [3, 6) out of range (the block has 5 rows)"), std::string::npos)
            << e.what();
    }
}

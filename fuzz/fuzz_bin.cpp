// big-ann-benchmarks .fbin / .u8bin / .ibin and the binary ground-truth file.
#include <datasets/BinFile.h>

#include <algorithm>
#include <vector>

#include "fuzz_common.h"

using namespace faiss_gmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string fb = fuzz::write_input("in.fbin", data, size);
    const std::string ub = fuzz::write_input("in.u8bin", data, size);
    const std::string ib = fuzz::write_input("in.ibin", data, size);
    for (const std::string& path : {fb, ub}) {
        for (bool allow_prefix : {false, true}) {
            fuzz::expect_clean([&] {
                datasets::BinFileSource src(path, allow_prefix);
                std::vector<uint8_t> scratch;
                for (int64_t i0 = 0; i0 < src.ntotal(); i0 += 5) {
                    const int64_t n = std::min<int64_t>(5, src.ntotal() - i0);
                    VectorBlock b = src.read(i0, n, scratch);
                    check_finite(b, i0);
                }
            });
        }
    }
    fuzz::expect_clean([&] { (void)datasets::read_ibin(ib); });
    fuzz::expect_clean([&] { (void)datasets::read_ibin(ib, 1, 1); });
    fuzz::expect_clean([&] {
        datasets::IntMatrix ids;
        datasets::FloatMatrix dist;
        datasets::read_bin_groundtruth(ib, &ids, &dist);
    });
    return 0;
}

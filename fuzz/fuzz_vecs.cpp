// TEXMEX .fvecs / .bvecs / .ivecs: VecsFileSource (the mmap source EM streams)
// and the datasets readers, on the same bytes under each extension.
#include <faiss_gmm/VectorSource.h>

#include <datasets/VecsFile.h>

#include <algorithm>
#include <vector>

#include "fuzz_common.h"

using namespace faiss_gmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string fv = fuzz::write_input("in.fvecs", data, size);
    const std::string bv = fuzz::write_input("in.bvecs", data, size);
    const std::string iv = fuzz::write_input("in.ivecs", data, size);
    for (const std::string& path : {fv, bv}) {
        fuzz::expect_clean([&] {
            VecsFileSource src(path);
            std::vector<uint8_t> scratch;
            // Every row, in chunks, then the finite check EM runs on float rows.
            for (int64_t i0 = 0; i0 < src.ntotal(); i0 += 7) {
                const int64_t n = std::min<int64_t>(7, src.ntotal() - i0);
                VectorBlock b = src.read(i0, n, scratch);
                check_finite(b, i0);
            }
        });
    }
    fuzz::expect_clean([&] { (void)datasets::read_fvecs(fv); });
    fuzz::expect_clean([&] { (void)datasets::read_fvecs(bv, 1, 2); });
    fuzz::expect_clean([&] { (void)datasets::read_bvecs(bv); });
    fuzz::expect_clean([&] {
        int64_t n = 0, d = 0;
        datasets::ivecs_shape(iv, &n, &d);
        (void)datasets::read_ivecs(iv);
    });
    fuzz::expect_clean([&] { (void)datasets::read_ivecs(iv, 1, -1); });
    return 0;
}

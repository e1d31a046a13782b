// ann-benchmarks HDF5 files. The parsing itself is libhdf5's (not ours, not
// instrumented); this target checks what we do with what it returns: shapes,
// hyperslab ranges, attribute strings, allocations sized from dataset extents.
#include <datasets/Hdf5File.h>

#include "fuzz_common.h"

using namespace faiss_gmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::write_input("in.hdf5", data, size);
    fuzz::expect_clean([&] { (void)datasets::read_ann_benchmarks(path, true); });
    fuzz::expect_clean([&] {
        int64_t n = 0, d = 0;
        datasets::hdf5_shape(path, "train", &n, &d);
        (void)datasets::read_hdf5_float(path, "train", 1, 2);
    });
    return 0;
}

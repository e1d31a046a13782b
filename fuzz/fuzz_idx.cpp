// IDX files (MNIST / Fashion-MNIST), gzipped and plain. The fuzzer's bytes are
// used both as the raw file (zlib sees arbitrary compressed data, or the plain
// reader sees an arbitrary header) and, gzipped by us, as a well-formed gzip
// stream around an arbitrary IDX payload, so the header checks are reached.
#include <datasets/IdxFile.h>

#include <zlib.h>

#include <vector>

#include "fuzz_common.h"

using namespace faiss_gmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string raw_gz = fuzz::write_input("raw.idx.gz", data, size);
    const std::string plain = fuzz::write_input("plain.idx", data, size);
    fuzz::expect_clean([&] { (void)datasets::read_idx_gz(raw_gz); });
    fuzz::expect_clean([&] {
        std::vector<int64_t> dims;
        (void)datasets::read_idx_gz(plain, &dims);
    });
    // gzip-wrap the payload.
    const std::string wrapped = fuzz::scratch_dir() + "/wrapped.idx.gz";
    if (gzFile gz = gzopen(wrapped.c_str(), "wb1")) {
        if (size > 0) gzwrite(gz, data, unsigned(size));
        gzclose(gz);
        fuzz::expect_clean([&] { (void)datasets::read_idx_gz(wrapped); });
    }
    return 0;
}

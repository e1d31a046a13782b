// Our saved index format: a FAISS index followed by the GMM trailer
// (deserialize_gmm_index), on arbitrary bytes. The FAISS part is read by
// FAISS 1.7.3 itself; see fuzz/README.md for what it does on corrupt input.
#include <faiss/Index.h>

#include <faiss_gmm/gmm_io.h>

#include <memory>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    faiss_gmm::fuzz::expect_clean([&] {
        std::unique_ptr<faiss::Index> index(faiss_gmm::deserialize_gmm_index(data, size));
    });
    return 0;
}

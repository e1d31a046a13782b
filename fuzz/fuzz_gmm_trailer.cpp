// The GMM trailer (our code only): the fuzzer's bytes follow a fixed, valid
// FAISS part (seed_index.h: GMM-IVF, 8 lists, d = 4), so every input reaches
// read_gmm_model and attach_model; the bytes are also read as a bare trailer.
#include <faiss_gmm/GmmModel.h>
#include <faiss_gmm/GmmParams.h>
#include <faiss_gmm/gmm_io.h>

#include "fuzz_common.h"
#include "seed_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::vector<uint8_t> prefix = [] {
        auto index = faiss_gmm::fuzz::seed_index();
        return faiss_gmm::fuzz::faiss_bytes(index.get());
    }();
    std::vector<uint8_t> buf = prefix;
    buf.insert(buf.end(), data, data + size);
    faiss_gmm::fuzz::expect_clean([&] {
        std::unique_ptr<faiss::Index> index(faiss_gmm::deserialize_gmm_index(buf.data(), buf.size()));
    });
    faiss_gmm::fuzz::expect_clean([&] {
        faiss::VectorIOReader r;
        r.data.assign(data, data + size);
        faiss_gmm::GmmModel m;
        faiss_gmm::GmmParams p;
        faiss_gmm::read_gmm_model(&r, &m, &p);
    });
    return 0;
}

// The trailers and the checksum footer (our code only): the fuzzer's bytes
// follow a fixed, valid FAISS part (seed_index.h: GMM-IVF, 8 lists, d = 4) and
// are read three ways, so that every input reaches our parsers:
//  1. as they are: the footer check (CRC, markers; on a mismatch the diagnostic
//     parse of the trailers), or, without a footer, the older formats' reader;
//  2. re-sealed: a footer the input may carry is dropped and a valid one (CRC
//     and FAISS part size right) appended, so the version-4 trailers are parsed
//     and applied (read_gmm_trailer_after_faiss, apply_gmm_trailer) despite the
//     checksum: what the CRC would otherwise keep the mutations from reaching;
//  3. as a bare GMM trailer (read_gmm_trailer).
#include <faiss_gmm/Crc32c.h>
#include <faiss_gmm/GmmModel.h>
#include <faiss_gmm/GmmParams.h>
#include <faiss_gmm/gmm_io.h>

#include <cstring>

#include "fuzz_common.h"
#include "seed_index.h"

namespace {

constexpr uint32_t kFooterMagic = 0x4b434746, kFooterEnd = 0x4647434b; // gmm_io.cpp's
constexpr size_t kFooterSize = 24;

template <class T>
void append(std::vector<uint8_t>& b, const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
}

} // namespace

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
    // 2. Re-sealed.
    size_t body = size;
    if (size >= kFooterSize) {
        uint32_t magic, end;
        std::memcpy(&magic, data + size - kFooterSize, 4);
        std::memcpy(&end, data + size - 4, 4);
        if (magic == kFooterMagic || end == kFooterEnd) body = size - kFooterSize;
    }
    buf.resize(prefix.size() + body);
    append<uint32_t>(buf, kFooterMagic);
    append<uint32_t>(buf, 1);
    append<uint64_t>(buf, prefix.size());
    append<uint32_t>(buf, faiss_gmm::crc32c_extend(0, buf.data(), buf.size()));
    append<uint32_t>(buf, kFooterEnd);
    faiss_gmm::fuzz::expect_clean([&] {
        std::unique_ptr<faiss::Index> index(faiss_gmm::deserialize_gmm_index(buf.data(), buf.size()));
    });
    faiss_gmm::fuzz::expect_clean([&] {
        faiss::VectorIOReader r;
        r.data.assign(data, data + size);
        faiss_gmm::read_gmm_trailer(&r);
    });
    return 0;
}

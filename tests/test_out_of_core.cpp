// Out-of-core training (issue 8): EM streams a memory-mapped file many times
// larger than its chunk budget (GmmParams::chunk_size rows), so a file larger
// than RAM trains. The test measures the memory training allocates beyond the
// file's page cache — every operator new of this binary (our code, FAISS, the
// standard library) counted, and the anonymous resident memory of the process
// sampled — and checks it stays far below the file's size, with a model equal
// to training on the same rows held in memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "datasets/BinFile.h"
#include "datasets/VecsFile.h"
#include "faiss_gmm/GmmTrainer.h"
#include "test_helpers.h"

// ---- an allocation counter: live bytes of operator new, and their peak ----
namespace {
std::atomic<int64_t> g_live_bytes{0};
std::atomic<int64_t> g_peak_bytes{0};
// The block size is stored in front of each block, keeping malloc's 16-byte alignment.
constexpr size_t kHeader = 16;

void* counted_new(size_t n) {
    void* p = std::malloc(n + kHeader);
    if (!p) return nullptr;
    *static_cast<size_t*>(p) = n;
    const int64_t live = g_live_bytes.fetch_add(int64_t(n)) + int64_t(n);
    int64_t peak = g_peak_bytes.load();
    while (live > peak && !g_peak_bytes.compare_exchange_weak(peak, live)) {
    }
    return static_cast<char*>(p) + kHeader;
}

void counted_delete(void* q) noexcept {
    if (!q) return;
    void* p = static_cast<char*>(q) - kHeader;
    g_live_bytes.fetch_sub(int64_t(*static_cast<size_t*>(p)));
    std::free(p);
}

void* counted_new_or_throw(size_t n) {
    void* p = counted_new(n);
    if (!p) throw std::bad_alloc();
    return p;
}
} // namespace

void* operator new(size_t n) { return counted_new_or_throw(n); }
void* operator new[](size_t n) { return counted_new_or_throw(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept { return counted_new(n); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return counted_new(n); }
void operator delete(void* p) noexcept { counted_delete(p); }
void operator delete[](void* p) noexcept { counted_delete(p); }
void operator delete(void* p, size_t) noexcept { counted_delete(p); }
void operator delete[](void* p, size_t) noexcept { counted_delete(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_delete(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_delete(p); }

using namespace faiss_gmm;

namespace {

/// RssAnon of this process (bytes): private memory, not the file's mapped pages.
int64_t rss_anon_bytes() {
    std::ifstream status("/proc/self/status");
    std::string key;
    while (status >> key) {
        if (key == "RssAnon:") {
            int64_t kib = 0;
            status >> kib;
            return kib * 1024;
        }
        status.ignore(1 << 20, '\n');
    }
    return -1;
}

/// The largest RssAnon seen while it lives (sampled every millisecond).
class RssAnonSampler {
  public:
    RssAnonSampler() : peak_(rss_anon_bytes()), thread_([this] {
        while (!stop_) {
            peak_ = std::max<int64_t>(peak_, rss_anon_bytes());
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }) {}
    ~RssAnonSampler() { stop(); }
    int64_t stop() {
        if (thread_.joinable()) {
            stop_ = true;
            thread_.join();
        }
        return peak_;
    }

  private:
    std::atomic<int64_t> peak_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true; // its quarantine and shadow memory are anonymous memory too
#else
constexpr bool kAddressSanitizer = false;
#endif

/// Rows of a test file: a quarter under AddressSanitizer (several times slower),
/// still hundreds of chunks.
constexpr int64_t test_rows(int64_t n) {
    return kAddressSanitizer ? n / 4 : n;
}

struct TempFile {
    explicit TempFile(const std::string& ext)
            : path("/tmp/faiss_gmm_out_of_core_" + std::to_string(::getpid()) + ext) {}
    ~TempFile() { std::remove(path.c_str()); }
    std::string path;
};

GmmParams streaming_params() {
    GmmParams p;
    p.max_points_per_centroid = 0; // every row, every iteration: nothing subsampled into memory
    p.chunk_size = 1024;           // the budget: 1024 rows in memory at a time
    p.niter = 4;
    p.tol = 0;
    p.init = InitMethod::KMeansPlusPlus;
    return p;
}

/// A training run and the memory it took beyond what the process held before.
struct Measured {
    GmmModel model;
    int64_t allocated_peak = 0; ///< peak of live operator-new bytes
    int64_t anon_growth = 0;    ///< peak RssAnon growth: memory actually touched
};

Measured train_measured(const VectorSource& rows, int64_t K) {
    Measured m;
    const int64_t live_before = g_live_bytes.load();
    g_peak_bytes = live_before;
    const int64_t anon_before = rss_anon_bytes();
    RssAnonSampler sampler;
    GmmTrainer trainer(streaming_params());
    m.model = trainer.fit(rows, K);
    m.anon_growth = sampler.stop() - anon_before;
    m.allocated_peak = g_peak_bytes.load() - live_before;
    EXPECT_EQ(trainer.n_train, rows.ntotal());
    return m;
}

/// Streams the whole file, and a prefix of 1/8 of it first (which also makes
/// OpenMP's and OpenBLAS's per-process pools): the memory must not grow with the
/// rows, and stay far below the file's size. Returns the whole file's model.
GmmModel train_streaming(const VectorSource& file, int64_t K, size_t file_bytes) {
    const Measured prefix = train_measured(RowRangeSource(file, 0, file.ntotal() / 8), K);
    const Measured whole = train_measured(file, K);
    const int64_t chunk_bytes = streaming_params().chunk_size * file.d() * int64_t(element_size(file.type()));
    std::printf("file %.1f MiB, chunk %.1f KiB: peak allocated %.2f MiB (1/8 of the file: %.2f MiB), "
                "peak RssAnon growth %.2f MiB\n",
                double(file_bytes) / (1 << 20), double(chunk_bytes) / 1024, double(whole.allocated_peak) / (1 << 20),
                double(prefix.allocated_peak) / (1 << 20), double(whole.anon_growth) / (1 << 20));
    // FAISS's fixed 16 MiB distance block (init's nearest-mean search) is part of
    // both peaks; what streaming adds must not depend on the number of rows.
    EXPECT_LT(whole.allocated_peak - prefix.allocated_peak, int64_t(file_bytes) / 64)
            << "allocated memory grows with the rows";
    if (!kAddressSanitizer) {
        EXPECT_LT(whole.anon_growth, int64_t(file_bytes) / 16) << "resident private memory grows with the file";
    }
    return whole.model;
}

/// The same training on the rows held in memory, in the same chunks.
GmmModel train_in_memory(const VectorSource& file, int64_t K) {
    std::vector<uint8_t> rows(size_t(file.ntotal()) * file.d() * element_size(file.type()));
    std::vector<uint8_t> scratch;
    const VectorBlock all = file.read(0, file.ntotal(), scratch);
    std::copy(all.row(0), all.row(0) + rows.size(), rows.begin());
    return GmmTrainer(streaming_params()).fit(MemoryVectorSource(VectorBlock{rows.data(), file.type(), file.ntotal(), file.d()}), K);
}

} // namespace

TEST(OutOfCore, FvecsFileFarLargerThanTheChunkBudget) {
    const int64_t n = test_rows(400000), d = 32, K = 8;
    TempFile file(".fvecs");
    {
        const std::vector<float> x = faiss_gmm::testing::clustered_data(n, d, K, 1.0f, 31);
        datasets::write_fvecs(file.path, n, d, x.data());
    }
    const VecsFileSource src(file.path);
    const size_t file_bytes = size_t(n) * (4 + d * sizeof(float));
    ASSERT_GE(file_bytes / (1024 * d * sizeof(float)), size_t(90)) << "the file must hold many chunks";
    const GmmModel streamed = train_streaming(src, K, file_bytes);
    faiss_gmm::testing::expect_models_identical(streamed, train_in_memory(src, K), "streamed vs in memory");
}

TEST(OutOfCore, U8binFileFarLargerThanTheChunkBudget) {
    const int64_t n = test_rows(1000000), d = 32, K = 8;
    TempFile file(".u8bin");
    {
        const std::vector<float> xf = faiss_gmm::testing::clustered_data(n, d, K, 4.0f, 32);
        std::vector<uint8_t> x(xf.size());
        for (size_t i = 0; i < x.size(); i++) x[i] = uint8_t(std::clamp(xf[i] * 8.0f + 128.0f, 0.0f, 255.0f));
        datasets::write_u8bin(file.path, n, d, x.data());
    }
    const datasets::BinFileSource src(file.path);
    const size_t file_bytes = 8 + size_t(n) * d;
    const GmmModel streamed = train_streaming(src, K, file_bytes);
    faiss_gmm::testing::expect_models_identical(streamed, train_in_memory(src, K), "streamed vs in memory");
}

// parallel_ranges (faiss_gmm/ParallelRanges.h) over its pool of threads: every index handed out
// exactly once, in contiguous pieces of the promised size, from one caller, from pieces that
// call it again (nested: run on the calling worker), and from several threads at once (one call
// holds the pool, the others run alone), and back-to-back calls of any size.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "faiss_gmm/ParallelRanges.h"

using namespace faiss_gmm;

namespace {

/// Calls parallel_ranges(total, min_per_piece) and checks that the pieces cover [0, total) once,
/// each at least min_per_piece long (unless there is one), at most kPiecesPerThread per thread
/// of the pool.
void expect_covered_once(int64_t total, int64_t min_per_piece, const std::string& what) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(total));
    std::atomic<int64_t> pieces{0}, short_pieces{0};
    parallel_ranges(total, min_per_piece, [&](int64_t a, int64_t b) {
        pieces++;
        if (b - a < min_per_piece) short_pieces++;
        for (int64_t i = a; i < b; i++) hits[size_t(i)]++;
    });
    for (int64_t i = 0; i < total; i++) ASSERT_EQ(hits[size_t(i)].load(), 1) << what << ": index " << i;
    const int64_t hw = detail::pool_threads();
    EXPECT_LE(pieces.load(), std::max<int64_t>(1, std::min(kPiecesPerThread * hw, total / min_per_piece))) << what;
    if (pieces.load() > 1) EXPECT_EQ(short_pieces.load(), 0) << what;
}

} // namespace

TEST(ParallelRanges, EveryIndexOnceForAnySize) {
    for (int64_t total : {0, 1, 7, 1000, 4096, 4097, 100003}) {
        for (int64_t min : {1, 100, 1024}) {
            expect_covered_once(total, min, "total " + std::to_string(total) + ", min " + std::to_string(min));
        }
    }
}

TEST(ParallelRanges, NestedCallsFromInsidePiecesRunToCompletion) {
    // Each outer piece runs an inner parallel_ranges over its own slots: on a pool worker, or on
    // the caller while the pool is busy with the outer call. Neither may wait for the pool.
    const int64_t outer = 64, inner = 5000;
    std::vector<std::atomic<int>> hits(static_cast<size_t>(outer * inner));
    parallel_ranges(outer, 1, [&](int64_t a, int64_t b) {
        for (int64_t o = a; o < b; o++) {
            parallel_ranges(inner, 16, [&](int64_t x, int64_t y) {
                for (int64_t i = x; i < y; i++) hits[size_t(o * inner + i)]++;
            });
        }
    });
    for (size_t i = 0; i < hits.size(); i++) ASSERT_EQ(hits[i].load(), 1) << "slot " << i;
}

TEST(ParallelRanges, ConcurrentCallersEachCoverTheirRange) {
    // Threads of the caller's own calling at once: the one that holds the pool shares it, the
    // others run their pieces alone; all cover their ranges, many times over.
    const int callers = 4, calls = 200;
    const int64_t total = 20000;
    std::vector<std::vector<std::atomic<int>>> hits(callers);
    for (auto& h : hits) h = std::vector<std::atomic<int>>(static_cast<size_t>(total));
    std::vector<std::thread> threads;
    for (int c = 0; c < callers; c++) {
        threads.emplace_back([&, c] {
            for (int r = 0; r < calls; r++) {
                parallel_ranges(total, 1000, [&](int64_t a, int64_t b) {
                    for (int64_t i = a; i < b; i++) hits[size_t(c)][size_t(i)]++;
                });
            }
        });
    }
    for (auto& t : threads) t.join();
    for (int c = 0; c < callers; c++) {
        for (int64_t i = 0; i < total; i++) {
            ASSERT_EQ(hits[size_t(c)][size_t(i)].load(), calls) << "caller " << c << ", index " << i;
        }
    }
}

TEST(ParallelRanges, PiecesWritesAreSeenByTheCaller) {
    // Back-to-back calls (workers polling, then asleep after a pause) write disjoint slots
    // without atomics: the caller reads every slot once the call returns.
    std::vector<int64_t> out(50000);
    for (int r = 0; r < 300; r++) {
        if (r % 100 == 99) std::this_thread::sleep_for(std::chrono::milliseconds(2)); // workers asleep
        parallel_ranges(int64_t(out.size()), 512, [&](int64_t a, int64_t b) {
            for (int64_t i = a; i < b; i++) out[size_t(i)] = i * 3 + r;
        });
        for (size_t i = 0; i < out.size(); i++) ASSERT_EQ(out[i], int64_t(i) * 3 + r) << "call " << r << ", slot " << i;
    }
}

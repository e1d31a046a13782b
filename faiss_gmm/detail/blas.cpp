#include "blas.h"

#include <dlfcn.h>

#include <mutex>

namespace faiss_gmm::detail {

namespace {
using GetThreads = int (*)();
using SetThreads = void (*)(int);

GetThreads openblas_get() {
    static GetThreads f = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    return f;
}
SetThreads openblas_set() {
    static SetThreads f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    return f;
}

// OpenBLAS's thread count is one setting for the whole process. Guards on several threads
// at once (the ranks of an in-process distributed run, two trainers) share it: the first
// sets 1, the last restores it. With a guard per caller instead, one caller's restore made
// another's products multi-threaded mid-E-step, and threaded OpenBLAS may round a product
// differently: the in-process ranks of test_distributed_trainer ended with models a few ulps
// from one process's, from run to run, on a 2-core AMD EPYC VM with Debian's pthread OpenBLAS
// (never with OPENBLAS_NUM_THREADS=1).
std::mutex& guard_mutex() {
    static std::mutex m;
    return m;
}
int guards_alive = 0;   // under guard_mutex()
int threads_before = 1; // the setting the first guard found

} // namespace

SingleThreadedBlas::SingleThreadedBlas() {
    if (!openblas_get() || !openblas_set()) return;
    std::lock_guard<std::mutex> lock(guard_mutex());
    if (guards_alive++ == 0) {
        threads_before = openblas_get()();
        if (threads_before != 1) openblas_set()(1);
    }
}

SingleThreadedBlas::~SingleThreadedBlas() {
    if (!openblas_get() || !openblas_set()) return;
    std::lock_guard<std::mutex> lock(guard_mutex());
    if (--guards_alive == 0 && threads_before > 1) openblas_set()(threads_before);
}

void gemm_abt(int m, int n, int k, const float* A, const float* B, float* C) {
    gemm_abt(m, n, k, A, k, B, k, C, n);
}

void gemm_abt(int m, int n, int k, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
    // Column-major view: Cᵀ (n×m) = B (k×n col-major)ᵀ · A (k×m col-major).
    const float one = 1, zero = 0;
    sgemm_("T", "N", &n, &m, &k, &one, B, &ldb, A, &lda, &zero, C, &ldc);
}

void gemm_atb(int m, int n, int k, const float* A, const float* B, float* C) {
    // Column-major view: Cᵀ (n×m) = B (n×k col-major) · A (m×k col-major)ᵀ.
    const float one = 1, zero = 0;
    sgemm_("N", "T", &n, &m, &k, &one, B, &n, A, &m, &zero, C, &n);
}

void syrk_ata_upper(int n, int k, const float* A, float* C) {
    // Column-major view: A is n×k (= Aᵀ), and the row-major upper triangle of C
    // is the column-major lower one.
    const float one = 1, zero = 0;
    ssyrk_("L", "N", &n, &k, &one, A, &n, &zero, C, &n);
}

} // namespace faiss_gmm::detail

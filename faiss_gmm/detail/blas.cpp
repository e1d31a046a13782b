#include "blas.h"

#include <dlfcn.h>

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
} // namespace

SingleThreadedBlas::SingleThreadedBlas() {
    if (openblas_get() && openblas_set()) {
        previous_ = openblas_get()();
        if (previous_ != 1) openblas_set()(1);
    }
}

SingleThreadedBlas::~SingleThreadedBlas() {
    if (previous_ > 1) openblas_set()(previous_);
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

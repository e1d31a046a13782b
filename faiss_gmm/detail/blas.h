// The BLAS entry points we call, declared as FAISS does (Fortran ABI, linked
// from libblas / OpenBLAS), and a guard that makes OpenBLAS single-threaded
// while our own OpenMP threads each run their block's sgemm.
#pragma once

extern "C" {
int sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
           const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
           const float* beta, float* c, const int* ldc);
int ssyrk_(const char* uplo, const char* trans, const int* n, const int* k, const float* alpha, const float* a,
           const int* lda, const float* beta, float* c, const int* ldc);
}

namespace faiss_gmm::detail {

/// While alive, OpenBLAS (when it is the BLAS in use: looked up at run time, so
/// any other BLAS works too) runs each call on the calling thread only. The
/// setting is the process's: guards alive on several threads at once share it,
/// and the last one destroyed restores the thread count the first one found. Without this, every one of
/// our OpenMP threads would start OpenBLAS's own thread pool on its block.
class SingleThreadedBlas {
  public:
    SingleThreadedBlas();
    ~SingleThreadedBlas();
    SingleThreadedBlas(const SingleThreadedBlas&) = delete;
    SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

};

/// C (m×n, row-major) = A (m×k, row-major) · B (n×k, row-major)ᵀ
void gemm_abt(int m, int n, int k, const float* A, const float* B, float* C);
/// The same with leading dimensions (row strides): A's rows lda apart, B's ldb, C's ldc.
void gemm_abt(int m, int n, int k, const float* A, int lda, const float* B, int ldb, float* C, int ldc);
/// C (m×n, row-major) = A (k×m, row-major)ᵀ · B (k×n, row-major)
void gemm_atb(int m, int n, int k, const float* A, const float* B, float* C);
/// The upper triangle (i <= j) of C (n×n, row-major) = A (k×n, row-major)ᵀ · A;
/// the strict lower triangle is left as it was.
void syrk_ata_upper(int n, int k, const float* A, float* C);

} // namespace faiss_gmm::detail

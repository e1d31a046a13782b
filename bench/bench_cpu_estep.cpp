// CPU benchmark (not a test): one EM iteration against one FAISS k-means
// iteration, the E-step against plain sgemm on the same shapes, peak memory,
// and the speed-up over an E-step that materializes the N×K responsibilities.
// Everything runs in this process on the same data and threads; the output is
// ratios against those baselines.
//
//   bench_cpu_estep [N=2000000] [K=1024] [d=128] [N_materialize=250000]
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/GmmTrainer.h"
#include "faiss_gmm/detail/blas.h"

using namespace faiss_gmm;

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// A field of /proc/self/status in MiB (VmRSS, VmHWM).
double proc_status_mib(const char* field) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind(field, 0) == 0) return std::atof(line.c_str() + std::string(field).size() + 1) / 1024.0;
    }
    return -1;
}

/// Resets VmHWM to the current RSS (Linux >= 4.0), so a later VmHWM is the
/// peak of what runs in between.
void reset_peak_rss() {
    std::ofstream("/proc/self/clear_refs") << "5";
}

/// SIFT-like synthetic data: Gaussian clusters (more of them than K) with
/// anisotropic spread, offset from the origin.
std::vector<float> make_data(int64_t n, int64_t d, int64_t nclusters, uint64_t seed) {
    std::vector<float> centers(size_t(nclusters) * d), scale(size_t(nclusters) * d);
    std::mt19937_64 rng{seed};
    std::normal_distribution<float> g;
    std::uniform_real_distribution<float> u(0.5f, 2.0f);
    for (size_t i = 0; i < centers.size(); i++) {
        centers[i] = 50.0f + 20.0f * g(rng);
        scale[i] = 6.0f * u(rng);
    }
    std::vector<float> x(size_t(n) * d);
#pragma omp parallel
    {
        std::mt19937_64 r{seed + 1 + uint64_t(omp_get_thread_num())};
        std::normal_distribution<float> gg;
        std::uniform_int_distribution<int64_t> pick(0, nclusters - 1);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const int64_t c = pick(r);
            for (int64_t j = 0; j < d; j++) x[i * d + j] = centers[c * d + j] + scale[c * d + j] * gg(r);
        }
    }
    return x;
}

/// The E-step as a framework would write it: the whole n×K log-density matrix,
/// then responsibilities, then Rᵀ·X, all materialized (spherical).
double materializing_estep(const GmmModel& m, int64_t n, const float* x, SufficientStats& st) {
    const int64_t K = m.K, d = m.d;
    const double t0 = now();
    std::vector<float> S(size_t(n) * K);
    detail::gemm_abt(int(n), int(K), int(d), x, m.means.data(), S.data());
    const std::vector<double> c = m.log_constants();
    std::vector<float> msq(K);
    for (int64_t k = 0; k < K; k++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += double(m.means[k * d + j]) * m.means[k * d + j];
        msq[k] = float(s);
    }
    double loglik = 0;
#pragma omp parallel for reduction(+ : loglik)
    for (int64_t i = 0; i < n; i++) {
        float xn = 0;
        for (int64_t j = 0; j < d; j++) xn += x[i * d + j] * x[i * d + j];
        float* s = S.data() + i * K;
        float mx = -INFINITY;
        for (int64_t k = 0; k < K; k++) {
            s[k] = float(c[k]) - (xn + msq[k] - 2 * s[k]) / (2 * m.variances[k]);
            mx = std::max(mx, s[k]);
        }
        double sum = 0;
        for (int64_t k = 0; k < K; k++) sum += std::exp(double(s[k] - mx));
        const float lse = mx + float(std::log(sum));
        for (int64_t k = 0; k < K; k++) s[k] = std::exp(s[k] - lse);
        loglik += lse;
    }
    std::vector<float> G(size_t(K) * d);
    detail::gemm_atb(int(K), int(d), int(n), S.data(), x, G.data());
    for (int64_t k = 0; k < K; k++) {
        double nk = 0;
        for (int64_t i = 0; i < n; i++) nk += S[i * K + k];
        st.nk[k] += nk;
        for (int64_t j = 0; j < d; j++) st.sum_x[k * d + j] += G[k * d + j];
    }
    st.loglik += loglik;
    st.n += double(n);
    return now() - t0;
}

} // namespace

int main(int argc, char** argv) {
    const int64_t N = argc > 1 ? std::atoll(argv[1]) : 2000000;
    const int64_t K = argc > 2 ? std::atoll(argv[2]) : 1024;
    const int64_t d = argc > 3 ? std::atoll(argv[3]) : 128;
    const int64_t Nm = std::min<int64_t>(N, argc > 4 ? std::atoll(argv[4]) : 250000);
    const int nt = omp_get_max_threads();
    std::printf("bench_cpu_estep: N = %lld, K = %lld, d = %lld, %d threads\n", (long long)N, (long long)K,
                (long long)d, nt);

    std::vector<float> x = make_data(N, d, 2 * K, 42);
    const double data_mib = double(x.size()) * 4 / (1 << 20);
    std::printf("data: %.0f MiB\n", data_mib);

    // ---- FAISS k-means: 3 iterations on all N rows; per-iteration time from its stats ----
    faiss::ClusteringParameters cp;
    cp.niter = 3;
    cp.max_points_per_centroid = int(N / K + 1);
    faiss::Clustering km(int(d), int(K), cp);
    faiss::IndexFlatL2 kindex(d);
    km.train(N, x.data(), kindex);
    const auto& ks = km.iteration_stats;
    const double kmeans_iter = (ks.back().time - ks.front().time) / double(ks.size() - 1);
    std::printf("FAISS k-means iteration:            %8.3f s\n", kmeans_iter);

    // ---- GMM EM from the k-means centroids: 3 iterations on all N rows ----
    GmmModel init(K, d, CovarianceType::Spherical);
    init.means = km.centroids;
    for (auto& v : init.variances) v = 36.0f;
    GmmParams p;
    p.init = InitMethod::Given;
    p.niter = 3;
    p.tol = 0;
    p.max_points_per_centroid = 0;
    const double rss_before = proc_status_mib("VmRSS:");
    reset_peak_rss();
    GmmTrainer trainer(p);
    GmmModel model = trainer.fit(N, d, x.data(), K, &init);
    const double peak_extra = proc_status_mib("VmHWM:") - rss_before;
    const auto& gs = trainer.iteration_stats;
    double em_iter = 0, estep = 0;
    for (size_t i = 1; i < gs.size(); i++) {
        em_iter += gs[i].time_s - gs[i - 1].time_s;
        estep += gs[i].estep_time_s;
    }
    em_iter /= double(gs.size() - 1);
    estep /= double(gs.size() - 1);
    std::printf("GMM EM iteration (spherical):       %8.3f s  (E-step %.3f s)   ratio to k-means %.2fx  [target <= 1.5x]\n",
                em_iter, estep, em_iter / kmeans_iter);
    std::printf("peak memory of the EM run beyond what was resident before it (the data): %.0f MiB  [target <= 200 MiB beyond the data]\n",
                peak_extra);

    // Responsibilities' sparsity at the final model, for the record.
    {
        EStepCpu e(256);
        e.set_model(model, nullptr);
        const int64_t ns = std::min<int64_t>(N, 20000);
        std::vector<float> lr(size_t(ns) * K);
        e.log_responsibilities(VectorBlock{x.data(), DataType::Float32, ns, d}, lr.data(), nullptr);
        int64_t nnz = 0;
        for (float v : lr) nnz += v > EStepCpu::kNegligibleLogRatio;
        std::printf("responsibilities above 1e-12 per row (after EM): %.2f of %lld\n", double(nnz) / ns, (long long)K);
    }

    // ---- plain sgemm on the same shapes ----
    const double flop_gemm = 2.0 * double(N) * K * d;
    double t_gemm_blocked, t_gemm_big;
    {
        // (a) as the E-step issues it: 256-row blocks, one per thread, single-threaded BLAS.
        std::vector<std::vector<float>> out(nt, std::vector<float>(256 * K));
        const double t0 = now();
        {
            detail::SingleThreadedBlas guard;
#pragma omp parallel for schedule(static, 1)
            for (int64_t b = 0; b < (N + 255) / 256; b++) {
                const int64_t n = std::min<int64_t>(256, N - b * 256);
                detail::gemm_abt(int(n), int(K), int(d), x.data() + b * 256 * d, model.means.data(),
                                 out[omp_get_thread_num()].data());
            }
        }
        t_gemm_blocked = now() - t0;
        // (b) OpenBLAS's own threading over 65536-row slabs.
        std::vector<float> big(size_t(65536) * K);
        const double t1 = now();
        for (int64_t i0 = 0; i0 < N; i0 += 65536) {
            const int64_t n = std::min<int64_t>(65536, N - i0);
            detail::gemm_abt(int(n), int(K), int(d), x.data() + i0 * d, model.means.data(), big.data());
        }
        t_gemm_big = now() - t1;
    }
    const double t_floor = std::min(t_gemm_blocked, t_gemm_big);
    std::printf("sgemm X·muT (N x K x d), blocked per thread: %.3f s = %.1f GFLOP/s; OpenBLAS-threaded slabs: %.3f s = %.1f GFLOP/s\n",
                t_gemm_blocked, flop_gemm / t_gemm_blocked * 1e-9, t_gemm_big, flop_gemm / t_gemm_big * 1e-9);
    std::printf("E-step GFLOP/s counting both products of the dense algorithm (4NKd): %.1f = %.0f%% of the faster sgemm's GFLOP/s  [target >= 60%%]\n",
                2 * flop_gemm / estep * 1e-9, 100.0 * (2 * flop_gemm / estep) / (flop_gemm / t_floor));
    std::printf("E-step time / one sgemm of the same shape: %.2f (the dense algorithm's floor is 2.0)\n", estep / t_floor);

    // ---- materializing E-step on Nm rows, against ours on the same rows ----
    {
        SufficientStats a(K, d, CovarianceType::Spherical), b(K, d, CovarianceType::Spherical);
        reset_peak_rss();
        const double rss0 = proc_status_mib("VmRSS:");
        const double t_mat = materializing_estep(model, Nm, x.data(), a);
        const double mat_peak = proc_status_mib("VmHWM:") - rss0;
        EStepCpu e(256);
        e.set_model(model, nullptr);
        reset_peak_rss();
        const double rss1 = proc_status_mib("VmRSS:");
        const double t0 = now();
        e.accumulate(VectorBlock{x.data(), DataType::Float32, Nm, d}, b);
        const double t_ours = now() - t0;
        const double ours_peak = proc_status_mib("VmHWM:") - rss1;
        std::printf("materializing E-step on %lld rows: %.3f s, %.0f MiB extra; fused: %.3f s, %.0f MiB extra; speed-up %.2fx\n",
                    (long long)Nm, t_mat, mat_peak, t_ours, ours_peak, t_mat / t_ours);
        std::printf("  (check: mean loglik materializing %.6f, fused %.6f)\n", a.loglik / a.n, b.loglik / b.n);
    }
    return 0;
}

// Benchmark helper (not a test): times our CUDA E-step on rows and a model read from files, so
// that bench/gpu/bench_vs_research.py can time the research kernels (Python/Triton) and ours on
// the same data and compare both with one float64 reference. Rows are copied to the GPU once
// and every accumulate() reads them there (device-resident, as the research kernels' inputs).
//
//   bench_estep_file --rows X.bin --model M.bin --modes fast,accurate[,blocked-fast,blocked-accurate]
//                    --reps R --stats PREFIX
// X.bin: N × d float32 (N from the file size); M.bin: int64 K, int64 d, int32 cov (0 spherical,
// 1 diagonal), then float32 log-weights (K), means (K × d), variances (K or K × d), in the rows'
// frame. The rows' column mean is the E-step's center (as the trainer does). Per mode: one line
// "mode NAME algorithm ALGO wall_ms W device_ms G" (medians of R timed calls after a warm-up),
// and PREFIX_NAME.bin: float64 n, loglik, N_k (K), Σ r x (K × d, rows' frame), second moments
// about the means (K or K × d): the statistics of the last timed call.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/gpu/bench_util.cuh"
#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"
#include "gpu/EStepCuda.h"

using namespace faiss_gmm;
using faiss_gmm::bench::median;
using faiss_gmm::bench::now_s;
using faiss_gmm::gpu::EStepCuda;
using faiss_gmm::gpu::EStepCudaAlgorithm;
using faiss_gmm::gpu::EStepCudaOptions;

namespace {

std::vector<char> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) throw std::runtime_error("cannot open " + path);
    std::vector<char> b(size_t(f.tellg()));
    f.seekg(0);
    f.read(b.data(), std::streamsize(b.size()));
    return b;
}

struct Mode {
    const char* name;
    bool fast;
    EStepCudaAlgorithm algo;
};
const Mode kModes[] = {{"fast", true, EStepCudaAlgorithm::Auto},
                       {"accurate", false, EStepCudaAlgorithm::Auto},
                       {"blocked-fast", true, EStepCudaAlgorithm::Blocked},
                       {"blocked-accurate", false, EStepCudaAlgorithm::Blocked}};

} // namespace

int main(int argc, char** argv) {
    std::string rows_path, model_path, modes = "fast,accurate", prefix;
    int reps = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--rows") rows_path = v;
        else if (a == "--model") model_path = v;
        else if (a == "--modes") modes = v;
        else if (a == "--reps") reps = std::max(1, std::atoi(v.c_str()));
        else if (a == "--stats") prefix = v;
        else {
            fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    if (rows_path.empty() || model_path.empty()) {
        fprintf(stderr, "usage: %s --rows X.bin --model M.bin [--modes fast,accurate] [--reps R] [--stats PREFIX]\n",
                argv[0]);
        return 2;
    }
    const std::vector<char> mb = read_file(model_path);
    int64_t K = 0, d = 0;
    int32_t cov_code = 0;
    std::memcpy(&K, mb.data(), 8);
    std::memcpy(&d, mb.data() + 8, 8);
    std::memcpy(&cov_code, mb.data() + 16, 4);
    const CovarianceType cov = cov_code == 1 ? CovarianceType::Diagonal : CovarianceType::Spherical;
    GmmModel m(K, d, cov);
    const size_t nvar = m.variances.size();
    if (mb.size() != 20 + 4 * size_t(K + K * d + int64_t(nvar))) {
        fprintf(stderr, "%s: %zu bytes, expected %zu for K=%lld d=%lld\n", model_path.c_str(), mb.size(),
                20 + 4 * size_t(K + K * d + int64_t(nvar)), (long long)K, (long long)d);
        return 2;
    }
    const char* p = mb.data() + 20;
    std::memcpy(m.log_weights.data(), p, size_t(K) * 4);
    std::memcpy(m.means.data(), p + size_t(K) * 4, size_t(K * d) * 4);
    std::memcpy(m.variances.data(), p + size_t(K + K * d) * 4, nvar * 4);

    const std::vector<char> xb = read_file(rows_path);
    if (xb.size() % size_t(d * 4) != 0) {
        fprintf(stderr, "%s: size %zu is not a multiple of d·4\n", rows_path.c_str(), xb.size());
        return 2;
    }
    const int64_t N = int64_t(xb.size() / size_t(d * 4));
    const float* x = reinterpret_cast<const float*>(xb.data());
    std::vector<double> mean(size_t(d), 0.0);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < d; j++) mean[size_t(j)] += x[i * d + j];
    std::vector<float> center(static_cast<size_t>(d), 0.f);
    for (int64_t j = 0; j < d; j++) center[size_t(j)] = float(mean[size_t(j)] / double(N));
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < d; j++) m.means[size_t(k * d + j)] -= center[size_t(j)];
    m.validate();

    float* x_dev = nullptr;
    CK(cudaMalloc(&x_dev, xb.size()));
    CK(cudaMemcpy(x_dev, x, xb.size(), cudaMemcpyHostToDevice));
    const VectorBlock rows{x_dev, DataType::Float32, N, d};
    printf("rows N=%lld d=%lld K=%lld %s\n", (long long)N, (long long)d, (long long)K, to_string(cov));
    for (const Mode& mode : kModes) {
        if (("," + modes + ",").find("," + std::string(mode.name) + ",") == std::string::npos) continue;
        EStepCudaOptions o;
        o.devices = {0};
        o.fast_math = mode.fast;
        o.algorithm = mode.algo;
        EStepCuda es(K, d, o);
        es.set_model(m, center.data());
        SufficientStats st(K, d, cov);
        es.accumulate(rows, st); // warm-up: buffers, module load
        std::vector<double> wall, dev;
        for (int r = 0; r < reps; r++) {
            st.clear();
            const double t0 = now_s();
            es.accumulate(rows, st);
            wall.push_back((now_s() - t0) * 1e3);
            dev.push_back(es.last_report()[0].gpu_ms);
        }
        printf("mode %s algorithm %s wall_ms %.3f device_ms %.3f\n", mode.name, es.last_report()[0].algorithm,
               median(wall), median(dev));
        fflush(stdout);
        if (!prefix.empty()) {
            // Σ r x in the rows' frame: Σ r (x − c) + N_k c.
            for (int64_t k = 0; k < K; k++)
                for (int64_t j = 0; j < d; j++) st.sum_x[size_t(k * d + j)] += st.nk[size_t(k)] * center[size_t(j)];
            std::ofstream f(prefix + "_" + mode.name + ".bin", std::ios::binary);
            f.write(reinterpret_cast<const char*>(&st.n), 8);
            f.write(reinterpret_cast<const char*>(&st.loglik), 8);
            for (const std::vector<double>* v : {&st.nk, &st.sum_x, &st.sum_sq})
                f.write(reinterpret_cast<const char*>(v->data()), std::streamsize(v->size() * 8));
        }
    }
    CK(cudaFree(x_dev));
    return 0;
}

// Host side of the CUDA E-step: options, the split of rows across GPUs (one worker per
// device entry), retain/pin of the caller's rows, and the statistics assembled from the
// workers' increments. A worker drives one GPU: a row pipeline (detail/RowPipeline.h) feeds
// chunks to the algorithm chosen for the model (detail/heuristics.h): detail/HopperEStep.h
// or detail/BlockedEStep.h, which own their buffers and finish their own sums.
#include "gpu/EStepCuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "gpu/detail/BlockedEStep.h"
#include "gpu/detail/CudaUtils.h"
#include "gpu/detail/DeviceResources.h"
#include "gpu/detail/FullEStep.h"
#include "gpu/detail/HopperEStep.h"
#include "gpu/detail/ModelEncoding.h"
#include "gpu/detail/RowPipeline.h"
#include "gpu/detail/heuristics.h"

namespace faiss_gmm::gpu {

using namespace detail;

int cuda_device_count() {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        cudaGetLastError(); // clear the sticky-free error so later calls start clean
        return 0;
    }
    return n;
}

bool full_covariance_supported(int64_t K, int64_t d) {
    return d >= 1 && d <= kMaxFullDim && K >= 1 && K * d < (int64_t(1) << 31);
}

bool hopper_kernels_available(int device) {
    if (device < 0 || device >= cuda_device_count()) return false;
    int prev = 0;
    if (cudaGetDevice(&prev) != cudaSuccess) {
        cudaGetLastError();
        prev = -1;
    }
    const bool ok = hopper_supported(device);
    if (prev >= 0) cudaSetDevice(prev);
    return ok;
}

EStepCudaAlgorithm parse_estep_cuda_algorithm(const std::string& name) {
    std::string s;
    for (char c : name) s += char(std::tolower(static_cast<unsigned char>(c)));
    if (s == "blocked") return EStepCudaAlgorithm::Blocked;
    if (s == "hopper") return EStepCudaAlgorithm::Hopper;
    if (s == "auto") return EStepCudaAlgorithm::Auto;
    if (s == "fused") {
        throw std::invalid_argument("EStepCudaAlgorithm 'fused' was removed: it was slower than 'blocked' or "
                                    "'hopper' at every measured shape (bench/results/gpu_NVIDIA-H200.md); use 'auto'");
    }
    throw std::invalid_argument("unknown EStepCudaAlgorithm '" + name + "' (blocked, hopper or auto)");
}

namespace {
/// Milliseconds of host wall time since `start`.
double ms_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

/// The options' errors, before any GPU work (FAISS style: at the API boundary).
void check_options(const EStepCudaOptions& o) {
    const int a = int(o.algorithm);
    if (a == 1) {
        throw std::invalid_argument("EStepCuda: algorithm 1 (Fused) was removed: it was slower than Blocked or Hopper "
                                    "at every measured shape; use EStepCudaAlgorithm::Auto");
    }
    if (a != int(EStepCudaAlgorithm::Blocked) && a != int(EStepCudaAlgorithm::Hopper) &&
        a != int(EStepCudaAlgorithm::Auto)) {
        throw std::invalid_argument("EStepCuda: unknown algorithm " + std::to_string(a));
    }
    if (o.chunk_rows < 0) throw std::invalid_argument("EStepCuda: chunk_rows must be >= 0");
    if (o.hopper_exchange != 0 && o.hopper_exchange != 1) {
        throw std::invalid_argument("EStepCuda: hopper_exchange must be 0 or 1");
    }
    if (o.hopper_flush_tiles < 1) throw std::invalid_argument("EStepCuda: hopper_flush_tiles must be >= 1");
    if (o.hopper_sub_tiles < 1) throw std::invalid_argument("EStepCuda: hopper_sub_tiles must be >= 1");
    if (o.hopper_max_clusters < 0) {
        throw std::invalid_argument("EStepCuda: hopper_max_clusters must be >= 0 (0: as many as fit)");
    }
    if (o.hopper_sub_chunk_growth < 0 || o.hopper_sub_chunk_growth > 4) {
        throw std::invalid_argument("EStepCuda: hopper_sub_chunk_growth must be 0 (auto) or 1 to 4");
    }
    if (o.hopper_diag_wide < 0 || o.hopper_diag_wide > 2) {
        throw std::invalid_argument("EStepCuda: hopper_diag_wide must be 0 (auto), 1 (wide kernel) or 2 (two passes)");
    }
    if (o.hopper_reproducible_block_rows < 0 || o.hopper_reproducible_block_rows > kMaxReproducibleBlockRows ||
        o.hopper_reproducible_block_rows % kReproducibleBlockRows != 0) {
        throw std::invalid_argument("EStepCuda: hopper_reproducible_block_rows must be 0 (auto) or a multiple of " +
                                    std::to_string(kReproducibleBlockRows) + " up to " +
                                    std::to_string(kMaxReproducibleBlockRows) + " (got " +
                                    std::to_string(o.hopper_reproducible_block_rows) + ")");
    }
}

bool wants_hopper(EStepCudaAlgorithm a) { return a == EStepCudaAlgorithm::Hopper || a == EStepCudaAlgorithm::Auto; }

} // namespace

/// One GPU (one entry of options().devices): the kernels' stream, the row pipeline, and the
/// algorithms, made when a model first needs them and kept for later models.
struct EStepCuda::Worker {
    int device;
    const EStepCudaOptions& options;
    int sm_count = 0;
    bool hopper_ok = false; // Hopper or Auto asked for, and this GPU runs the sm_90a kernels
    int64_t chunk_rows;     // sized by the first model when options.chunk_rows is 0
    // The kernels' stream gets the highest priority (the Hopper features' stream the lowest): when
    // both have blocks waiting, freed SMs go to the cluster kernel, and the features fill the rest.
    std::unique_ptr<CudaStream> stream;
    std::unique_ptr<CudaEvent> t_begin, t_end; // report.gpu_ms
    std::unique_ptr<RowPipeline> pipeline;
    std::unique_ptr<HopperEStep> hopper;
    std::unique_ptr<BlockedEStep> blocked;
    std::unique_ptr<FullEStep> full; // full covariances (made for the first such model)
    ChunkAlgorithm* active = nullptr; // the current model's
    int64_t refined_components = 0;   // the current model's narrow components (em.refine)
    bool has_results = false;         // the last accumulate() gave this worker rows
    EStepCudaReport report;

    Worker(int dev, const EStepCudaOptions& opt, int host_threads)
            : device(dev), options(opt), chunk_rows(opt.chunk_rows) {
        DeviceScope scope(device);
        hopper_ok = wants_hopper(opt.algorithm) && hopper_supported(dev);
        FAISS_GMM_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
        int least = 0, greatest = 0;
        FAISS_GMM_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        stream = std::make_unique<CudaStream>(greatest);
        t_begin = std::make_unique<CudaEvent>(true);
        t_end = std::make_unique<CudaEvent>(true);
        pipeline = std::make_unique<RowPipeline>(device, host_threads, opt.poison_buffers);
        blocked = std::make_unique<BlockedEStep>(device, opt.fast_math, opt.block_bytes, opt.poison_buffers, *stream);
    }
    ~Worker() {
        DeviceScope scope(device);
        if (stream) cudaStreamSynchronize(*stream);
    }

    /// hopper_block_rows: the Hopper kernels' reproducible block (EStepCuda::hopper_block_rows).
    void set_model(const EncodedModel& em, int64_t hopper_block_rows) {
        DeviceScope scope(device);
        FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(*stream));
        refined_components = em.refine ? int64_t(em.refine->narrow.size()) : 0;
        if (em.full) {
            if (!full) {
                // The fused tensor-core kernel (mma.sync: sm_80 and later) unless Blocked is asked for.
                int major = 0;
                FAISS_GMM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
                const bool fused = options.algorithm != EStepCudaAlgorithm::Blocked && major >= 8;
                // Its Hopper version (wgmma) where the Hopper kernels run, unless turned off.
                const bool sm90 = hopper_ok && options.full_sm90_kernel;
                full = std::make_unique<FullEStep>(device, options.fast_math, fused, sm90, options.hopper_full_group,
                                                   options.block_bytes, options.poison_buffers, sm_count, *stream);
            }
            active = full.get();
        } else if (em.hopper && hopper_ok) {
            if (!hopper) hopper = std::make_unique<HopperEStep>(device, options, sm_count);
            hopper->set_block_rows(hopper_block_rows);
            active = hopper.get();
        } else {
            active = blocked.get();
        }
        if (chunk_rows == 0) {
            size_t free_b = 0, total_b = 0;
            FAISS_GMM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
            chunk_rows = auto_chunk_rows(active->bytes_per_row(em), free_b);
        }
        // Buffers for at least one reproducible block (block_chunk_rows(); FullEStep's groups and
        // HopperEStep's blocks: those algorithms see to it).
        active->set_model(em, std::max<int64_t>(chunk_rows, kReproducibleBlockRows), *stream);
    }

    /// Chunks of a reproducible call: whole units (blocks, or FullEStep's groups), as many as
    /// chunk_rows holds (at least one), rounded down to a multiple of the algorithm's
    /// reproducible_chunk_units() where chunk_rows holds one.
    int64_t block_chunk_rows() const {
        const int64_t R = active->reproducible_block_rows(), units = chunk_rows / R;
        const int64_t m = std::max<int64_t>(1, active->reproducible_chunk_units());
        return R * std::max<int64_t>(1, units >= m ? units / m * m : units);
    }

    /// Processes rows (any memory kind); the increments stay in the active algorithm. grid:
    /// reproducible sums (rows start on a block), the limbs on these grids; nullptr: sums.
    void run(const VectorBlock& rows, const LimbGrid* grid) {
        DeviceScope scope(device);
        report = EStepCudaReport();
        report.rows = rows.n;
        report.algorithm = active->name();
        report.refined_components = refined_components;
        if (grid) {
            active->begin_reproducible(*grid, *stream);
        } else {
            active->begin(*stream);
        }
        FAISS_GMM_CUDA_CHECK(cudaEventRecord(*t_begin, *stream));
        pipeline->run(
                rows, grid ? block_chunk_rows() : chunk_rows, *stream,
                [&](const void* x, int64_t n) { active->chunk(x, rows.type, n, *stream, report); }, report);
        FAISS_GMM_CUDA_CHECK(cudaEventRecord(*t_end, *stream));
        FAISS_GMM_CUDA_CHECK(cudaEventSynchronize(*t_end)); // (so that the download is timed alone)
        const auto download_start = std::chrono::steady_clock::now();
        active->download(*stream);
        report.download_ms = ms_since(download_start);
        pipeline->finish();
        float ms = 0;
        FAISS_GMM_CUDA_CHECK(cudaEventElapsedTime(&ms, *t_begin, *t_end));
        report.gpu_ms = ms;
        report.device_bytes = pipeline->device_bytes() + blocked->device_bytes() + (hopper ? hopper->device_bytes() : 0) +
                              (full ? full->device_bytes() : 0);
        has_results = true;
    }

    /// A share of no rows: nothing to add, the GPU untouched.
    void clear_results() {
        report = EStepCudaReport();
        has_results = false;
    }
};

EStepCuda::EStepCuda(int64_t K, int64_t d, const EStepCudaOptions& options) : options_(options), K_(K), d_(d) {
    if (K < 1 || d < 1) throw std::invalid_argument("EStepCuda: K and d must be >= 1");
    if (K > (int64_t(1) << 24)) throw std::invalid_argument("EStepCuda: K > 2^24 is not supported");
    check_options(options_);
    const int ndev = cuda_device_count();
    if (ndev == 0) {
        throw std::runtime_error("EStepCuda: no CUDA GPU is visible (no driver, or CUDA_VISIBLE_DEVICES is empty)");
    }
    if (options_.devices.empty()) {
        for (int i = 0; i < ndev; i++) options_.devices.push_back(i);
    }
    for (int dev : options_.devices) {
        if (dev < 0 || dev >= ndev) {
            throw std::invalid_argument("EStepCuda: device " + std::to_string(dev) + " does not exist (" +
                                        std::to_string(ndev) + " visible)");
        }
    }
    const int threads = host_copy_threads(options_.host_copy_threads, std::thread::hardware_concurrency(),
                                          int(options_.devices.size()));
    for (int dev : options_.devices) workers_.push_back(std::make_unique<Worker>(dev, options_, threads));
    const char* precision = options_.fast_math ? ":tf32" : "";
    if (options_.devices.size() == 1) {
        snprintf(name_, sizeof(name_), "cuda:%d%s", options_.devices[0], precision);
    } else {
        snprintf(name_, sizeof(name_), "cuda:x%d%s", int(options_.devices.size()), precision);
    }
}

EStepCuda::~EStepCuda() { release_rows(); }

/// Rows copied to the GPUs by retain_rows(): worker i holds the caller's rows
/// [begin[i], end[i]) in copies[i], on its device.
struct EStepCuda::Retained {
    VectorBlock host;
    std::vector<int64_t> begin, end;
    std::vector<std::unique_ptr<DeviceBuffer>> copies;

    /// Index of rows' first row within the retained rows, or −1 when rows are
    /// not a slice of them (other memory, type or dimension).
    int64_t first_row_of(const VectorBlock& rows) const {
        if (rows.type != host.type || rows.d != host.d || rows.n > host.n) return -1;
        const auto at = reinterpret_cast<uintptr_t>(rows.data), base = reinterpret_cast<uintptr_t>(host.data);
        const size_t rb = host.row_bytes();
        if (at < base || (at - base) % rb != 0) return -1;
        const int64_t first = int64_t((at - base) / rb);
        return first + rows.n <= host.n ? first : -1;
    }
};

void EStepCuda::retain_rows(const VectorBlock& rows) {
    release_rows();
    if (rows.n <= 0 || rows.d != d_ || (rows.type != DataType::Float32 && rows.type != DataType::UInt8)) return;
    if (options_.retain == EStepCudaRetain::Ignore) return;
    if (options_.retain == EStepCudaRetain::Pin || !copy_rows_to_gpus(rows)) pin_rows(rows);
}

void EStepCuda::pin_rows(const VectorBlock& rows) {
    // Read-only registration first (the GPU only reads the rows; it also accepts read-only mappings).
    void* p = const_cast<void*>(rows.data);
    const size_t bytes = size_t(rows.n) * rows.row_bytes();
    if (cudaHostRegister(p, bytes, cudaHostRegisterPortable | cudaHostRegisterReadOnly) != cudaSuccess) {
        cudaGetLastError();
        if (cudaHostRegister(p, bytes, cudaHostRegisterPortable) != cudaSuccess) {
            cudaGetLastError(); // already pinned, device memory, or not allowed: passes stream as before
            return;
        }
    }
    pinned_rows_ = p;
}

bool EStepCuda::copy_rows_to_gpus(const VectorBlock& rows) {
    const int nw = int(workers_.size());
    auto r = std::make_unique<Retained>();
    r->host = rows;
    // Devices may repeat (several workers on one GPU): check each device's total.
    // Each copy runs one unit past its share (clipped to the rows), so that a reproducible call
    // gives worker i the whole units that start in its share (shares_of) wherever they start: a
    // block: the largest any algorithm sums (FullEStep's groups, the Hopper kernels' blocks: at most
    // kMaxReproducibleBlockRows = 65536 rows; 32 MiB of d = 128 floats), whatever expect_rows() says
    // later.
    const int64_t reach = kMaxReproducibleBlockRows;
    static_assert(kFullMaxGroupBlocks * kReproducibleBlockRows <= kMaxReproducibleBlockRows, "a copy holds a group");
    auto copy_end = [&](int i) { return std::min(rows.n, r->end[i] + reach); };
    std::vector<std::pair<int, size_t>> need;
    for (int i = 0; i < nw; i++) {
        r->begin.push_back(rows.n * i / nw);
        r->end.push_back(rows.n * (i + 1) / nw);
        const size_t bytes = size_t(copy_end(i) - r->begin[i]) * rows.row_bytes();
        auto it = std::find_if(need.begin(), need.end(), [&](auto& e) { return e.first == workers_[i]->device; });
        if (it == need.end()) need.emplace_back(workers_[i]->device, bytes);
        else it->second += bytes;
    }
    for (const auto& [dev, bytes] : need) {
        size_t free_b = 0, total_b = 0;
        if (cudaSetDevice(dev) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        // Room for the E-step's own buffers and for whoever else uses the GPU.
        const size_t keep_free = std::max<size_t>(size_t(4) << 30, total_b / 10);
        if (bytes + keep_free > free_b) return false; // does not fit
    }
    try {
        for (int i = 0; i < nw; i++) {
            auto copy = std::make_unique<DeviceBuffer>();
            const size_t bytes = size_t(copy_end(i) - r->begin[i]) * rows.row_bytes();
            copy->allocate(workers_[i]->device, bytes, false);
            FAISS_GMM_CUDA_CHECK(cudaMemcpy(copy->get(), rows.row(r->begin[i]), bytes, cudaMemcpyDefault));
            r->copies.push_back(std::move(copy));
        }
    } catch (const std::exception&) {
        return false; // out of memory after all (another process); r frees what it got
    }
    retained_ = std::move(r);
    return true;
}

void EStepCuda::release_rows() {
    retained_.reset();
    if (pinned_rows_) {
        cudaHostUnregister(pinned_rows_);
        cudaGetLastError();
        pinned_rows_ = nullptr;
    }
}

const char* EStepCuda::name() const { return name_; }

void EStepCuda::set_model(const GmmModel& model, const float* center) {
    model.validate();
    if (model.K != K_ || model.d != d_) {
        throw std::invalid_argument("EStepCuda::set_model: model is K=" + std::to_string(model.K) +
                                    ", d=" + std::to_string(model.d) + " but this E-step was built for K=" +
                                    std::to_string(K_) + ", d=" + std::to_string(d_));
    }
    if (model.covariance_type == CovarianceType::Full) {
        // One algorithm for full covariances (detail/FullEStep.h), whatever options.algorithm says.
        if (!full_covariance_supported(K_, d_)) {
            throw std::invalid_argument("EStepCuda::set_model: covariance_type = full on the GPU needs d <= " +
                                        std::to_string(kMaxFullDim) + " and K·d < 2^31 (this model: K=" +
                                        std::to_string(K_) + ", d=" + std::to_string(d_) +
                                        "); use the CPU E-step (Device::Cpu, or Device::Auto, which picks it)");
        }
        const EncodedModel em = encode_full_model(model, center);
        for (auto& wk : workers_) wk->set_model(em, hopper_block_rows());
        covariance_type_ = model.covariance_type;
        have_model_ = true;
        return;
    }
    const bool fast = options_.fast_math;
    // Exact log-densities (issue 13): a model with narrow components runs Blocked + refinement.
    // Blocked materializes each block's logits, so a kernel can recompute the (row, component)
    // pairs the CPU backend would (ExactLogDensity.h) before the log-sum-exp, and sum the narrow
    // components' statistics directly; the Hopper kernels keep the logits in registers and fold
    // them into the sums in the same pass, so correcting them afterwards would mean redoing the
    // rows. Such models are rare (a collapse, a tiny variance far from the center) and their
    // E-step is then Blocked's, with fp32 GEMMs: the bound is that of fp32 products.
    std::unique_ptr<RefineModel> refine =
            options_.exact_log_densities ? encode_refinement(model, center) : nullptr;
    const bool hopper_covered = wants_hopper(options_.algorithm) && hopper_covers(d_);
    if (refine && !said_refine_ && (options_.algorithm == EStepCudaAlgorithm::Hopper || fast)) {
        fprintf(stderr,
                "EStepCuda: %lld of %lld components are narrow (exact log-densities, issue 13): running Blocked "
                "with refinement and fp32 GEMMs%s%s\n",
                (long long)refine->narrow.size(), (long long)K_,
                options_.algorithm == EStepCudaAlgorithm::Hopper ? ", not the Hopper kernels" : "",
                fast ? ", not fast_math" : "");
        said_refine_ = true;
    }
    const bool hopper = hopper_covered && !refine; // (before the move below)
    const EncodedModel em = encode_model(model, center, hopper, fast, std::move(refine));
    for (auto& wk : workers_) wk->set_model(em, hopper_block_rows());
    covariance_type_ = model.covariance_type;
    have_model_ = true;
}

void EStepCuda::check_call(const VectorBlock& rows) const {
    if (!have_model_) throw std::logic_error("EStepCuda::accumulate called before set_model");
    if (rows.d != d_) {
        throw std::invalid_argument("EStepCuda::accumulate: rows have d=" + std::to_string(rows.d) +
                                    ", the model d=" + std::to_string(d_));
    }
    if (rows.n < 0 || (rows.n > 0 && rows.data == nullptr)) {
        throw std::invalid_argument("EStepCuda::accumulate: invalid rows (null data or negative n)");
    }
    if (rows.type != DataType::Float32 && rows.type != DataType::UInt8) {
        throw std::invalid_argument(std::string("EStepCuda::accumulate: ") + to_string(rows.type) +
                                    " rows are not supported on the GPU (convert to float32 or uint8)");
    }
}

std::vector<VectorBlock> EStepCuda::shares_of(const VectorBlock& rows, int64_t block) const {
    // Contiguous share of rows per worker (statistics are sums, so any split works); with
    // block > 1 (reproducible sums) every share is whole blocks of the call. Rows retained on
    // the GPUs: each worker reads the part of its own copy that overlaps them (possibly nothing);
    // with blocks, the blocks that start in its share, whole (the copy runs one block further).
    const int nw = int(workers_.size());
    std::vector<VectorBlock> shares(nw);
    const int64_t first = retained_ ? retained_->first_row_of(rows) : -1;
    auto block_start = [&](int64_t r) { // first block start of the call at or after call row r
        return std::min(rows.n, (r + block - 1) / block * block);
    };
    for (int i = 0; i < nw; i++) {
        if (first >= 0) {
            const int64_t a = block_start(std::max<int64_t>(retained_->begin[i] - first, 0));
            const int64_t b = block_start(std::max<int64_t>(std::min(rows.n, retained_->end[i] - first), 0));
            const size_t offset = size_t(first + a - retained_->begin[i]) * rows.row_bytes(); // first + a >= begin[i]
            shares[i] = VectorBlock{static_cast<const uint8_t*>(retained_->copies[i]->get()) + offset, rows.type,
                                    std::max<int64_t>(b - a, 0), d_};
        } else {
            const int64_t nblocks = (rows.n + block - 1) / block;
            const int64_t a = std::min(rows.n, nblocks * i / nw * block);
            const int64_t b = std::min(rows.n, nblocks * (i + 1) / nw * block);
            shares[i] = rows.slice(a, b - a);
        }
    }
    return shares;
}

void EStepCuda::run_workers(const std::vector<VectorBlock>& shares, const void* limbs) {
    const int nw = int(workers_.size());
    const LimbGrid* grid = static_cast<const LimbGrid*>(limbs);
    auto run_share = [&](int i) {
        if (shares[i].n > 0) {
            workers_[i]->run(shares[i], grid);
        } else {
            workers_[i]->clear_results();
        }
    };
    if (nw == 1) {
        run_share(0);
        return;
    }
    std::vector<std::exception_ptr> errors(nw);
    std::vector<std::thread> threads;
    for (int i = 0; i < nw; i++) {
        threads.emplace_back([&, i] {
            try {
                run_share(i);
            } catch (...) {
                errors[i] = std::current_exception();
            }
        });
    }
    for (auto& t : threads) t.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

void EStepCuda::accumulate(const VectorBlock& rows, SufficientStats& stats) {
    check_call(rows);
    if (stats.K != K_ || stats.d != d_ || stats.covariance_type != covariance_type_) {
        throw std::invalid_argument("EStepCuda::accumulate: stats shape does not match the model");
    }
    if (rows.n == 0) return;
    run_workers(shares_of(rows, 1), nullptr);

    // Each worker's algorithm adds its increments (statistics about the model's means, in double).
    double ll = 0;
    for (auto& wk : workers_)
        if (wk->has_results) ll += wk->active->loglik();
    stats.n += double(rows.n);
    stats.loglik += ll;
    for (auto& wk : workers_) {
        if (!wk->has_results) continue;
        const auto add_start = std::chrono::steady_clock::now();
        wk->active->add_to(stats);
        wk->report.add_ms = ms_since(add_start);
    }
}

void EStepCuda::accumulate_reproducible(const VectorBlock& rows, StatsAccumulator& acc) {
    check_call(rows);
    if (acc.K() != K_ || acc.d() != d_ || acc.covariance_type() != covariance_type_) {
        throw std::invalid_argument("EStepCuda::accumulate_reproducible: the accumulator's shape does not match "
                                    "the model");
    }
    if (rows.n == 0) return;
    LimbGrid grid;
    grid.inv_nk = 1.0; // N_k's grid: scale 2^0 (StatsAccumulator::set_row_bounds)
    grid.inv_x = std::ldexp(1.0, -acc.x_exponent());
    grid.inv_sq = std::ldexp(1.0, -acc.sq_exponent());
    grid.nvalues = int64_t(acc.nvalues());
    grid.x_begin = K_;
    grid.sq_begin = K_ + K_ * d_;
    // The unit summed on its own: every worker's algorithm's unit divides it (Blocked's 4096
    // rows, where a model with narrow components moves from the Hopper kernels). Pieces of at
    // most kMaxPieceRows rows, on unit boundaries, keep the device's integers from wrapping
    // (ReproducibleLimbs.h); pieces of a call give the same bits.
    const int64_t unit = reproducible_block_rows(covariance_type_);
    const int64_t piece = std::max(unit, kMaxPieceRows / unit * unit);
    for (int64_t first = 0; first < rows.n; first += piece) {
        const VectorBlock part = rows.slice(first, std::min(piece, rows.n - first));
        const std::vector<VectorBlock> shares = shares_of(part, unit);
        run_workers(shares, &grid);
        for (auto& wk : workers_) {
            if (wk->has_results && wk->active->limbs_overflowed()) {
                throw std::runtime_error(
                        "EStepCuda::accumulate_reproducible: a block's statistic is not finite or is 2^22 times its "
                        "grid's scale or more (or a sum over the call 2^31 times): the accumulator's row bounds "
                        "(StatsAccumulator::set_row_bounds) do not hold for these rows");
            }
        }
        // Each worker's limbs are one addition's worth (balanced 32-bit limbs): add them one by one.
        for (size_t i = 0; i < workers_.size(); i++) {
            if (!workers_[i]->has_results) continue;
            const ChunkAlgorithm& a = *workers_[i]->active;
            acc.add_limbs(shares[i].n, a.loglik_limbs(), a.value_limbs(), kHostLimbs);
        }
    }
}

int64_t EStepCuda::reproducible_block_rows(CovarianceType cov) const {
    if (cov == CovarianceType::Full) return full_reproducible_group_rows(K_, options_.block_bytes);
    const bool hopper = wants_hopper(options_.algorithm) && hopper_covers(d_) &&
                        std::any_of(workers_.begin(), workers_.end(), [](auto& wk) { return wk->hopper_ok; });
    const bool diag = cov == CovarianceType::Diagonal;
    return hopper && hopper_float_partials(diag, d_, options_.fast_math) ? hopper_block_rows()
                                                                             : kReproducibleBlockRows;
}

int64_t EStepCuda::hopper_block_rows() const {
    const int64_t o = options_.hopper_reproducible_block_rows;
    return o > 0 ? o : hopper_auto_block_rows(expected_rows_);
}

void EStepCuda::expect_rows(int64_t total_rows) {
    if (total_rows < 0) throw std::invalid_argument("EStepCuda::expect_rows: total_rows must be >= 0");
    expected_rows_ = total_rows;
    have_model_ = false; // the Hopper blocks (and their buffers) follow at set_model()
}

std::vector<EStepCudaReport> EStepCuda::last_report() const {
    std::vector<EStepCudaReport> r;
    for (auto& wk : workers_) r.push_back(wk->report);
    return r;
}

std::unique_ptr<EStep> make_estep_cuda(const GmmParams& params, int64_t K, int64_t d) {
    EStepCudaOptions opt;
    opt.fast_math = params.fast_math;
    return std::make_unique<EStepCuda>(K, d, opt);
}

} // namespace faiss_gmm::gpu

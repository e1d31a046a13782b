// The CUDA E-step: the same EStep interface as the CPU backend, computed per chunk
// of rows by one of two algorithms (cuBLAS-blocked, or the Hopper wgmma + cluster
// kernel), streaming rows from host memory through pinned double buffers, on one or
// several GPUs. This header needs no CUDA headers: make_estep() includes it in builds
// with the CUDA backend. The parts: gpu/detail/ (README layout table).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <faiss_gmm/EStep.h>

namespace faiss_gmm::gpu {

/// How a chunk of rows is turned into statistics. (Value 1 was `Fused`, two mma.sync kernels:
/// removed, it was slower than Blocked or Hopper at every measured shape, bench/results.)
enum class EStepCudaAlgorithm : int {
    Blocked = 0, ///< per block of rows: cuBLAS GEMM for the logits, a responsibility kernel, cuBLAS GEMM for Rᵀ·[x, x², 1, ‖x‖²]; memory O(block·K + K·d)
    /// Hopper (sm_90a: H100/H200) fused kernel: wgmma tensor cores, fp16 operands with power-of-two
    /// scales, one pass for K ≤ 1024 (a cluster of ≤ 8 CTAs shares each row's log-sum-exp through
    /// distributed shared memory), two passes above. Accurate mode splits every operand in two fp16
    /// halves (three products per GEMM: fp32-level products), one pass or two likewise.
    /// Used for spherical and diagonal models (the same products over the features [x | x²]) with
    /// d ≤ 128, any K (diagonal d > 64: the wide fp16 kernel for K ≤ 1024 in fast mode, else the
    /// two passes of gpu/detail/Sm90DiagSplitKernels.cuh, 2×fp16 or, in fast mode, one fp16 plane)
    /// (gpu/detail/heuristics.h: hopper_covers, hopper_diag_two_pass); any
    /// other case (d > 128, a non-Hopper GPU) runs Blocked instead, and so does a model with narrow
    /// components (EStepCudaOptions::exact_log_densities).
    Hopper = 2,
    Auto = 3, ///< Hopper where it applies (see above), else Blocked
};

/// "blocked", "hopper" or "auto" (any case) → the algorithm. Throws std::invalid_argument for
/// anything else, saying so when the name is that of a removed algorithm ("fused").
EStepCudaAlgorithm parse_estep_cuda_algorithm(const std::string& name);

/// What EStepCuda::retain_rows() does with the rows it is offered.
enum class EStepCudaRetain : int {
    Auto = 0,   ///< copy them to the GPUs when they fit with room to spare, else pin them in place
    Pin = 1,    ///< always pin them in place (cudaHostRegister): passes stream them by DMA, no staging copy
    Ignore = 2, ///< keep nothing: every pass copies pageable rows through pinned staging buffers
};

/// Largest reproducible block: the limbs' headroom (detail/LimbFormat.h: kMaxPartialOverScale is 64
/// times what a block of this many rows within the accumulator's row bounds gives).
constexpr int64_t kMaxReproducibleBlockRows = 16 * kReproducibleBlockRows;

/// Options of the CUDA E-step (GmmParams carries the ones the trainer sets).
struct EStepCudaOptions {
    std::vector<int> devices;    ///< GPUs that share the rows; empty = every visible GPU. A device may repeat (tests).
    bool fast_math = false;      ///< tensor-core products (rel. error ≲ 1e-3): fp16 in the Hopper kernel, 1×TF32 in Blocked; else fp32-accurate (≲ 1e-4): 2×fp16 split products (Hopper) or fp32 GEMMs (Blocked)
    int64_t chunk_rows = 0;      ///< rows per device chunk; 0 = auto (≈ 2 GB of chunk buffers, at most 1M rows)
    int host_copy_threads = 0;   ///< threads copying pageable rows into pinned staging buffers; 0 = auto
    EStepCudaAlgorithm algorithm = EStepCudaAlgorithm::Auto; ///< bench/results/gpu_NVIDIA-H200.md has the measurements behind Auto
    int64_t block_bytes = int64_t(256) << 20; ///< Blocked: bytes of the block × K logits buffer (sets the block's rows)
    bool poison_buffers = false; ///< tests: fill scratch buffers with NaN when allocated, so reads of unwritten data show
    EStepCudaRetain retain = EStepCudaRetain::Auto; ///< what retain_rows() does (Pin / Ignore: benchmarks and tests)
    // Knobs of the Hopper kernels (tests and benchmarks; the defaults measured best).
    int hopper_exchange = 0;     ///< one-pass fast kernel, per-row partials between CTAs: 0 = st.async + mbarrier, 1 = barrier.cluster per tile (measured ~10 % slower)
    int hopper_flush_tiles = 64; ///< accurate kernel: row tiles per fp32 accumulation run before a flush into double sums (≥ 1; 64 tiles = 4096 rows)
    int hopper_sub_tiles = 128;  ///< one-pass kernels: tiles per cluster below which a chunk is not cut into sub-chunks (≥ 1; tests use 1)
    /// One-pass kernels: clusters launched at most (0: as many as fit the GPU at once). Fewer leave
    /// SMs to the features pass of the next sub-chunk, which otherwise shares the SMs with the kernel
    /// (at K = 256, clusters of 2 fill all 132 SMs of an H100; at K = 1024, 15 clusters of 8 leave 12).
    int hopper_max_clusters = 0;
    /// One-pass kernels: each sub-chunk of a chunk holds this many times the tiles of the one before
    /// (1..4; 1: equal sub-chunks; 0: auto, detail/heuristics.h: hopper_auto_sub_chunk_growth). The
    /// first sub-chunk's features run before any kernel, the later ones' under the previous kernel,
    /// so a smaller first sub-chunk leaves fewer of them unhidden.
    /// (accumulate_reproducible keeps its sub-chunks of whole waves of blocks.)
    int hopper_sub_chunk_growth = 0;
    /// Fast mode, diagonal models with 64 < d ≤ 128 and K ≤ 1024: 0 = auto (detail/heuristics.h:
    /// hopper_diag_two_pass), 1 = the one-pass wide kernel, 2 = the two passes of one fp16 plane
    /// (which K > 1024 always runs).
    int hopper_diag_wide = 0;
    /// Reproducible sums on the Hopper kernels with fp32 partials (fast mode; accumulate_reproducible):
    /// rows of a block summed on its own, a multiple of kReproducibleBlockRows up to
    /// kMaxReproducibleBlockRows, or 0: chosen by the rows expect_rows() announced (4 × 4096 from 8M
    /// rows on, else 4096: detail/heuristics.h hopper_auto_block_rows). Each block's partial
    /// (K × (d + 2) sums) is written by the kernel and cut into integers by another, so larger
    /// blocks cost less of both, but a call's last wave of clusters may be less full
    /// (bench/results/gpu_reproducible_sums.md, run 10). The bits depend on it. (The 2×fp16 kernels
    /// keep 4096-row blocks: heuristics.h hopper_float_partials.)
    int64_t hopper_reproducible_block_rows = 0;
    int hopper_full_group = 0;   ///< full covariances, wgmma kernel: columns per product group (0: one product per k-step over its non-zero columns, serialized by ptxas, measured fastest; 32, 64; ≥ d: the whole row, zeros multiplied)
    /// Full covariances on a Hopper GPU: the fused kernel's wgmma version (detail/FullHopperKernel.cuh)
    /// instead of the sm_80 one (mma.sync), same arithmetic; false: the sm_80 kernel (tests, benchmarks).
    /// At 1M × 1024 × 128 on an H100 a fast call took 72 ms of device time against 115 for the sm_80
    /// kernel in the same run (bench/results/gpu_full_covariance.md).
    bool full_sm90_kernel = true;
    /// Exact log-densities where the expanded form cancels (issue 13): a model with narrow components
    /// (faiss_gmm/ExactLogDensity.h: a collapse, a variance ~1e-6 of the data's far from the center)
    /// runs Blocked with fp32 GEMMs and its refinement kernels, whatever `algorithm` and `fast_math`
    /// say (a line on stderr says so when they asked otherwise); other models run as before.
    /// false: never refine (tests show what the refinement fixes).
    bool exact_log_densities = true;
};

/// Per-GPU figures of the last accumulate() call (for benchmarks and logs).
struct EStepCudaReport {
    int64_t rows = 0;             ///< rows this GPU processed
    int64_t chunks = 0;           ///< chunks it processed
    size_t device_bytes = 0;      ///< bytes this backend holds on the GPU (model, chunk and staging buffers)
    size_t pinned_bytes = 0;      ///< pinned host staging bytes
    double h2d_bytes = 0;         ///< bytes copied host → device
    const char* algorithm = "";   ///< algorithm that ran: "blocked", "hopper", "full-fused-sm90", "full-fused" or "full-blocked"
    double gpu_ms = 0;            ///< device time from the first chunk's work to the statistics' download (CUDA events)
    double download_ms = 0;       ///< host wall time of that download, after the device's work (full covariances: 67 MB at K = 1024, d = 128)
    double add_ms = 0;            ///< host wall time of adding the downloaded sums to the caller's SufficientStats (accumulate)
    int blocks = 0;               ///< Hopper: thread blocks of the main kernel (last chunk)
    int cluster = 0;              ///< Hopper: cluster size of the one-pass kernel; 0 = two passes (K > 1024)
    int64_t refined_components = 0; ///< narrow components of the model (Blocked + refinement ran); 0: the ordinary path
};

class EStepCuda : public EStep {
  public:
    /// K, d: the model's shape; the covariance type comes with set_model().
    /// Throws std::runtime_error when no GPU is visible or a device id is invalid.
    EStepCuda(int64_t K, int64_t d, const EStepCudaOptions& options = EStepCudaOptions());
    ~EStepCuda() override;
    EStepCuda(const EStepCuda&) = delete;
    EStepCuda& operator=(const EStepCuda&) = delete;

    void set_model(const GmmModel& model, const float* center) override;
    /// rows may live in pageable host memory, pinned host memory or (one GPU
    /// only) device memory of that GPU; the cheapest path is taken for each.
    void accumulate(const VectorBlock& rows, SufficientStats& stats) override;
    /// Reproducible sums (issue 13): every block of reproducible_block_rows() rows, counted from
    /// rows' first row, is summed on one GPU in an order fixed by its rows alone, and its
    /// statistics become integer limbs on acc's grids (gpu/detail/ReproducibleLimbs.h), which add
    /// exactly: the same bits for any number of workers (GPUs of one kind), chunk size or
    /// scheduling. Workers get whole blocks; chunks are whole blocks (chunk_rows rounded down to a
    /// multiple, at least one block). A call cut into pieces gives the same bits when the pieces
    /// are whole blocks (the trainer cuts on them). Throws std::runtime_error when acc's row bounds do
    /// not hold for the rows (a block's statistic 2^22 times its grid's scale or more or not
    /// finite, or a sum over a call 2^31 times); acc then holds the pieces (of at most
    /// detail::kMaxPieceRows rows) before the one that failed.
    void accumulate_reproducible(const VectorBlock& rows, StatsAccumulator& acc) override;
    /// Full covariances: FullEStep's group; otherwise options.hopper_reproducible_block_rows where
    /// the Hopper kernels with fp32 partials may run (fast mode, d ≤ 128 on an sm_90a GPU; diagonal
    /// d ≤ 64: detail/heuristics.h hopper_float_partials), else kReproducibleBlockRows.
    int64_t reproducible_block_rows(CovarianceType cov) const override;
    /// Sets the rows that options.hopper_reproducible_block_rows = 0 sizes the Hopper blocks by;
    /// set_model() must follow (accumulate calls before it throw std::logic_error).
    void expect_rows(int64_t total_rows) override;
    const char* name() const override;
    /// Large: each call ends with a device synchronization and a download of the
    /// statistics, and rows stream through the backend's own chunks anyway.
    int64_t preferred_rows_per_call() const override { return int64_t(1) << 30; }
    /// Copies the rows to the GPUs, each worker its contiguous share (plus the next block's
    /// rows, so that a reproducible block starting in a share is whole there), when they fit
    /// with room to spare (at least max(4 GiB, 10 %) of each GPU stays free);
    /// accumulate() on these rows or slices of them then reads the copies instead
    /// of host memory. Otherwise the rows stay where they are but their pages are
    /// pinned (cudaHostRegister), so every pass moves them by DMA instead of copying
    /// them through pinned staging buffers first (the limit of pageable streaming);
    /// where pinning fails (e.g. a read-only file mapping) rows keep streaming as before.
    void retain_rows(const VectorBlock& rows) override;
    void release_rows() override;
    /// True while retain_rows() holds a copy on the GPUs.
    bool rows_retained() const { return retained_ != nullptr; }
    /// True while retain_rows() holds the caller's rows pinned in place.
    bool rows_pinned() const { return pinned_rows_ != nullptr; }

    const EStepCudaOptions& options() const { return options_; }
    /// One entry per entry of options().devices.
    std::vector<EStepCudaReport> last_report() const;

  private:
    struct Worker;   // one per device entry: streams, row pipeline, the algorithms (EStepCuda.cu)
    struct Retained; // rows copied to the GPUs by retain_rows()
    std::unique_ptr<Retained> retained_;
    void* pinned_rows_ = nullptr; // caller's rows registered by retain_rows()
    bool copy_rows_to_gpus(const VectorBlock& rows); // retain_rows: copies; false when they do not fit
    /// accumulate(): checks, then worker i runs shares[i] (on its copy when retained), with
    /// `limbs` (reproducible sums) or without.
    void check_call(const VectorBlock& rows) const;
    void run_workers(const std::vector<VectorBlock>& shares, const void* limbs);
    /// Worker i's rows of `rows` (the rows' blocks from `block` rows on: see the .cu).
    std::vector<VectorBlock> shares_of(const VectorBlock& rows, int64_t block) const;
    void pin_rows(const VectorBlock& rows);          // retain_rows: cudaHostRegister in place, if allowed
    EStepCudaOptions options_;
    int64_t K_, d_;
    std::vector<std::unique_ptr<Worker>> workers_;
    CovarianceType covariance_type_ = CovarianceType::Spherical; // of the model set last
    bool have_model_ = false;
    int64_t expected_rows_ = 0; // expect_rows()
    /// The Hopper kernels' reproducible block where their partials are fp32 (the option, or auto).
    int64_t hopper_block_rows() const;
    bool said_refine_ = false; // the stderr line of exact_log_densities was written
    char name_[32];
};

/// Full covariances (CovarianceType::Full, d <= 128: full_covariance_supported) run
/// detail/FullEStep.h: its log-densities come from a fused tensor-core kernel (sm_80+; fp16 products
/// in fast mode, three hi/lo fp16 products in accurate mode; EStepCudaReport::algorithm "full-fused",
/// or "full-fused-sm90" for its wgmma version, the default on Hopper: full_sm90_kernel) under Auto
/// or Hopper, or with `algorithm` = Blocked from a GEMM against [U_1 … U_K] (TF32 / fp32) and a
/// squared-norm kernel ("full-blocked"); then the responsibilities, a GEMM for N_k and
/// Σ r x (fp32; TF32 in fast mode), and a second-moment kernel (TF32 tensor-core products; three in
/// accurate mode). Its log-densities are not refined (exact_log_densities applies
/// to spherical and diagonal models).

/// The backend make_estep() returns for Device::Cuda: every visible GPU,
/// params.fast_math, params.chunk_size ignored (GPU chunks are sized by memory).
std::unique_ptr<EStep> make_estep_cuda(const GmmParams& params, int64_t K, int64_t d);

/// Number of visible CUDA GPUs; 0 when there is no driver or no GPU. Never throws.
int cuda_device_count();

/// True when the CUDA E-step computes full-covariance models of this shape (d <= 128 and K·d < 2^31:
/// detail/FullEStep.h). Device::Auto runs other full models on the CPU. Never throws.
bool full_covariance_supported(int64_t K, int64_t d);

/// True when GPU `device` is a Hopper (compute capability 9.0) and this build carries the sm_90a
/// kernels of EStepCudaAlgorithm::Hopper (FAISS_GMM_CUDA_ARCHITECTURES has "90a"). Never throws.
bool hopper_kernels_available(int device);

} // namespace faiss_gmm::gpu

// The Hopper algorithm of the CUDA E-step on one GPU (sm_90a; Sm90Kernels.cuh and
// Sm90SplitKernels.cuh have the kernels and their design): spherical models, d ≤ 128; fast
// mode (fp16 wgmma) and accurate mode (2×fp16 split products), each one pass with clusters for
// K ≤ 1024 and two passes above; diagonal models as the same products over the
// features [x | x²] (heuristics.h: hopper_covers says which shapes). The raw sums become the statistics'
// increments on the GPU, so the host does one pass of additions.
#pragma once

#include "gpu/detail/ChunkAlgorithm.h"
#include "gpu/detail/DeviceResources.h"
#include "gpu/detail/HopperLaunch.h"
#include "gpu/detail/heuristics.h"

namespace faiss_gmm::gpu::detail {

/// True when `device` runs the sm_90a build of the Hopper kernels: a Hopper GPU (9.0) and
/// device code that really is sm_90a (asked of the device: an sm_90 build also reports binary
/// version 90). Never throws; leaves `device` current.
bool hopper_supported(int device);

class HopperEStep final : public ChunkAlgorithm {
  public:
    /// On `device` (current when constructed); the hopper_* fields of options are its knobs.
    HopperEStep(int device, const EStepCudaOptions& options, int sm_count);
    void set_model(const EncodedModel& em, int64_t chunk_rows, cudaStream_t stream) override;
    double bytes_per_row(const EncodedModel& em) const override;
    void chunk(const void* x, DataType type, int64_t n, cudaStream_t stream, EStepCudaReport& report) override;
    void begin(cudaStream_t stream) override;
    void begin_reproducible(const LimbGrid& grid, cudaStream_t stream) override;
    void download(cudaStream_t stream) override;
    /// Rows of the reproducible blocks where the partials are fp32 (before set_model).
    void set_block_rows(int64_t rows) { block_rows_ = rows; }
    /// set_block_rows()'s blocks where the partials are fp32 (heuristics.h: hopper_float_partials).
    int64_t reproducible_block_rows() const override {
        return args_.model.tile64() ? kReproducibleBlockRows : block_rows_;
    }
    int64_t reproducible_chunk_units() const override;
    const char* name() const override { return "hopper"; }
    void add_to(SufficientStats& stats) const override;
    size_t device_bytes() const override;
    double loglik() const override { return h_loglik_; }

  private:
    int device_;
    bool poison_;
    int64_t block_rows_ = kReproducibleBlockRows; // reproducible sums, fp32 partials (set_block_rows)
    int diag_wide_; // EStepCudaOptions::hopper_diag_wide
    int max_clusters_; // EStepCudaOptions::hopper_max_clusters (0: as many as fit)
    /// Diagonal models with d > 64 in the two passes of 32-row tiles (heuristics.h:
    /// hopper_diag_two_pass, and fast models the wide kernel cannot fold: HopperShape::folded);
    /// their blocks and log-likelihood slots still count 64-row tiles.
    bool two_pass_diag(const HopperShape& hm) const {
        return hm.DP > 128 && (hopper_diag_two_pass(hm.split, hm.Kt, diag_wide_) || hm.fast_unfolded());
    }
    // Sub-chunks' features run on this stream, below the kernels' priority, on the SMs the
    // clusters leave idle (15 clusters of 8 CTAs use 120 of an H100/H200's 132 SMs).
    CudaStream feat_stream_;
    CudaEvent feat_gate_, feat_done_[kMaxSubChunks];
    cudaEvent_t feat_done_handles_[kMaxSubChunks];
    // Reproducible sums: the limbs of each sub-chunk's blocks run on limb_stream_ (the lowest
    // priority, below the next chunk's features too) once its kernel is done (sub_done_), on the
    // idle SMs while the next sub-chunk runs. Nothing waits for them until a later chunk reuses
    // their slices: the slices and slots are two pairs (block_part / llslots in buf_ and the
    // spare pair, swapped per chunk) where two fit in kDoubleBufferBytes, so chunk c waits only
    // for chunk c − 2's limbs (limbs_done_[pair]), long done; download() waits for all of them.
    CudaStream limb_stream_;
    CudaEvent sub_done_, limbs_done_[2];
    DeviceBuffer spare_block_part_, spare_llslots_;
    int pair_ = 0;               // the pair of slices the current chunk writes
    bool two_pairs_ = false;     // decided at a call's first chunk
    bool first_chunk_ = false;   // the next chunk is the call's first
    int limbs_from_ = 0;         // the chunk's first block whose limbs are not enqueued yet
    /// Enqueues the limbs of the chunk's blocks [b0, b1) on limb_stream_, after the kernels so far.
    void enqueue_limbs(int b0, int b1);
    const HopperKernels* kernels_ = nullptr; // the current model's tile width
    HopperBuffers buf_;
    HopperChunkArgs args_; // the launches' contract: model shape, knobs, buffers, streams
    PinnedBuffer h_out_;   // increments + loglik: pinned, so the download is a DMA, not a staged copy
    double h_loglik_ = 0;
    /// Doubles per component of the increments: [Σ r x (d) | N_k | Σ r‖x − μ‖² (1) or Σ r (x_j − μ_j)² (d)].
    size_t out_width() const { return size_t(args_.d) + 1 + (args_.model.diag ? size_t(args_.d) : 1); }
};

} // namespace faiss_gmm::gpu::detail

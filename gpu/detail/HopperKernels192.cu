// The Hopper kernels and their launchers for diagonal models with 64 < d ≤ 96: features [x | x²]
// padded to 192 (the wide kernel, fast; the 32-row two-pass kernels, accurate: HopperLaunch.cuh).
#include "gpu/detail/HopperLaunch.cuh"

template const faiss_gmm::gpu::detail::HopperKernels& faiss_gmm::gpu::detail::hopper_kernels_for<192>();

// The Hopper kernels and their launchers for rows padded to 64 features (HopperLaunch.h).
#include "gpu/detail/HopperLaunch.cuh"

template const faiss_gmm::gpu::detail::HopperKernels& faiss_gmm::gpu::detail::hopper_kernels_for<64>();

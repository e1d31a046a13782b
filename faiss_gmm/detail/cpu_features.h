// Run-time choice between an AVX2+FMA build of a hot loop and a baseline one.
// GCC's target_clones("arch=haswell") dispatches on the CPU *model*, not its
// features, so AMD CPUs with AVX2 silently got the scalar clone; this checks
// the features themselves, once.
#pragma once

namespace faiss_gmm::detail {

inline bool cpu_has_avx2_fma() {
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }();
    return has;
}

} // namespace faiss_gmm::detail

/// Marks the two builds of a hot function: the body is an always-inline function
/// without a target, compiled once inside an AVX2+FMA wrapper and once inside a
/// baseline wrapper; callers pick with cpu_has_avx2_fma().
#define FAISS_GMM_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FAISS_GMM_ALWAYS_INLINE inline __attribute__((always_inline))
#define FAISS_GMM_NOINLINE __attribute__((noinline))

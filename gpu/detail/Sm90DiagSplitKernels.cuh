// Two passes for diagonal models with 64 < d ≤ 128 (features [x | x²] padded to DP = 192 or
// 256), any K: accurate mode (Planes = 2: 2×fp16 split products) and fast mode above one
// cluster's reach (Planes = 1: fp16 products, one plane; see "One plane" below). The accurate kernel of
// Sm90SplitKernels.cuh does not fit there: its hi/lo weights (2 × 128 comps × 256 halves = 128 KB)
// and three 64-row hi/lo stages (3 × 68 KB) exceed the 227 KB of shared memory, and its GEMM2
// accumulator (132 floats) with the split exponentials (32) and GEMM1's (32) exceeds the registers.
// What changes here, and why:
//
//  * Tiles of 32 rows, GEMM1 transposed: Sᵀ = W·Xᵀ (M = 64 components of the warpgroup, N = 32
//    rows, m64n32k16, W and X both from shared memory), three products per 16 features
//    (Wh·Xh + Wl·Xh + Wh·Xl). A thread then holds components g, g + 8 (of its warp's 16) × rows
//    8j + 2t, +1: exactly the register fragment of wgmma's A operand for GEMM2 (M = components,
//    K = rows), as in FlashAttention-3. So the responsibilities never go through shared memory:
//    r × 2^12 is split into hi/lo fp16 registers and GEMM2 (acc2 += Rᵀ·X, N = FW features, B = X
//    from the stage) runs with A from registers (Rh·Xh + Rh·Xl + Rl·Xh).
//  * Shared memory: the CTA's hi/lo weights (128 comps, resident: 128 KB at DP = 256) and three
//    stages of one 32-row tile: the hi block (FW = DP + 8 features: the 1 column gives N_k), the
//    lo block's first DP features only (the column of ones is exact, so the lo block's last 8
//    features are zero) and the tile's log2 Z: 33.4 KB at DP = 256, 231 KB in all. (a_k = 0 for
//    diagonal models: the tiles' ‖x‖² are not needed.)
//  * Two passes, each block owning component tile b % Kt and row split b / Kt (the layout of the
//    two-pass kernels of Sm90Kernels.cuh): lse_parts_kernel computes the split logits and each
//    row's (max, Σ 2^(l − max)) over the block's 128 components → lse_parts (rows × Kt);
//    lse_merge_kernel merges the Kt partials of every row into log2 Z (and Σ ln Z);
//    estep_kernel recomputes the same split logits (the same products in the same order, so the
//    same values), takes r = 2^(logit − log2 Z), and runs GEMM2; its fp32 accumulator is
//    flushed into double slices (every flush_tiles tiles, or per reproducible block) as in
//    Sm90SplitKernels.cuh.
//  * Pipelines: per tile i, GEMM1(i + 1) is issued into the other of two accumulator sets
//    before the exponentials of tile i run, so the exponentials overlap the tensor cores.
//  * Operand traffic: m64n32 with both operands in shared memory reads 3 KB per 32 K MACs
//    (192 B/clock at the tensor rate, over the SM's 128): GEMM1 is bound by shared memory, GEMM2
//    (B only, 64 B/clock) is not; per tile the two together are about at the shared-memory rate.
//
// One plane (fast mode, K > 1024, where the one-pass wide kernel of Sm90SplitKernels.cuh has no
// cluster to exchange the rows' normalizers in): the same kernels with only the hi·hi products,
// no lo blocks or lo weights, and fp16 responsibilities r × 2^12 in one register set: GEMM1 is
// one product per 16 features and GEMM2 one per 16 rows, a third of the accurate kernels' tensor
// work; the stages shrink to the hi block (and log2 Z).
//
// Layouts (halves): G tile T (kBM = 32 rows) as features_kernel<.., 32, 2> writes it: [hi block |
// lo block], each 32 rows × FW, chunk (r, fb) at (fb·32 + r)·8; in shared memory core matrices
// of 8 rows × 8 features at byte fb·512 + (r/8)·128. W as in Sm90SplitKernels.cuh.
#pragma once

#include <type_traits>
#include <utility>

#include "gpu/detail/Sm90Kernels.cuh"
#include "gpu/detail/Sm90SplitKernels.cuh"

namespace faiss_gmm::gpu::detail::sm90 {

// The wgmma shapes of these kernels (written out as in Sm90Primitives.cuh: inline PTX names every
// register). GEMM1: m64n32k16, both operands K-major from shared memory.
/// GEMM1: D(64×32, fp32) (+)= A(64×16) · B(16×32), both K-major from shared memory, the
/// descriptors base + AO and base + BO (in 16-byte units) formed inside the asm: the compiler
/// cannot then precompute all of a tile's descriptors into registers (it did: 255 registers).
template <int AO, int BO, int ScaleD>
__device__ __forceinline__ void wgmma_m64n32(float (&d)[16], uint64_t da, uint64_t db) {
#if FAISS_GMM_SM90A
    asm volatile(
            "{\n.reg .pred p;\n.reg .b64 a, b;\nsetp.ne.b32 p, %20, 0;\nadd.s64 a, %16, %18;\nadd.s64 b, %17, %19;\n"
            "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
            "}, a, b, p, 1, 1, 0, 0;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
            : "l"(da), "l"(db), "n"(AO), "n"(BO), "r"(ScaleD));
#else
    (void)d; (void)da; (void)db; __trap();
#endif
}

/// D(64×N, fp32) (+)= A(64×16, f16, registers: the m16n8k16 A fragment per warp) · B(16×N, f16,
/// shared memory, MN-major); scale_d = 0 overwrites D. GEMM2 of the diagonal accurate kernel: N = 200 and 192 (DP = 192),
/// 136, 128 and 120 (DP = 256: FW = 264 = 136 + 128 for the hi block, 256 = 136 + 120 for the lo).
template <int N>
struct WgmmaRs;

template <>
struct WgmmaRs<200> {
    __device__ __forceinline__ static void mma(float* d, const uint32_t (&a)[4], uint64_t db, int scale_d) {
#if FAISS_GMM_SM90A
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %105, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n200k16.f32.f16.f16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
            "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
            "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
            "%96, %97, %98, %99"
            "}, {%100, %101, %102, %103}, %104, p, 1, 1, 1;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
              "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
              "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
              "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
              "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
              "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
#else
        (void)d; (void)a; (void)db; (void)scale_d; __trap();
#endif
    }
};

template <>
struct WgmmaRs<192> {
    __device__ __forceinline__ static void mma(float* d, const uint32_t (&a)[4], uint64_t db, int scale_d) {
#if FAISS_GMM_SM90A
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %101, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n192k16.f32.f16.f16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
            "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
            "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
            "}, {%96, %97, %98, %99}, %100, p, 1, 1, 1;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
              "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
              "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
              "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
              "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
#else
        (void)d; (void)a; (void)db; (void)scale_d; __trap();
#endif
    }
};

template <>
struct WgmmaRs<136> {
    __device__ __forceinline__ static void mma(float* d, const uint32_t (&a)[4], uint64_t db, int scale_d) {
#if FAISS_GMM_SM90A
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %73, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n136k16.f32.f16.f16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
            "%64, %65, %66, %67"
            "}, {%68, %69, %70, %71}, %72, p, 1, 1, 1;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
              "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
#else
        (void)d; (void)a; (void)db; (void)scale_d; __trap();
#endif
    }
};

template <>
struct WgmmaRs<128> {
    __device__ __forceinline__ static void mma(float* d, const uint32_t (&a)[4], uint64_t db, int scale_d) {
#if FAISS_GMM_SM90A
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
            "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
#else
        (void)d; (void)a; (void)db; (void)scale_d; __trap();
#endif
    }
};

template <>
struct WgmmaRs<120> {
    __device__ __forceinline__ static void mma(float* d, const uint32_t (&a)[4], uint64_t db, int scale_d) {
#if FAISS_GMM_SM90A
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %65, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n120k16.f32.f16.f16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59"
            "}, {%60, %61, %62, %63}, %64, p, 1, 1, 1;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
#else
        (void)d; (void)a; (void)db; (void)scale_d; __trap();
#endif
    }
};


namespace dsplit {

constexpr int kBM = 32; // rows per tile

template <int DP, int Planes>
struct Shape {
    static_assert(DP == 192 || DP == 256, "DP: 192 or 256 (diagonal models, 64 < d <= 128)");
    static_assert(Planes == 1 || Planes == 2, "Planes: 1 (fp16, fast) or 2 (2×fp16, accurate)");
    static constexpr int FW = DP + 8;
    static constexpr int kHiBytes = kBM * FW * 2; // the hi block of a tile (pass 2)
    static constexpr int kLoBytes = kBM * DP * 2; // the first DP features of a block
    static constexpr int kRowBytes = kBM * 4;     // log2 Z of the tile's rows
    static constexpr int kWBytes = kKc * DP * 2;  // hi (or lo) of a component tile
    static constexpr int oStage = Planes * kWBytes; // after the hi (and lo) weights
    static constexpr int kBarBytes = 64;          // ≤ 4 stage barriers + the weights'
    static constexpr int kMaxStages = 4;
    // Pass 1: stage = hi (| lo), DP features each; then the per-warp row partials (8 warps × kBM rows).
    // One plane: two CTAs per SM (each ≤ kSmemTwoCtas), so that one CTA's GEMM1 runs under the
    // other's row reductions (shuffles, two barriers per tile), which kept the tensor cores idle
    // half of the time with one CTA (ncu, bench/results/gpu_diag_fast_two_pass.md).
    static constexpr int kCtas1 = Planes == 1 ? 2 : 1;
    static constexpr int kSmemTwoCtas = 115712; // (228 KB per SM − 1 KB reserved per CTA) / 2
    static constexpr int kStage1 = Planes * kLoBytes;
    static constexpr int kRedBytes = (kThreads / 32) * kBM * 8;
    static constexpr int kFit1 = ((kCtas1 == 2 ? kSmemTwoCtas : kSmemLimit) - oStage - kRedBytes - kBarBytes) / kStage1;
    static constexpr int kStages1 = kFit1 < kMaxStages ? kFit1 : kMaxStages;
    static constexpr int oRed1 = oStage + kStages1 * kStage1;
    static constexpr int oBar1 = oRed1 + kRedBytes;
    static constexpr int kSmem1 = oBar1 + kBarBytes;
    // Pass 2: stage = hi (FW) | lo (DP; Planes = 2) | log2 Z.
    static constexpr int kStage2 = kHiBytes + (Planes - 1) * kLoBytes + kRowBytes;
    static constexpr int oRow2 = kHiBytes + (Planes - 1) * kLoBytes; // log2 Z within a stage
    static constexpr int kFit2 = (kSmemLimit - oStage - kBarBytes) / kStage2;
    static constexpr int kStages2 = kFit2 < kMaxStages ? kFit2 : kMaxStages;
    static constexpr int oBar2 = oStage + kStages2 * kStage2;
    static constexpr int kSmem2 = oBar2 + kBarBytes;
    // Three stages: a tile's load overlaps a whole tile's work; two CTAs of two stages: the other CTA's.
    static_assert(kStages1 >= 4 - kCtas1 && kStages2 >= 3, "stages");
    static_assert(kSmem1 <= (kCtas1 == 2 ? kSmemTwoCtas : kSmemLimit) && kSmem2 <= kSmemLimit, "shared memory");
    static_assert(kHiBytes % 128 == 0 && kLoBytes % 128 == 0 && kStage2 % 128 == 0 && oStage % 128 == 0 &&
                          kStage1 % 128 == 0,
                  "alignment");
};

struct Args {
    const __half* G;   // tiles × [hi | lo] × kBM × FW (one plane: hi only)
    const __half* W;   // [hi | lo] × Kt × 128 × DP (one plane: hi only)
    const float* ab;   // Kp × 2: (a_k = 0 for diagonal models, b_k); padding (0, kNegBig)
    float2* lse_parts; // rows × Kt: (max, Σ 2^(l − max)) of the row over component tile c (pass 1)
    float* lse;        // rows: log2 Z (merge), +big for padding rows
    double* part;      // Sn (or reproducible blocks) × Kp × FW: Σ 2^12·r·[s_x x̃ | s_q x̃² | 1]
    double* loglik;    // Σ_n ln Z_n, added atomically
    double* llslots;   // reproducible sums: per block, Σ log2 Z of each 64-row tile (slot tile % 64-row block tiles)
    int n;             // valid rows of the chunk
    int tiles;         // ceil(n / kBM)
    int Kt;            // component tiles
    float kinv;        // 1 / (s_x · s_w)
    int flush_tiles;   // accumulator → part every this many tiles
    int block_tiles;   // reproducible sums: kBM-row tiles per block (0: not)
    int block_tiles64; // the same in 64-row tiles (the slots' unit)
    int llslot_stride; // slots per block (≥ block_tiles64)
};

/// 16 features (step KK) of logit_products: W steps 4096 B (256 units), X 1024 B (64 units).
template <int Planes, int KK>
__device__ __forceinline__ void logit_step(float (&acc)[16], uint64_t wh, uint64_t wl, uint64_t xh, uint64_t xl) {
    wgmma_m64n32<KK * 256, KK * 64, (KK > 0)>(acc, wh, xh);
    if constexpr (Planes == 2) {
        wgmma_m64n32<KK * 256, KK * 64, 1>(acc, wl, xh);
        wgmma_m64n32<KK * 256, KK * 64, 1>(acc, wh, xl);
    }
}
template <int Planes, int... KK>
__device__ __forceinline__ void logit_steps(float (&acc)[16], uint64_t wh, uint64_t wl, uint64_t xh, uint64_t xl,
                                            std::integer_sequence<int, KK...>) {
    (logit_step<Planes, KK>(acc, wh, wl, xh, xl), ...);
}

/// acc = the split logits' products Wh·Xh + Wl·Xh + Wh·Xl (one plane: Wh·Xh) of the warpgroup's
/// 64 components (A: W, M = components) and a stage's 32 rows (B: X, N = rows); dWh, dWl: the
/// weights' descriptors, sXh, sXl: the stage's hi and lo blocks (8-feature columns 512 B apart,
/// 8-row core matrices 128 B apart). Both passes call this, so their logits are the same numbers.
template <int DP, int Planes>
__device__ __forceinline__ void logit_products(float (&acc)[16], uint64_t dWh, uint64_t dWl, uint32_t sXh,
                                               uint32_t sXl) {
    fence_operand(acc);
    wgmma_fence();
    logit_steps<Planes>(acc, dWh, dWl, make_desc(sXh, 512, 128), make_desc(sXl, 512, 128),
                        std::make_integer_sequence<int, DP / 16>{});
    wgmma_commit();
}

/// What both passes set up: block → (component tile ct, row split q), the stage and weight
/// barriers at `bars`, the weights' bulk copy (thread 0), the thread's components' biases.
struct Block {
    int tid, wg, wq, lane, g, t, ct, q;
    float b0, b1; // b_k of components ct·128 + 64wg + 16wq + g and + 8
    __device__ __forceinline__ explicit Block(const Args& a) {
        tid = int(threadIdx.x), wg = tid >> 7, wq = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
        ct = int(blockIdx.x) % a.Kt;
        q = int(blockIdx.x) / a.Kt;
        const int comp = ct * kKc + 64 * wg + 16 * wq + g;
        b0 = a.ab[2 * comp + 1];
        b1 = a.ab[2 * (comp + 8) + 1];
    }
    /// Thread 0: initializes the NS + 1 barriers (stages, then weights); everyone waits for that.
    __device__ __forceinline__ void init_bars(uint64_t* bars, int NS) const {
        if (tid == 0) {
            for (int s = 0; s <= NS; s++) mbar_init(bars + s, 1);
            fence_mbar_init();
        }
        __syncthreads();
    }
    /// Thread 0: the hi (and lo) weights of component tile ct → smem[0 .. Planes·wbytes), on bar.
    template <int DP, int Planes>
    __device__ __forceinline__ void load_weights(const Args& a, uint8_t* smem, uint64_t* bar) const {
        constexpr int kWBytes = Shape<DP, Planes>::kWBytes;
        mbar_expect_tx(bar, Planes * kWBytes);
        bulk_g2s(smem, a.W + size_t(ct) * kKc * DP, kWBytes, bar);
        if constexpr (Planes == 2)
            bulk_g2s(smem + kWBytes, a.W + size_t(a.Kt) * kKc * DP + size_t(ct) * kKc * DP, kWBytes, bar);
    }
    /// The weights' descriptors for this warpgroup's 64 components (A, K-major: 8-feature
    /// columns 2048 B apart, 8 components 128 B apart).
    __device__ __forceinline__ uint64_t wdesc(const uint8_t* smem, int offset) const {
        return make_desc(smem_u32(smem) + uint32_t(offset + wg * 1024), 2048, 128);
    }
};

/// The tile loop of both passes: gemm1(acc, i) issues GEMM1 of tile i, step(issue_next, cur,
/// nxt, i) finishes tile i (its logits in cur) and, when issue_next, first issues GEMM1(i + 1)
/// into nxt. The two accumulator sets alternate, so the loop runs in pairs of tiles; whether the
/// next GEMM1 is issued is known at compile time in every call, so no wgmma is in flight across
/// a branch (ptxas would otherwise wait for it there, serializing GEMM1 with the exponentials).
template <class Gemm1, class Step>
__device__ __forceinline__ void run_pairs(int ntile, float (&accA)[16], float (&accB)[16], Gemm1&& gemm1,
                                          Step&& step) {
    if (ntile <= 0) return;
    const std::true_type more;
    const std::false_type last;
    gemm1(accA, 0);
    int i = 0;
    for (; i + 2 < ntile; i += 2) {
        step(more, accA, accB, i);
        step(more, accB, accA, i + 1);
    }
    if (i + 1 < ntile) { // two tiles left
        step(more, accA, accB, i);
        step(last, accB, accA, i + 1);
    } else {
        step(last, accA, accB, i);
    }
}

/// Pass 1: block (ct, q) takes the 32-row tiles of row split q; per tile, each row's (max, Σ
/// 2^(l − max)) over the block's 128 components → lse_parts[row][ct]. A thread holds rows
/// 8j + 2t (+1) × components g, g + 8 of its warp: the warp's 16 components merge by shuffles
/// (lanes differing in g), the 8 warps through shared memory (warp 0).
template <int DP, int Planes>
__global__ void __launch_bounds__(kThreads, Shape<DP, Planes>::kCtas1) lse_parts_kernel(const Args a) {
#if FAISS_GMM_SM90A
    using S = Shape<DP, Planes>;
    constexpr int NS = S::kStages1;
    extern __shared__ __align__(128) uint8_t smem[];
    const Block B(a);
    int tile0, tile1;
    part_tiles(a.tiles, B.q, int(gridDim.x) / a.Kt, tile0, tile1);
    const int ntile = tile1 - tile0;
    uint64_t* full = reinterpret_cast<uint64_t*>(smem + S::oBar1);
    uint64_t* wbar = full + NS;
    B.init_bars(full, NS);
    auto load_tile = [&](int stage, int i) { // hi (and lo) blocks' first DP features
        uint8_t* st = smem + S::oStage + stage * S::kStage1;
        const __half* gt = a.G + size_t(tile0 + i) * Planes * kBM * S::FW;
        mbar_expect_tx(full + stage, S::kStage1);
        bulk_g2s(st, gt, S::kLoBytes, full + stage);
        if constexpr (Planes == 2) bulk_g2s(st + S::kLoBytes, gt + kBM * S::FW, S::kLoBytes, full + stage);
    };
    if (B.tid == 0) {
        B.load_weights<DP, Planes>(a, smem, wbar);
        for (int s = 0; s < NS && s < ntile; s++) load_tile(s, s);
    }
    mbar_wait(wbar, 0);
    const uint64_t dWh = B.wdesc(smem, 0), dWl = B.wdesc(smem, S::kWBytes);
    float2* red = reinterpret_cast<float2*>(smem + S::oRed1); // [warp][row]
    auto gemm1 = [&](float (&acc)[16], int i) {
        const int stage = i % NS;
        mbar_wait(full + stage, uint32_t(i / NS) & 1u);
        const uint32_t sX = smem_u32(smem + S::oStage + stage * S::kStage1);
        logit_products<DP, Planes>(acc, dWh, dWl, sX, sX + S::kLoBytes);
    };
    auto step = [&](auto issue_next, float (&cur)[16], float (&nxt)[16], int i) {
        wgmma_wait<0>(); // GEMM1(i)
        fence_operand(cur);
        __syncthreads(); // every warpgroup is done with stage i % NS, warp 0 with red (tile i − 1)
        if (B.tid == 0 && i + NS < ntile) load_tile(i % NS, i + NS);
        if constexpr (decltype(issue_next)::value) gemm1(nxt, i + 1); // under this tile's exponentials
#pragma unroll
        for (int j = 0; j < 4; j++) {
#pragma unroll
            for (int h = 0; h < 2; h++) { // row 8j + 2t + h: components g (cur[4j + h]), g + 8 (cur[4j + 2 + h])
                const float v0 = fmaf(cur[4 * j + h], a.kinv, B.b0), v1 = fmaf(cur[4 * j + 2 + h], a.kinv, B.b1);
                float m = fmaxf(v0, v1);
#pragma unroll
                for (int off = 4; off < 32; off <<= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
                float s = ex2(v0 - m) + ex2(v1 - m);
#pragma unroll
                for (int off = 4; off < 32; off <<= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
                if (B.g == 0) red[(B.tid >> 5) * kBM + 8 * j + 2 * B.t + h] = make_float2(m, s);
            }
        }
        __syncthreads();
        if (B.tid < kBM) { // row tid of the tile: the 8 warps' partials, in a fixed order
            const float2* p = red + B.tid;
            float M = kNegBig, s = 0.f;
#pragma unroll
            for (int w = 0; w < kThreads / 32; w++) M = fmaxf(M, p[w * kBM].x);
#pragma unroll
            for (int w = 0; w < kThreads / 32; w++) s += p[w * kBM].y * ex2(p[w * kBM].x - M);
            a.lse_parts[(size_t(tile0 + i) * kBM + B.tid) * a.Kt + B.ct] = make_float2(M, s);
        }
    };
    float accA[16], accB[16];
    run_pairs(ntile, accA, accB, gemm1, step);
#else
    (void)a;
    __trap();
#endif
}

/// Between the passes: log2 Z of every row from its Kt partials (one warp per 64 rows; lane l:
/// rows l and l + 32) → lse (+big for padding rows, whose responsibilities are then 0); Σ log2 Z
/// of each 64-row tile (a fixed shuffle order) → its block's slot (reproducible sums: the unit of
/// Sm90SplitKernels.cuh's slots), else Σ ln Z → loglik. (A template, DP unused, so that each
/// tile width's translation unit has its own instance.)
template <int DP>
__global__ void lse_merge_kernel(const Args a) {
    const int w = int((blockIdx.x * size_t(blockDim.x) + threadIdx.x) >> 5), lane = int(threadIdx.x & 31);
    if (w >= (a.tiles + 1) / 2) return; // whole warps leave together
    double ll = 0;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int row = w * 64 + h * 32 + lane;
        float L = kPosBig;
        if (row < a.n) {
            const float2* p = a.lse_parts + size_t(row) * a.Kt;
            float M = kNegBig, s = 0.f;
            for (int c = 0; c < a.Kt; c++) M = fmaxf(M, p[c].x);
            for (int c = 0; c < a.Kt; c++) s += p[c].y * ex2(p[c].x - M);
            L = M + lg2(s);
            ll += double(L);
        }
        if (row < a.tiles * kBM) a.lse[row] = L;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ll += __shfl_xor_sync(0xffffffffu, ll, off);
    if (lane != 0) return;
    if (a.block_tiles64 > 0) {
        a.llslots[size_t(w / a.block_tiles64) * a.llslot_stride + w % a.block_tiles64] = ll;
    } else {
        atomicAdd(a.loglik, ll * 0.69314718055994530942);
    }
}

/// acc2 → the double slice at P (this thread's components' rows of FW sums; add: onto what is
/// there). Components 16wq + g (+8), features 8j + 2t (+1), as the m64nN fragment. acc2 is not
/// zeroed here: the next GEMM2 overwrites it (scale_d = 0). Zeroing it in a branch made the
/// compiler keep two copies of it (255 registers, spills) and serialize the wgmma.
template <int FW>
__device__ __forceinline__ void flush_acc(const float (&acc2)[FW / 2], double* P, bool add) {
    asm volatile("" : "+l"(P)); // the slice's addresses are loop-invariant: not precomputed into registers
#pragma unroll
    for (int j = 0; j < FW / 8; j++) {
        const int t2 = 2 * (threadIdx.x & 3);
        double2* p0 = reinterpret_cast<double2*>(P + 8 * j + t2);
        double2* p1 = reinterpret_cast<double2*>(P + 8 * FW + 8 * j + t2);
        double2 v0 = make_double2(acc2[4 * j + 0], acc2[4 * j + 1]);
        double2 v1 = make_double2(acc2[4 * j + 2], acc2[4 * j + 3]);
        if (add) {
            const double2 o0 = *p0, o1 = *p1;
            v0.x += o0.x, v0.y += o0.y, v1.x += o1.x, v1.y += o1.y;
        }
        *p0 = v0;
        *p1 = v1;
    }
}

/// Pins the responsibilities' registers around the asynchronous GEMM2 (as fence_operand).
template <int N>
__device__ __forceinline__ void fence_regs(uint32_t (&x)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(x[i])::"memory");
}

/// acc2 += Rᵀ·X over a stage's 32 rows: A = R from registers (rh/rl: 4 per 16 rows), B = X
/// MN-major (8 rows 128 B apart, 8 features 512 B apart; 16 rows: +256 B), three products
/// Rh·Xh + Rh·Xl + Rl·Xh (one plane: Rh·Xh). FW = 264 (DP = 256) is two instructions per
/// product, features 0..135 (acc2[0..67]) and 136..263 (acc2[68..]); the lo block has DP
/// features (its column of ones is 0), so its second instruction is N = 120.
template <int DP, int Planes>
__device__ __forceinline__ void stats_products(float (&acc2)[(DP + 8) / 2], const uint32_t (&rh)[8],
                                               const uint32_t (&rl)[Planes == 2 ? 8 : 1], uint32_t sXh, uint32_t sXl,
                                               int keep) {
    const uint64_t dXh = make_desc(sXh, 128, 512), dXl = make_desc(sXl, 128, 512);
    constexpr uint64_t kSecond = 17 * 512 / 16; // features 136.. (DP = 256)
#pragma unroll
    for (int kk = 0; kk < kBM / 16; kk++) {
        const uint32_t(&ah)[4] = *reinterpret_cast<const uint32_t(*)[4]>(&rh[4 * kk]);
        const uint64_t o = uint64_t(kk * 16);
        const int sd = kk > 0 ? 1 : keep; // the first product of the tile restarts acc2 unless keep
        if constexpr (DP == 256) {
            WgmmaRs<136>::mma(acc2, ah, dXh + o, sd);
            WgmmaRs<128>::mma(acc2 + 68, ah, dXh + o + kSecond, sd);
            if constexpr (Planes == 2) {
                const uint32_t(&al)[4] = *reinterpret_cast<const uint32_t(*)[4]>(&rl[4 * kk]);
                WgmmaRs<136>::mma(acc2, ah, dXl + o, 1);
                WgmmaRs<120>::mma(acc2 + 68, ah, dXl + o + kSecond, 1);
                WgmmaRs<136>::mma(acc2, al, dXh + o, 1);
                WgmmaRs<128>::mma(acc2 + 68, al, dXh + o + kSecond, 1);
            }
        } else {
            WgmmaRs<200>::mma(acc2, ah, dXh + o, sd);
            if constexpr (Planes == 2) {
                const uint32_t(&al)[4] = *reinterpret_cast<const uint32_t(*)[4]>(&rl[4 * kk]);
                WgmmaRs<192>::mma(acc2, ah, dXl + o, 1);
                WgmmaRs<200>::mma(acc2, al, dXh + o, 1);
            }
        }
    }
}

/// Pass 2: block (ct, q) takes the tiles of row split q (whole reproducible blocks when
/// block_tiles > 0). Per tile i: GEMM1(i + 1) is issued, the responsibilities of tile i
/// (r × 2^12 = 2^(logit − log2 Z + 12), split hi/lo in registers) and GEMM2(i) follow; the
/// stage of tile i − 1 is refilled once every warpgroup's GEMM2(i − 1) is done. One plane:
/// r × 2^12 in fp16 (rh only), one product per GEMM step.
template <int DP, int Planes>
__global__ void __launch_bounds__(kThreads, 1) estep_kernel(const Args a) {
#if FAISS_GMM_SM90A
    using S = Shape<DP, Planes>;
    constexpr int NS = S::kStages2, FW = S::FW;
    extern __shared__ __align__(128) uint8_t smem[];
    const Block B(a);
    int tile0, tile1;
    part_tiles(a.tiles, B.q, int(gridDim.x) / a.Kt, a.block_tiles, tile0, tile1);
    const int ntile = tile1 - tile0;
    uint64_t* full = reinterpret_cast<uint64_t*>(smem + S::oBar2);
    uint64_t* wbar = full + NS;
    B.init_bars(full, NS);
    auto stage_at = [&](int stage) { return smem + S::oStage + stage * S::kStage2; };
    auto load_tile = [&](int stage, int i) { // hi block (FW), lo block (DP; Planes = 2), log2 Z
        uint8_t* st = stage_at(stage);
        const int tile = tile0 + i;
        const __half* gt = a.G + size_t(tile) * Planes * kBM * FW;
        mbar_expect_tx(full + stage, S::kStage2);
        bulk_g2s(st, gt, S::kHiBytes, full + stage);
        if constexpr (Planes == 2) bulk_g2s(st + S::kHiBytes, gt + kBM * FW, S::kLoBytes, full + stage);
        bulk_g2s(st + S::oRow2, a.lse + size_t(tile) * kBM, S::kRowBytes, full + stage);
    };
    if (B.tid == 0) {
        B.load_weights<DP, Planes>(a, smem, wbar);
        for (int s = 0; s < NS && s < ntile; s++) load_tile(s, s);
    }
    mbar_wait(wbar, 0);
    const uint64_t dWh = B.wdesc(smem, 0), dWl = B.wdesc(smem, S::kWBytes);
    const int Kp = a.Kt * kKc;
    const size_t row_in_slice = size_t(B.ct) * kKc + 64 * B.wg + 16 * B.wq + B.g;

    float acc2[FW / 2]; // 2^12 Σ r·features: this warpgroup's 64 comps × FW
#pragma unroll
    for (int i = 0; i < FW / 2; i++) acc2[i] = 0.f; // (overwritten by the first GEMM2; written out if no tile)
    fence_operand(acc2); // defined before any wgmma is in flight (else ptxas serializes them)
    uint32_t rh[8], rl[Planes == 2 ? 8 : 1]; // responsibilities × 2^12 of a tile: the A fragments of GEMM2
    auto gemm1 = [&](float (&acc)[16], int i) {
        const int stage = i % NS;
        mbar_wait(full + stage, uint32_t(i / NS) & 1u);
        const uint32_t sX = smem_u32(stage_at(stage));
        logit_products<DP, Planes>(acc, dWh, dWl, sX, sX + S::kHiBytes);
    };
    bool first_flush = true;
    int since_flush = 0;
    int keep = 0; // the next GEMM2 adds to acc2 (1) or restarts it (0: at the start, after a flush)
    const bool by_block = a.block_tiles > 0;
    auto step = [&](auto issue_next, float (&cur)[16], float (&nxt)[16], int i) {
        wgmma_wait<0>(); // GEMM1(i), GEMM2(i − 1)
        fence_operand(cur);
        fence_operand(acc2);
        fence_regs(rh);
        fence_regs(rl);
        if (i > 0) { // acc2 holds tiles < i
            keep = 1;
            if (by_block) {
                if ((tile0 + i) % a.block_tiles == 0) { // tile i − 1 ended a block
                    const int block = (tile0 + i - 1) / a.block_tiles;
                    flush_acc<FW>(acc2, a.part + (size_t(block) * Kp + row_in_slice) * FW, false);
                    keep = 0;
                }
            } else if (++since_flush == a.flush_tiles) {
                flush_acc<FW>(acc2, a.part + (size_t(B.q) * Kp + row_in_slice) * FW, !first_flush);
                first_flush = false;
                since_flush = 0;
                keep = 0;
            }
        }
        __syncthreads(); // every warpgroup is done with the stage of tile i − 1
        if (B.tid == 0 && i > 0 && i - 1 + NS < ntile) load_tile((i - 1) % NS, i - 1 + NS);
        if constexpr (decltype(issue_next)::value) gemm1(nxt, i + 1); // under this tile's exponentials
        const uint8_t* st = stage_at(i % NS);
        const float* L = reinterpret_cast<const float*>(st + S::oRow2);
#pragma unroll
        for (int m = 0; m < 8; m++) {
            // rh/rl[m]: cur[2m], cur[2m + 1] = component g (m even) or g + 8 (m odd), rows 8j + 2t,
            // +1 (j = m / 2): r × 2^12 = 2^(logit − log2 Z + 12) (padding rows: log2 Z = +big, r = 0),
            // as hi + lo halves. Registers m = 4kk .. 4kk + 3 are GEMM2's A fragment for rows 16kk ..
            const int j = m / 2, row = 8 * j + 2 * B.t;
            const float bk = (m & 1) ? B.b1 : B.b0;
            const float u = ex2(fmaf(cur[2 * m], a.kinv, bk) - L[row]) * split::kRScale;
            const float v = ex2(fmaf(cur[2 * m + 1], a.kinv, bk) - L[row + 1]) * split::kRScale;
            const __half2 hi = __floats2half2_rn(u, v);
            rh[m] = *reinterpret_cast<const uint32_t*>(&hi);
            if constexpr (Planes == 2) {
                const float2 back = __half22float2(hi);
                const __half2 lo = __floats2half2_rn(u - back.x, v - back.y);
                rl[m] = *reinterpret_cast<const uint32_t*>(&lo);
            }
        }
        fence_regs(rh);
        fence_regs(rl);
        wgmma_fence();
        const uint32_t sX = smem_u32(st);
        stats_products<DP, Planes>(acc2, rh, rl, sX, sX + S::kHiBytes, keep);
        wgmma_commit();
    };
    float accA[16], accB[16];
    run_pairs(ntile, accA, accB, gemm1, step);
    wgmma_wait<0>();
    fence_operand(acc2);
    if (by_block) {
        if (ntile > 0) {
            const int block = (tile0 + ntile - 1) / a.block_tiles;
            flush_acc<FW>(acc2, a.part + (size_t(block) * Kp + row_in_slice) * FW, false);
        }
        return;
    }
    flush_acc<FW>(acc2, a.part + (size_t(B.q) * Kp + row_in_slice) * FW, !first_flush);
#else
    (void)a;
    __trap();
#endif
}

} // namespace dsplit

} // namespace faiss_gmm::gpu::detail::sm90
